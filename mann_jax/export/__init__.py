"""Export of trained MANN controllers.

Submodules:

* :mod:`mann_jax.export.ai4animation`: the AI4Animation ``.bin`` weight format (read and write,
  bit-exact round trip), so original trained weights load into the Flax model and our models
  run in the original Unity runtime.
"""

from mann_jax.export.ai4animation import (
    WeightsFormatError,
    load_ai4animation_weights,
    model_from_ai4animation,
    save_ai4animation,
)

__all__ = [
    "WeightsFormatError",
    "load_ai4animation_weights",
    "model_from_ai4animation",
    "save_ai4animation",
]
