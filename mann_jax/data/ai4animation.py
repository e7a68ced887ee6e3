"""Read the original AI4Animation MANN export (``Input.txt`` / ``Output.txt``) as a dataset.

The original Unity exporter writes one row per frame, space-separated, 480 input and 363 output
values in the layout of :mod:`mann_jax.data.layout`, mirrored copies already included. Users who
have that export can train on it directly (``data.source = "ai4animation"``).

The rows carry no clip names, so the train/validation/test split is made over contiguous blocks of
:data:`BLOCK_ROWS` rows (named ``rows_<start>``), which keeps neighbouring, nearly identical frames
on the same side of the split.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import ml_collections
import numpy as np

from mann_jax.data import layout
from mann_jax.data.errors import MotionDataError

if TYPE_CHECKING:
    from mann_jax.data.dataset import Dataset

BLOCK_ROWS = 2000
FILES = ("Input.txt", "Output.txt")


def export_files(folder: Path) -> list[Path]:
    """The two export files of a folder, with a clear error when one is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MotionDataError(folder, "folder does not exist or is not a folder")
    paths = [folder / name for name in FILES]
    for p in paths:
        if not p.is_file():
            raise MotionDataError(p, "missing: an AI4Animation export folder holds Input.txt and Output.txt")
    return paths


def read_rows(path: Path, width: int) -> np.ndarray:
    """``(N, width)`` float32 rows of a space-separated text file; errors name the line."""
    lines = [ln for ln in Path(path).read_text().splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise MotionDataError(path, "file is empty")
    counts = np.fromiter((len(ln.split()) for ln in lines), dtype=np.int64, count=len(lines))
    bad = np.flatnonzero(counts != width)
    if len(bad):
        i = int(bad[0])
        raise MotionDataError(path, f"expected {width} values per row, found {counts[i]}", line=i + 1)
    try:
        rows = np.array(" ".join(lines).split(), dtype=np.float64).reshape(len(lines), width)
    except ValueError:
        for i, ln in enumerate(lines):
            try:
                np.array(ln.split(), dtype=np.float64)
            except ValueError:
                raise MotionDataError(path, "non-numeric value", line=i + 1) from None
        raise
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        raise MotionDataError(path, "NaN or infinite value", line=int(np.flatnonzero(~finite)[0]) + 1)
    return rows.astype(np.float32)


def load_export(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, outputs)`` of an export folder."""
    input_path, output_path = export_files(folder)
    x = read_rows(input_path, layout.INPUT_DIM)
    y = read_rows(output_path, layout.OUTPUT_DIM)
    if len(x) != len(y):
        raise MotionDataError(folder, f"Input.txt has {len(x)} rows but Output.txt has {len(y)}")
    return x, y


def dataset_from_export(folder: Path, config: ml_collections.ConfigDict) -> Dataset:
    """A :class:`mann_jax.data.dataset.Dataset` from an export folder (split by row blocks)."""
    from mann_jax.data.dataset import ClipRows, assemble

    x, y = load_export(folder)
    style_cols = layout.input_sample(layout.CURRENT_SAMPLE, "style")
    labels = np.argmax(x[:, style_cols], axis=1).astype(np.int8)
    rows = []
    for start in range(0, len(x), BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, len(x))
        rows.append(ClipRows(
            name=f"rows_{start:07d}", num_frames=stop - start, inputs=x[start:stop], outputs=y[start:stop],
            frames=np.arange(stop - start), mirrored=np.zeros(stop - start, bool), styles=labels[start:stop]))
    return assemble(rows, config)
