"""How close the project's feature rows are to the original exporter's, and what the authors'
network makes of them.

Two measurements (``python -m experiments.parity``):

1. **Rows.** The 200 rows the original ``MotionExporter.cs`` wrote for a stretch of
   ``D1_001_KAN01_001`` (``mocap-sample.txt``) against the project's rows of the same frames, found
   by matching bone positions: per column group the mean absolute difference, the original's mean
   absolute value, and the correlation.
2. **Network.** The authors' trained MANN on the project's rows of every clip, against the
   project's own targets: the bone-position error in metres (mean absolute difference, as the
   weights' README check) and, per output group, the mean squared error in units of the original's
   output standard deviation (``Ystd``); 1.0 is as bad as always predicting ``Ymean``.

Which frames the authors exported is not public, but their ``Xmean``/``Xstd`` bound it: by
Chebyshev's inequality at most ``1/k²`` of their rows lie ``k`` standard deviations from ``Xmean``
in any one column, so rows that far out in a posture column are rows their network (almost) never
saw (the figures: docs/exporter_parity.md)
(:func:`within_export_distribution`); and their style means are their rows' style mix
(:func:`style_mix`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from mann_jax.data import layout


def _columns(slices: list[slice]) -> np.ndarray:
    return np.concatenate([np.arange(s.start, s.stop) for s in slices])


def _trajectory_columns(field: str) -> np.ndarray:
    return _columns([layout.input_sample(k, field) for k in range(layout.NUM_TRAJECTORY_SAMPLES)])


def _bone_columns(field: str, *, output: bool = False) -> np.ndarray:
    at = layout.output_bone if output else layout.input_bone
    return _columns([at(b, field) for b in range(layout.NUM_BONES)])


INPUT_GROUPS: dict[str, np.ndarray] = {
    "trajectory positions": _trajectory_columns("pos"),
    "trajectory directions": _trajectory_columns("dir"),
    "trajectory velocities": _trajectory_columns("vel"),
    "trajectory speed": _trajectory_columns("speed"),
    "styles": _trajectory_columns("style"),
    "bone positions": _bone_columns("pos"),
    "bone forward": _bone_columns("fwd"),
    "bone up": _bone_columns("up"),
    "bone velocities": _bone_columns("vel"),
}

OUTPUT_GROUPS: dict[str, np.ndarray] = {
    "trajectory": np.arange(layout.OUTPUT_TRAJECTORY.start, layout.OUTPUT_TRAJECTORY.stop),
    "bone positions": _bone_columns("pos", output=True),
    "bone forward/up": np.concatenate([_bone_columns("fwd", output=True), _bone_columns("up", output=True)]),
    "bone velocities": _bone_columns("vel", output=True),
    "root": np.arange(layout.OUTPUT_ROOT.start, layout.OUTPUT_ROOT.stop),
}


class GroupComparison(NamedTuple):
    """One column group of two row sets: mean |difference|, the reference's mean |value|, correlation."""

    mean_abs_diff: float
    reference_mean_abs: float
    correlation: float


def locate_rows(reference: np.ndarray, rows: np.ndarray) -> tuple[int, float]:
    """The offset into ``rows`` whose consecutive rows best match ``reference`` by bone positions.

    Bone positions are root-relative, so they identify frames without any other feature being right.
    Returns ``(offset, mean absolute difference of the bone positions there)``.

    Raises:
      ValueError: ``rows`` is shorter than ``reference``.
    """
    cols = INPUT_GROUPS["bone positions"]
    n = len(reference)
    if len(rows) < n:
        raise ValueError(f"cannot place {n} reference rows in {len(rows)} rows")
    ref, ours = reference[:, cols], rows[:, cols]
    costs = [np.abs(ours[o:o + n] - ref).mean() for o in range(len(rows) - n + 1)]
    best = int(np.argmin(costs))
    return best, float(costs[best])


def compare_groups(rows: np.ndarray, reference: np.ndarray,
                   groups: dict[str, np.ndarray] = INPUT_GROUPS) -> dict[str, GroupComparison]:
    """Per-group :class:`GroupComparison` of ``rows`` against ``reference`` (same shape)."""
    out = {}
    for name, cols in groups.items():
        a, b = rows[:, cols].ravel().astype(np.float64), reference[:, cols].ravel().astype(np.float64)
        varies = a.std() > 1e-9 and b.std() > 1e-9
        corr = float(np.corrcoef(a, b)[0, 1]) if varies else float("nan")
        out[name] = GroupComparison(float(np.abs(a - b).mean()), float(np.abs(b).mean()), corr)
    return out


class NetworkErrors(NamedTuple):
    """The authors' network on one set of rows.

    Attributes:
      bone_position_m: mean absolute difference of the predicted bone positions, metres.
      std_units: per :data:`OUTPUT_GROUPS` group, mean of ``((prediction − target) / Ystd)²``.
      mean_std_units: the same over all output columns.
    """

    bone_position_m: float
    std_units: dict[str, float]
    mean_std_units: float


def network_errors(predictions: np.ndarray, targets: np.ndarray, y_std: Any) -> NetworkErrors:
    """:class:`NetworkErrors` of denormalised ``predictions`` against ``targets`` (both ``(N, 363)``)."""
    z = (np.asarray(predictions, np.float64) - targets) / np.asarray(y_std, np.float64)
    cols = OUTPUT_GROUPS["bone positions"]
    bone = float(np.abs(predictions[:, cols] - targets[:, cols]).mean())
    groups = {name: float((z[:, c] ** 2).mean()) for name, c in OUTPUT_GROUPS.items()}
    return NetworkErrors(bone, groups, float((z ** 2).mean()))


def predict(model: Any, normalisation: Any, inputs: np.ndarray, *, batch: int = 4096) -> np.ndarray:
    """Denormalised outputs of an eval-mode :class:`mann_jax.model.MANN` for denormalised ``inputs``."""
    import jax
    from flax import nnx

    from mann_jax.model import apply

    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda x: apply(graphdef, state, x))
    out = []
    for start in range(0, len(inputs), batch):
        x = normalisation.normalise_inputs(np.asarray(inputs[start:start + batch], np.float32))
        out.append(np.asarray(normalisation.denormalise_outputs(forward(x)), np.float64))
    return np.concatenate(out) if out else np.zeros((0, layout.OUTPUT_DIM))


def within_export_distribution(inputs: np.ndarray, normalisation: Any, *, max_z: float) -> np.ndarray:
    """Rows whose every bone input column lies within ``max_z`` of the authors' ``Xstd`` from their ``Xmean``.

    At most ``1/max_z²`` of the authors' own rows lie beyond in any one column (Chebyshev), so the
    rows outside are, column by column, ranges their export (almost) never held.

    Raises:
      ConfigError: ``max_z`` is not a positive number.
    """
    if not max_z > 0:
        from mann_jax.config_errors import ConfigError

        raise ConfigError(f"--max_z must be a positive number of standard deviations, got {max_z}")
    x_mean, x_std = (np.asarray(a, np.float64)[layout.INPUT_BONES] for a in (normalisation.x_mean, normalisation.x_std))
    z = np.abs(np.asarray(inputs, np.float64)[:, layout.INPUT_BONES] - x_mean) / x_std
    return z.max(axis=1) <= max_z


def style_mix(inputs: np.ndarray) -> np.ndarray:
    """Fraction of rows per style (:data:`layout.STYLES`): the mean of the current sample's style columns.

    The same columns of the authors' ``Xmean`` give their export's mix.
    """
    return np.asarray(inputs, np.float64)[:, layout.input_sample(layout.CURRENT_SAMPLE, "style")].mean(axis=0)


def sample_parity(sample: np.ndarray, clip_inputs: np.ndarray) -> tuple[int, dict[str, GroupComparison]]:
    """Place the exporter's ``sample`` rows in a clip's (unmirrored) input rows and compare the groups.

    Returns ``(first matching row, per-group comparison)``.
    """
    offset, _ = locate_rows(sample, clip_inputs)
    return offset, compare_groups(clip_inputs[offset:offset + len(sample)], sample)
