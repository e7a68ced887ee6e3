"""Read and write MANN weights in the AI4Animation ``.bin`` format (SIGGRAPH 2018 release).

The format is one raw little-endian float32 file per tensor, written row-major (numpy ``tofile``),
weights stored ``[out, in]``::

    Xmean.bin Xstd.bin (input) Ymean.bin Ystd.bin (output)   normalisation
    wc{l}_w.bin [out, in], wc{l}_b.bin [out]                   gating layer l = 0, 1, 2
    cp{l}_a{k}.bin [out, in], cp{l}_b{k}.bin [out]             expert k, layer l = 0, 1, 2

Design choices:

* The files carry no header, so every size is inferred from the vectors (``Xmean`` gives the
  input width, ``Ymean`` the output width, ``wc0_b`` / ``wc2_b`` the gating width and the number
  of experts, ``cp{l}_b0`` the hidden widths) and every other file is checked against them. Any
  missing, unreadable or wrongly sized file raises :class:`WeightsFormatError` naming the file
  and the expected vs found byte counts.
* :func:`load_ai4animation_weights` returns plain numpy arrays keyed by file stem, in file layout.
  :func:`model_from_ai4animation` transposes ``[out, in]`` into the model's ``(in, out)`` and
  returns the model in eval mode with its :class:`~mann_jax.data.normalisation.Normalisation`;
  :func:`save_ai4animation` transposes back. Transposes and float32 copies are exact, so a load
  -> save round trip reproduces the files bit for bit.
* The gating indices are not part of the format (the original hard-codes them); they are an
  argument, defaulting to the dog's 19.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mann_jax.data.normalisation import Normalisation
from mann_jax.errors import UserError
from mann_jax.export.compact import unwritable_reason
from mann_jax.model import DEFAULT_GATING_INDICES, MANN, Formulation

_DTYPE = np.dtype("<f4")
_NORMALISATION = ("Xmean", "Xstd", "Ymean", "Ystd")


class WeightsFormatError(UserError, ValueError):
    """A weights file is missing or malformed, or a folder cannot be written: names the file and the problem."""

    def __init__(
        self,
        path: str | os.PathLike,
        problem: str,
        *,
        expected_bytes: int | None = None,
        found_bytes: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        self.expected_bytes = expected_bytes
        self.found_bytes = found_bytes
        msg = f"{self.path}: {problem}"
        if expected_bytes is not None:
            msg += f" (expected {expected_bytes} bytes, found {found_bytes})"
        super().__init__(msg)


def _read(folder: Path, stem: str, shape: tuple[int, ...] | None, why: str = "") -> np.ndarray:
    """Reads ``folder/stem.bin`` as float32; checks the size against ``shape`` when given."""
    path = folder / f"{stem}.bin"
    if not path.is_file():
        raise WeightsFormatError(path, "file not found")
    found = path.stat().st_size
    if shape is None:
        if found == 0 or found % _DTYPE.itemsize:
            raise WeightsFormatError(
                path, f"size is not a positive multiple of {_DTYPE.itemsize} bytes (float32)"
            )
        shape = (found // _DTYPE.itemsize,)
    expected = int(np.prod(shape)) * _DTYPE.itemsize
    if found != expected:
        dims = "x".join(str(d) for d in shape)
        raise WeightsFormatError(
            path,
            f"wrong size for a {dims} float32 array{why}",
            expected_bytes=expected,
            found_bytes=found,
        )
    return np.fromfile(path, dtype=_DTYPE).astype(np.float32).reshape(shape)


def load_normalisation(folder: str | os.PathLike) -> Normalisation:
    """The input/output statistics of an AI4Animation MANN export (its four ``X``/``Y`` files only).

    Raises:
        WeightsFormatError: The folder or a file is missing, or a file has the wrong size.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsFormatError(folder, "weights folder not found")
    x_mean = _read(folder, "Xmean", None)
    x_std = _read(folder, "Xstd", x_mean.shape, " (size of Xmean.bin)")
    y_mean = _read(folder, "Ymean", None)
    y_std = _read(folder, "Ystd", y_mean.shape, " (size of Ymean.bin)")
    return Normalisation(x_mean, x_std, y_mean, y_std)


def load_ai4animation_weights(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every tensor of an AI4Animation MANN export.

    Args:
        folder: Directory holding the ``.bin`` files.

    Returns:
        float32 arrays keyed by file stem (``"Xmean"``, ``"wc0_w"``, ``"cp1_a3"``, ...), in file
        layout: weights ``[out, in]``, biases and statistics 1-D.

    Raises:
        WeightsFormatError: The folder or a file is missing, or a file has the wrong size.
    """
    folder = Path(folder)
    out: dict[str, np.ndarray] = dict(zip(_NORMALISATION, load_normalisation(folder)))
    n_in, n_out = out["Xmean"].shape[0], out["Ymean"].shape[0]

    out["wc0_b"] = _read(folder, "wc0_b", None)
    g_hidden = out["wc0_b"].shape[0]
    w0 = folder / "wc0_w.bin"
    g_in_bytes = w0.stat().st_size if w0.is_file() else 0
    g_in = max(g_in_bytes // (_DTYPE.itemsize * g_hidden), 1)
    out["wc0_w"] = _read(folder, "wc0_w", (g_hidden, g_in), " (rows from wc0_b.bin)")
    out["wc1_w"] = _read(folder, "wc1_w", (g_hidden, g_hidden), " (from wc0_b.bin)")
    out["wc1_b"] = _read(folder, "wc1_b", (g_hidden,), " (from wc0_b.bin)")
    out["wc2_b"] = _read(folder, "wc2_b", None)
    n_experts = out["wc2_b"].shape[0]
    out["wc2_w"] = _read(folder, "wc2_w", (n_experts, g_hidden), " (from wc2_b.bin, wc0_b.bin)")

    h0 = _read(folder, "cp0_b0", None).shape[0]
    h1 = _read(folder, "cp1_b0", None).shape[0]
    dims = ((h0, n_in, "cp0_b0.bin, Xmean.bin"), (h1, h0, "cp1_b0.bin, cp0_b0.bin"),
            (n_out, h1, "Ymean.bin, cp1_b0.bin"))
    for layer, (o, i, source) in enumerate(dims):
        for k in range(n_experts):
            out[f"cp{layer}_a{k}"] = _read(folder, f"cp{layer}_a{k}", (o, i), f" (from {source})")
            out[f"cp{layer}_b{k}"] = _read(folder, f"cp{layer}_b{k}", (o,), f" (from {source})")
    return out


#: File names of the format (a training workdir never holds one).
_FILE_NAME = re.compile(r"(Xmean|Xstd|Ymean|Ystd|wc\d+_[wb]|cp\d+_[ab]\d+)\.bin")


def is_weights_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is meant as an AI4Animation weights folder: a folder holding any file of the format.

    A folder with only some of the files counts, so that loading it names the missing one (a training
    workdir holds none of them).
    """
    folder = Path(path)
    if not folder.is_dir():
        return False
    if (folder / "wc0_w.bin").is_file():
        return True
    with contextlib.suppress(OSError):
        return any(_FILE_NAME.fullmatch(p.name) for p in folder.iterdir())
    return False


def normalisation_from_weights(weights: dict[str, np.ndarray]) -> Normalisation:
    """The :class:`Normalisation` held in a :func:`load_ai4animation_weights` dict."""
    return Normalisation(*(weights[k] for k in _NORMALISATION))


def model_from_ai4animation(
    folder: str | os.PathLike,
    *,
    gating_indices: Sequence[int] = DEFAULT_GATING_INDICES,
    keep_prob: float = 0.7,
    formulation: Formulation = "auto",
) -> tuple[MANN, Normalisation]:
    """Builds a :class:`MANN` (eval mode) holding the weights of an AI4Animation export.

    Args:
        folder: Directory holding the ``.bin`` files.
        gating_indices: Input columns fed to the gating network (not stored in the files).
        keep_prob: Dropout keep probability, used only if the model is trained further.
        formulation: Default expert-layer formulation of the model.

    Returns:
        ``(model, normalisation)``; the model maps normalised inputs to normalised outputs.

    Raises:
        WeightsFormatError: A file is missing or malformed, or the gating input width does not
            match ``gating_indices``.
    """
    w = load_ai4animation_weights(folder)
    n_in, n_out = w["Xmean"].shape[0], w["Ymean"].shape[0]
    g_hidden, g_in = w["wc0_w"].shape
    n_experts = w["wc2_b"].shape[0]
    if g_in != len(gating_indices):
        raise WeightsFormatError(
            Path(folder) / "wc0_w.bin",
            f"gating layer 0 takes {g_in} inputs but {len(gating_indices)} gating indices given",
        )
    h0, h1 = w["cp0_b0"].shape[0], w["cp1_b0"].shape[0]
    model = MANN(
        input_size=n_in,
        output_size=n_out,
        hidden_sizes=(h0, h1),
        n_experts=n_experts,
        gating_indices=gating_indices,
        gating_hidden=g_hidden,
        keep_prob=keep_prob,
        formulation=formulation,
        rngs=nnx.Rngs(0),
    )
    for layer_idx in range(3):
        dense = getattr(model.gating, f"layer{layer_idx}")
        dense.kernel[...] = jnp.asarray(w[f"wc{layer_idx}_w"].T)
        dense.bias[...] = jnp.asarray(w[f"wc{layer_idx}_b"])
        expert = getattr(model, f"layer{layer_idx}")
        expert.alpha[...] = jnp.asarray(
            np.stack([w[f"cp{layer_idx}_a{k}"].T for k in range(n_experts)])
        )
        expert.beta[...] = jnp.asarray(
            np.stack([w[f"cp{layer_idx}_b{k}"] for k in range(n_experts)])
        )
    model.eval()
    return model, normalisation_from_weights(w)


def weights_from_model(model: MANN, normalisation: Normalisation) -> dict[str, np.ndarray]:
    """The file-layout arrays (keyed by file stem) of a model and its normalisation."""
    out: dict[str, np.ndarray] = {
        k: np.asarray(v, np.float32) for k, v in zip(_NORMALISATION, normalisation)
    }
    for layer_idx in range(3):
        dense = getattr(model.gating, f"layer{layer_idx}")
        out[f"wc{layer_idx}_w"] = np.asarray(dense.kernel[...], np.float32).T
        out[f"wc{layer_idx}_b"] = np.asarray(dense.bias[...], np.float32)
        expert = getattr(model, f"layer{layer_idx}")
        alpha = np.asarray(expert.alpha[...], np.float32)
        beta = np.asarray(expert.beta[...], np.float32)
        for k in range(model.n_experts):
            out[f"cp{layer_idx}_a{k}"] = alpha[k].T
            out[f"cp{layer_idx}_b{k}"] = beta[k]
    return out


def save_ai4animation(
    model: MANN, normalisation: Normalisation, folder: str | os.PathLike
) -> list[Path]:
    """Writes a model and its normalisation as AI4Animation ``.bin`` files.

    Args:
        model: The MANN (its current weights are written; mode does not matter).
        normalisation: Input/output statistics to write as ``Xmean`` ... ``Ystd``.
        folder: Output directory (created if missing; existing files are overwritten).

    Returns:
        The paths written.

    Raises:
        WeightsFormatError: ``folder`` cannot be written (an existing file, a read-only or missing
            location, a full disk, ...). Each file is written to a temporary file renamed into place,
            so none is left half written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise WeightsFormatError(
            folder, "cannot write: it is a file, not a folder (this format is a folder of .bin files)"
        )
    written = []
    target = folder  # what the error names: the folder, then each file being written
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stem, array in weights_from_model(model, normalisation).items():
            target = folder / f"{stem}.bin"
            tmp = folder / f"{stem}.bin.tmp"
            try:
                np.ascontiguousarray(array, dtype=_DTYPE).tofile(tmp)
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
            written.append(target)
    except OSError as e:
        raise WeightsFormatError(target, f"cannot write: {unwritable_reason(target, e)}") from None
    return written
