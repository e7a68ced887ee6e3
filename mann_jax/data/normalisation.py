"""Per-column normalisation of MANN inputs and outputs, as the original.

Mean and population standard deviation (ddof = 0) per column; a constant column gets std 1. A
NamedTuple, so it is a pytree: the same object normalises numpy rows in the data pipeline and jax
arrays inside jitted code, and is saved with a dataset or an exported model.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Normalisation(NamedTuple):
    """Per-column statistics; ``x_norm = (x − x_mean) / x_std``, ``y = y_norm · y_std + y_mean``."""

    x_mean: Any
    x_std: Any
    y_mean: Any
    y_std: Any

    @classmethod
    def fit(cls, inputs: np.ndarray, outputs: np.ndarray, *, min_std: float = 1e-5) -> Normalisation:
        """Mean and population std of the rows; std below ``min_std`` (a constant column) → 1.

        ``min_std`` is 1e-5 rather than exactly 0 because a column that is constant by construction
        (e.g. the current sample's own position) can carry float round-off of 1e-17.
        """

        def stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            a64 = np.asarray(a, np.float64)
            mean, std = a64.mean(axis=0), a64.std(axis=0)
            std[std < min_std] = 1.0
            return mean.astype(np.float32), std.astype(np.float32)

        x_mean, x_std = stats(inputs)
        y_mean, y_std = stats(outputs)
        return cls(x_mean=x_mean, x_std=x_std, y_mean=y_mean, y_std=y_std)

    def normalise_inputs(self, x: Any) -> Any:
        return (x - self.x_mean) / self.x_std

    def denormalise_inputs(self, x: Any) -> Any:
        return x * self.x_std + self.x_mean

    def normalise_outputs(self, y: Any) -> Any:
        return (y - self.y_mean) / self.y_std

    def denormalise_outputs(self, y: Any) -> Any:
        return y * self.y_std + self.y_mean
