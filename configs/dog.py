"""The MANN dog motion capture (40 BVH clips of AI4Animation's MotionCapture.zip).

Point it at your download:
  python -m experiments.prepare_data --config configs/dog.py --config.data.path=/path/to/MotionCapture
The default path is the MANN_DOG_BVH environment variable, else ../shared/data/mann_dog_bvh
relative to the working directory.
"""

from __future__ import annotations

import os

import ml_collections

from configs import default
from mann_jax.config_errors import ConfigError


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = default.get_config(None)
    config.data.source = "bvh"
    config.data.path = os.environ.get("MANN_DOG_BVH", os.path.join("..", "shared", "data", "mann_dog_bvh"))
    if arg == "runlocal":
        # The full dog data, a smaller network and a few epochs: minutes on a 2-core CPU.
        default.apply_runlocal(config)
        config.train.epochs = 3
    elif arg:
        raise ConfigError(f"unknown config argument {arg!r}; expected nothing or 'runlocal'")
    return config
