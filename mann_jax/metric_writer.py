"""Metric writing behind one small interface, backed by a TF-free TensorBoard writer.

The interface follows clu's ``MetricWriter`` (``write_scalars`` / ``write_histograms`` /
``write_images`` / ``write_hparams``), but clu's writers import TensorFlow; here the events are
written by ``tensorboardX`` (maintained, no TensorFlow) in the format TensorBoard reads. The tests
read the files back with TensorBoard's own ``EventAccumulator``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter


class MetricWriter:
    """Writes scalars, histograms, images and hyper-parameters of one run to ``logdir``."""

    def __init__(self, logdir: str | os.PathLike):
        self.logdir = os.fspath(logdir)
        self._writer = SummaryWriter(logdir=self.logdir, flush_secs=30)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for name, value in scalars.items():
            self._writer.add_scalar(name, float(np.asarray(value)), global_step=int(step))

    def write_histograms(self, step: int, arrays: Mapping[str, Any]) -> None:
        for name, value in arrays.items():
            self._writer.add_histogram(name, np.asarray(value, dtype=np.float64).ravel(), global_step=int(step))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Images as ``(H, W, C)`` uint8 or float in [0, 1]."""
        for name, image in images.items():
            self._writer.add_image(name, np.asarray(image), global_step=int(step), dataformats="HWC")

    def write_hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, float] | None = None) -> None:
        """Hyper-parameters (flattened, stringified when not a number/bool/str) and final metrics."""
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        self._writer.add_hparams(clean, dict(metrics or {}), name=".", global_step=0)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train.batch_size": 32, ...}`` from a nested mapping (a ConfigDict's ``to_dict()``)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, name + "."))
        else:
            flat[name] = value
    return flat
