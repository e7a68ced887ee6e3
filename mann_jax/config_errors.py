"""``ConfigError``: a config value the code cannot use, reported with the key that holds it.

A config typo in a key is caught by ml_collections when the flags are parsed (see
:func:`mann_jax.cli.run`); a value of the right type but out of range (``train.batch_size=-4``,
``train.epochs=0``, ``data.source='bhv'``) is caught here, before any work starts, with the key named
as the user wrote it (``--config.train.batch_size``).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from mann_jax.errors import UserError


class ConfigError(UserError, ValueError):
    """A config value out of range or of an unknown kind; the message names its key."""


def check(ok: bool, key: str, value: Any, expected: str) -> None:
    """Raises :class:`ConfigError` ``"<key> must be <expected>, got <value>"`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"config {key} must be {expected}, got {value!r}")


def check_train(config: ml_collections.ConfigDict) -> None:
    """The ``train`` and ``pruning`` values every training entry point needs (train, sweep, study).

    Raises:
        ConfigError: the first value out of range, named by its key.
    """
    tc = config.train
    for key in ("batch_size", "epochs", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
                "eval_batch_size", "histograms_every_epochs", "te", "tmult"):
        if key in tc:
            value = tc[key]
            check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, f"train.{key}", value,
                  "an integer >= 1")
    check(float(tc.learning_rate) > 0, "train.learning_rate", tc.learning_rate, "> 0")
    check(float(tc.weight_decay) >= 0, "train.weight_decay", tc.weight_decay, ">= 0")
    if "pruning" in config:
        s = float(config.pruning.target_sparsity)
        check(0.0 <= s < 1.0, "pruning.target_sparsity", config.pruning.target_sparsity, "in [0, 1)")
