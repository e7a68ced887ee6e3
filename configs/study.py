"""The study's experiments (mann_jax.study): one config, three scales.

  python -m experiments.tradeoff    --config configs/study.py:runlocal --workdir runs/study   # Fig. 1 (+ structured)
  python -m experiments.model_size  --workdir runs/study                                       # Table 1
  python -m experiments.same_size   --config configs/study.py:runlocal --workdir runs/study   # Figs. 2-3
  python -m experiments.ablation    --config configs/study.py:runlocal --workdir runs/study   # Table 2
  python -m experiments.activations --config configs/study.py:runlocal --workdir runs/study   # Fig. 4
  python -m experiments.schedules   --config configs/study.py:runlocal --workdir runs/study   # one-cycle/AGP/one-shot
  python -m experiments.report      --workdir runs/study                                       # report.md
  python -m experiments.study       --config configs/study.py:runlocal --workdir runs/study   # all, then the report
  (make study = the last line, every experiment of mann_jax/study/registry.py; make report = the report alone)

Scales (the argument):
  ""          the study's recipe on the real dog data: 8 experts x 512, 150 epochs, batch 32 (a GPU job).
  "runlocal"  the real dog data on a 2-core CPU: 8 experts x 128 and 2 epochs; every experiment
              under 30 minutes (the trade-off sweep, shared by ablation and activations, is the
              longest). The same-size hidden sizes scale with the base (H/2, H/4, H/8).
  "toy"       the embedded procedural data at toy size: seconds per experiment (the tests).
  "pretrained" the authors' trained 8 x 512 dog network ($MANN_PRETRAINED, else
              ../shared/data/mann_pretrained) pruned while fine-tuning for 2 epochs (pruning in the
              first 80 %), 10 levels x 3 seeds; the same-size dense models trained from scratch for 20
              epochs. Hours of a 2-core CPU, in sittings (docs/results.md): every sweep resumes.
              The trade-off also measures the authors' network untouched (the dense reference: a
              table row and a line in each figure); re-running a finished trade-off measures only it.

Every experiment writes into ``<workdir>/<experiment>/`` (results.json, figures as PNG + SVG,
TensorBoard events); trained models live in ``<workdir>/models/<name>/`` (sweeps, resumable) and
are shared: the trade-off sweep's dense and sparse models are the ones ablation and activations
study, so whichever runs first trains them.
"""

from __future__ import annotations

import os

import ml_collections

from configs import sweep
from mann_jax.config_errors import ConfigError


def study_config() -> ml_collections.ConfigDict:
    """Settings of the experiments (mann_jax.study); the sweep/model/train sections say how models are trained."""
    s = ml_collections.ConfigDict()
    s.fps = 60.0  # frame rate of the data (the dog capture and the embedded data alike)
    s.seeds = (23456, 1, 2)  # every experiment: one model per seed, figures give mean +- std
    s.levels = tuple(round(0.1 * i, 1) for i in range(10))  # the trade-off curve (unstructured, the study)
    s.structured_levels = (0.3, 0.5, 0.7, 0.9)  # the same curve with whole hidden neurons pruned; () = skip
    s.structured_scope = "local"  # neurons pruned per layer (each keeps the same fraction); "global": across layers
    s.sparse_level = 0.9  # the sparse model of the ablation and activation studies (a level of `levels`)
    s.same_size_fractions = (0.5, 0.25, 0.125)  # dense hidden = base hidden x fraction (512 -> 256, 128, 64)
    s.schedules = ("one_cycle", "agp", "one_shot")  # compared at `schedule_level` on the same budget
    s.schedule_level = 0.9
    s.one_shot_at = 0.5  # one-shot: train dense for this fraction of the budget, prune once, fine-tune the rest
    s.walk_speed = 1.0  # m/s: the walking and turning scenarios (mann_jax.control.scenarios)
    s.run_speed = 3.5
    s.scenario_seconds = 5.0  # length of the walk/run scenarios; turns: 2 s before, 3 s after
    s.replay_window_seconds = 4.0  # held-out clips cut into windows this long, each replayed from its true start
    s.max_replay_windows = 64  # at most this many windows (evenly spread over the held-out clips)
    s.eval_split = "test"  # clips never used in training or model selection
    s.video = True  # same-size: side-by-side MP4/GIF of dense vs sparse turning
    s.same_size_dense_epochs = 0  # epochs of the same-size dense models (from scratch); 0 = train.epochs
    return s


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``""``: the study's full scale on the dog data; ``"runlocal"``: a 2-core CPU; ``"toy"``: seconds (tests)."""
    if arg in (None, "", "runlocal", "pretrained"):
        config = sweep.get_config("dog")
    elif arg == "toy":
        config = sweep.get_config(None)
    else:
        raise ConfigError(f"unknown config argument {arg!r}; expected nothing, 'runlocal', 'toy' or 'pretrained'")
    config.study = study_config()
    config.sweep.levels = config.study.levels  # informative: each experiment sets the levels it trains
    if arg == "runlocal":
        apply_runlocal(config)
    elif arg == "toy":
        apply_toy(config)
    elif arg == "pretrained":
        apply_pretrained(config)
    return config


def apply_pretrained(config: ml_collections.ConfigDict) -> None:
    """Gradual pruning of the authors' trained network while fine-tuning (the setting beside the study's
    pruning from scratch): its weights and normalisation, a short budget, the study's levels and seeds."""
    config.train.init_from = os.environ.get("MANN_PRETRAINED", os.path.join("..", "shared", "data", "mann_pretrained"))
    config.train.epochs = 2
    config.train.log_every_steps = 500
    config.pruning.end = 0.8  # the last 20 % of the budget fine-tunes at the final sparsity
    config.study.same_size_dense_epochs = 20  # from scratch: as many epochs as fit beside the rest


def apply_runlocal(config: ml_collections.ConfigDict) -> None:
    """The real dog data on a 2-core CPU: 8 x 128, 2 epochs, six levels; each experiment < 30 min."""
    config.model.hidden_sizes = (128, 128)
    config.train.epochs = 2
    config.train.log_every_steps = 200
    config.train.checkpoint_every_steps = 2000
    config.pruning.update_every = 10
    config.pruning.end = 0.8
    config.study.levels = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9)
    config.study.structured_levels = (0.5, 0.7, 0.9)
    config.sweep.levels = config.study.levels


def apply_toy(config: ml_collections.ConfigDict) -> None:
    """Seconds per experiment on the embedded data (tests): a tiny net, one epoch, short scenarios."""
    config.data.update(synthetic_clips=6, synthetic_seconds=8.0, val_fraction=0.2, test_fraction=0.2)
    config.model.update(hidden_sizes=(16, 16), n_experts=4)
    config.train.update(batch_size=32, epochs=1, log_every_steps=20, checkpoint_every_steps=100,
                        learning_rate=3e-3)
    config.pruning.update(update_every=4, end=0.8)
    config.study.update(levels=(0.0, 0.5, 0.9), structured_levels=(0.5,), scenario_seconds=1.5,
                        replay_window_seconds=1.0, max_replay_windows=6, video=False)
    config.sweep.levels = config.study.levels
