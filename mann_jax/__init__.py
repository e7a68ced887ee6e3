"""mann_jax: JAX/Flax experiment framework for lightweight neural character animation."""

__version__ = "0.1.0"
