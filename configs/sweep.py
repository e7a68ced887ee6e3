"""Sparsity sweep: one MANN per sparsity level (0 %, 10 %, ..., 90 %), trained together (mann_jax.sweep).

Run:  python -m experiments.sweep --config configs/sweep.py:runlocal --workdir runs/sweep   (make sweep)
      python -m experiments.sweep --config configs/sweep.py --workdir runs/sweep_full        (the study's recipe)
      python -m experiments.sweep --config configs/sweep.py:dog --workdir runs/sweep_dog     (the real dog data)
      python -m experiments.sweep --config configs/sweep.py:toy --workdir runs/sweep_toy     (seconds: tests, checks)
Override any field, e.g. --config.sweep.levels='(0.0,0.5,0.9)' --config.sweep.seeds='(1,2,3)'
--config.sweep.strategy=vmap. ``pruning.target_sparsity`` is ignored: the levels replace it.
"""

from __future__ import annotations

import ml_collections

from configs import default, dog
from mann_jax.config_errors import ConfigError


def sweep_config() -> ml_collections.ConfigDict:
    """Settings of a sweep (mann_jax.sweep.make_plan validates them)."""
    s = ml_collections.ConfigDict()
    s.levels = tuple(round(0.1 * i, 1) for i in range(10))  # target sparsities, each in [0, 1)
    s.seeds = ()  # () = (train.seed,); several seeds per level = a second mapped axis
    s.per_level_seeds = False  # True: level i uses seed + 1000 i (weights, dropout) instead of the same seed
    s.shared_data_order = True  # every model sees the same batches (a controlled comparison)
    s.strategy = "auto"  # "auto" | "vmap" | "map" | "unroll" | "loop" (all give the same results)
    s.calibration_steps = 0  # > 0: "auto" times the strategies of `calibrate` this many steps and keeps the fastest
    s.calibrate = ("vmap", "loop")
    s.devices = 0  # shard the models over this many devices; 0 = all
    # CPU: XLA devices the host is split into; 0 = one per core (1: measured fastest, see mann_jax.sweep).
    s.cpu_devices = 1
    s.uneven = "pad"  # models not dividing the devices: "pad" (with copies, dropped) | "error"
    s.max_memory_gb = 0.0  # memory budget per device (CPU: RAM); 0 = detect
    s.eval_every_epochs = 1  # validation loss (and gating statistics) of every model
    return s


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``""``: the study's recipe on the embedded data; ``"runlocal"``: minutes on a 2-core CPU; ``"dog"``: real
    data; ``"toy"``: three tiny models in seconds (tests, the multi-process check)."""
    if arg == "dog":
        config = dog.get_config(None)
    else:
        config = default.get_config(None)
    config.sweep = sweep_config()
    config.pruning.target_sparsity = 0.0  # ignored by sweeps: every level sets its own target
    if arg == "runlocal":
        apply_runlocal(config)
    elif arg == "toy":
        apply_toy(config)
    elif arg not in (None, "", "dog"):
        raise ConfigError(f"unknown config argument {arg!r}; expected nothing, 'runlocal', 'toy' or 'dog'")
    return config


def apply_runlocal(config: ml_collections.ConfigDict) -> None:
    """Ten levels in a few minutes on a 2-core CPU: the default data, a smaller net, 3 epochs, masks every 10 steps."""
    config.model.hidden_sizes = (128, 128)
    config.train.epochs = 3
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 500
    config.pruning.update_every = 10
    config.pruning.end = 0.8


def apply_toy(config: ml_collections.ConfigDict) -> None:
    """Three levels of a 2-expert 16 x 16 net on a little embedded data, two epochs: seconds per sweep."""
    config.data.update(synthetic_clips=3, synthetic_seconds=6.0)
    config.model.update(hidden_sizes=(16, 16), n_experts=2)
    config.train.update(batch_size=16, epochs=2, log_every_steps=10, checkpoint_every_steps=10, keep_checkpoints=2,
                        learning_rate=3e-3)
    config.pruning.update(update_every=3, end=0.8)
    config.sweep.levels = (0.0, 0.5, 0.8)
