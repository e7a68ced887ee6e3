"""Metric writing behind one small interface, backed by a TF-free TensorBoard writer.

The interface follows clu's ``MetricWriter`` (``write_scalars`` / ``write_histograms`` /
``write_images`` / ``write_hparams``), but clu's writers import TensorFlow; here the events are
written by ``tensorboardX`` (maintained, no TensorFlow) in the format TensorBoard reads. The tests
read the files back with TensorBoard's own ``EventAccumulator``.

Every writer must be closed (``with MetricWriter(...)``, or ``close()`` on every path out): tensorboardX
closes a forgotten one in an ``atexit`` hook that starts a thread, which Python >= 3.12 refuses during
shutdown (a traceback at the end of the process). ``open_logdirs()`` lists the writers still open.

Beside it, the two helpers a run's records share: :func:`flatten_config` (hparams, resume checks) and
:func:`json_safe` (``summary.json``, ``results.json``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter

# The writers opened and not yet closed, with their logdirs.
_OPEN: dict[MetricWriter, str] = {}


def open_logdirs() -> list[str]:
    """The logdirs of the writers of this process that are open (opened and not closed)."""
    return sorted(_OPEN.values())


class MetricWriter:
    """Writes scalars, histograms, images and hyper-parameters of one run to ``logdir``."""

    def __init__(self, logdir: str | os.PathLike):
        self.logdir = os.fspath(logdir)
        self._writer = SummaryWriter(logdir=self.logdir, flush_secs=30)
        _OPEN[self] = self.logdir

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
        """Flushes and closes the event file; closing again does nothing."""
        self._writer.close()
        _OPEN.pop(self, None)

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


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN: a loss with nothing to
    measure it on, a rate with no step run, is written as null)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        return None
    return value
