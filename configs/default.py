"""Default configuration: the embedded procedural quadruped, so everything runs with no download.

Run:  python -m experiments.prepare_data --config configs/default.py
Shrink any config for a laptop CPU:  --config configs/default.py:runlocal
Override any field:  --config.data.mirror=False  (a typo in a key is an error).
"""

from __future__ import annotations

import ml_collections

from mann_jax.config_errors import ConfigError


def data_config() -> ml_collections.ConfigDict:
    """Settings of the motion data pipeline (mann_jax.data.dataset.build_dataset)."""
    d = ml_collections.ConfigDict()
    d.source = "synthetic"  # "synthetic" | "bvh" | "ai4animation"
    d.path = ""  # folder of BVH clips, or of Input.txt/Output.txt for "ai4animation"
    d.labels_dir = ""  # optional folder of <clip>.txt style label files (override derived labels)
    d.synthetic_seed = 0
    d.synthetic_clips = 8
    d.synthetic_seconds = 20.0
    d.mirror = True  # add left/right mirrored copies, as the original export did
    d.floor_height = 0.0  # metres
    d.root_smoothing_frames = 5  # triangular smoothing of the root, frames each side (the exporter's RootSmoothing)
    # contacts/styles measure heights above the lowest paw over this window; 0 = floor_height
    d.support_window_seconds = 2.0
    d.contact_max_height = 0.04  # metres above the floor
    d.contact_max_speed = 0.4  # m/s, horizontal
    d.styles = ml_collections.ConfigDict()  # overrides of mann_jax.data.styles.StyleRules fields
    d.val_fraction = 0.1
    d.test_fraction = 0.1
    d.split_seed = 0
    d.on_bad_clip = "skip"  # "skip" (report and leave out) | "raise" (stop the run)
    # Another quadruped with the dog's topology: {its joint name: the dog's}, set in a config file
    # (docs/data_checks.md).
    d.joint_map = ml_collections.ConfigDict()
    # Plausibility thresholds, each clip refused above them (docs/data_checks.md).
    d.checks = ml_collections.ConfigDict()
    d.checks.max_position = 1000.0  # metres from the origin, any point (the dog data: 6 m at most)
    d.checks.max_root_speed = 20.0  # m/s of the Hips between two frames, above it a teleport (the dog data: 5.8)
    d.checks.max_joint_speed = 20.0  # m/s of any point relative to the Hips between two frames (the dog data: 10.5)
    d.cache_dir = ""  # "" = ~/.cache/mann_jax (or $XDG_CACHE_HOME/mann_jax)
    # Normalise with an AI4Animation weights folder's Xmean/Xstd/Ymean/Ystd instead of the training
    # rows' own statistics; get_config ties it to train.init_from (a pretrained network reads its own).
    d.normalisation_from = ""
    return d


def model_config() -> ml_collections.ConfigDict:
    """The MANN network (mann_jax.model.MANN); defaults are the original dog model."""
    m = ml_collections.ConfigDict()
    m.n_experts = 8
    m.hidden_sizes = (512, 512)
    m.gating_hidden = 32
    m.gating_indices = ()  # () = the original 19: paw velocities, speed, styles
    m.keep_prob = 0.7  # dropout keep probability on every layer input
    m.formulation = "auto"  # "auto" | "blend" (weights per sample, as the original) | "mix"
    m.matmul_precision = "highest"  # float32 products on every backend; "default" lets GPUs use TF32
    return m


def train_config() -> ml_collections.ConfigDict:
    """Training (mann_jax.train); defaults are the original's: 150 epochs, batch 32, AdamWR."""
    t = ml_collections.ConfigDict()
    t.epochs = 150
    t.batch_size = 32
    t.learning_rate = 1e-4
    t.weight_decay = 2.5e-3  # normalised by sqrt(n_batches * te), as the original
    t.decay_mode = "decoupled"  # "decoupled" (the study's text) | "none" (what the original code ran: plain Adam)
    t.te = 10  # first warm-restart cycle, epochs
    t.tmult = 2  # cycle length multiplier
    t.shuffle = "once"  # "once" (the original: shuffled before epoch 0, reused) | "per_epoch" | "none"
    t.seed = 23456  # the original's seed: weights, data order and dropout
    t.log_every_steps = 100
    t.eval_batch_size = 4096
    t.histograms_every_epochs = 1
    t.checkpoint_every_steps = 2000
    t.keep_checkpoints = 3
    t.init_from = ""  # an AI4Animation weights folder to start from (fine-tune / prune while fine-tuning)
    return t


def pruning_config() -> ml_collections.ConfigDict:
    """Magnitude pruning during training (mann_jax.pruning); target 0 trains dense."""
    p = ml_collections.ConfigDict()
    p.target_sparsity = 0.0  # final fraction of zeros among the prunable weights; 0 = no pruning
    p.schedule = "one_cycle"  # "one_cycle" | "agp" | "linear" | "cosine" | "one_shot" | "iterative"
    p.start = 0.0  # pruning window, fractions of training (the study: one-cycle over the whole run)
    p.end = 1.0
    p.alpha = 14.0  # one-cycle shape (fasterai sched_onecycle)
    p.beta = 6.0
    p.power = 3.0  # AGP exponent (Zhu & Gupta: cubic)
    p.n_steps = 4  # iterative: number of equal steps
    p.scope = "global"  # "global" (one ranking over all prunable weights, the study) | "local" (per layer)
    p.criterion = "magnitude"  # "magnitude" (|w|, the study) | "random"
    p.granularity = "unstructured"  # "unstructured" (the study) | "neuron" (whole hidden units) | "n:m"
    p.n_m = (2, 4)  # for "n:m": keep n of every m consecutive inputs
    p.include_gating = False  # also prune the gating network's kernels
    # Steps between mask updates inside the window (a global update ranks every prunable weight: several steps' time).
    p.update_every = 100
    return p


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = data_config()
    config.model = model_config()
    config.train = train_config()
    config.pruning = pruning_config()
    # Starting from a pretrained network means normalising as it was trained (overridable).
    config.data.normalisation_from = config.train.get_ref("init_from")
    if arg == "runlocal":
        apply_runlocal(config)
    elif arg:
        raise ConfigError(f"unknown config argument {arg!r}; expected nothing or 'runlocal'")
    return config


def apply_runlocal(config: ml_collections.ConfigDict) -> None:
    """Shrink a config so it finishes on a 2-core CPU in about a minute (same recipe, smaller net, fewer epochs)."""
    config.model.hidden_sizes = (256, 256)
    config.train.epochs = 10
    config.train.log_every_steps = 200
