"""Default configuration: the embedded procedural quadruped, so everything runs with no download.

Run:  python -m experiments.prepare_data --config configs/default.py
Shrink any config for a laptop CPU:  --config configs/default.py:runlocal
Override any field:  --config.data.mirror=False  (a typo in a key is an error).
"""

from __future__ import annotations

import ml_collections


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
    d.root_sigma_frames = 6.0  # Gaussian smoothing of the root trajectory and facing
    d.support_window_seconds = 2.0  # contacts/styles measure heights above the lowest paw over this window; 0 = floor_height
    d.contact_max_height = 0.04  # metres above the floor
    d.contact_max_speed = 0.4  # m/s, horizontal
    d.styles = ml_collections.ConfigDict()  # overrides of mann_jax.data.styles.StyleRules fields
    d.val_fraction = 0.1
    d.test_fraction = 0.1
    d.split_seed = 0
    d.on_bad_clip = "skip"  # "skip" (report and leave out) | "raise" (stop the run)
    d.cache_dir = ""  # "" = ~/.cache/mann_jax (or $XDG_CACHE_HOME/mann_jax)
    return d


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = data_config()
    if arg == "runlocal":
        config.data.synthetic_clips = 4
        config.data.synthetic_seconds = 10.0
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; expected nothing or 'runlocal'")
    return config
