"""A compact, self-contained file format for a trained (pruned) MANN controller.

One ``.npz`` file (a zip of ``.npy`` arrays, written uncompressed) holding everything a game needs
to run the controller, readable with numpy alone (no JAX, Flax, Orbax or config files):

``header`` (uint8 bytes of UTF-8 JSON)::

    {"format": "mann_jax.compact", "version": 1,
     "config": {"input_size", "output_size", "hidden_sizes", "original_hidden_sizes",
                "n_experts", "gating_indices", "gating_hidden"},
     "layers": [{"storage": "dense" | "csr", "in_features", "out_features", "nnz"}, x 3],
     "arrays": {name: {"dtype", "shape", "sha256"}},   # every other entry, checked on load
     "metadata": {...}}                                 # free JSON: source checkpoint, step, ...

arrays (float32 unless stated):

* ``x_mean x_std`` ``(input_size,)``, ``y_mean y_std`` ``(output_size,)`` — the normalisation
  (``x_n = (x - x_mean) / x_std``; ``y = y_n * y_std + y_mean``);
* ``gating_indices`` (int32) — columns of the NORMALISED input fed to the gating network;
* ``gating{l}.kernel`` ``(in, out)``, ``gating{l}.bias`` ``(out,)``, l = 0, 1, 2 — dense;
* ``layer{l}.beta`` ``(K, out)`` and, per layer, either
  ``layer{l}.alpha`` ``(K, in, out)`` (``"dense"``) or the expert matrices stacked into ONE
  ``(out, K*in)`` matrix ``M[o, k*in + i] = alpha[k, i, o]`` in CSR: ``layer{l}.indptr`` (int32,
  ``out + 1``), ``layer{l}.indices`` (uint16 when ``K*in <= 65536``, else int32; ascending within a
  row), ``layer{l}.data`` (``"csr"``). This is exactly the operand of the sparse runtime kernel
  (a row per output, the mixing formulation ``y = sum_k w_k x alpha_k``, see
  :mod:`mann_jax.export.runtime`);
* ``kept_units0 kept_units1`` (int32) — which hidden units of the trained model survive.

Design choices:

* **Structured pruning is applied physically.** :func:`compact_from_params` finds the hidden units
  that cannot affect the output (incoming weights in every expert and bias all zero, so the unit
  outputs ``elu(0) = 0``; or outgoing weights all zero) and deletes them with
  :func:`mann_jax.pruning.shrink`. Neuron-pruned checkpoints (whose pruned units are exactly zero)
  therefore store small dense matrices; the result computes what the masked full-size model does.
* **Unstructured pruning is stored sparsely** when it saves bytes: a CSR non-zero costs 6 bytes
  (float32 value + uint16 column; 8 with int32 columns) against 4 per dense entry, so a layer is
  stored as CSR below density 0.5 (``storage="auto"``).
* **Integrity.** Every array's dtype, shape and SHA-256 are in the header; :func:`load_compact`
  checks them and the structural invariants (CSR index ranges, shapes against the config), and any
  missing, truncated or corrupt file raises :class:`ExportFormatError` naming the file. Writes go
  to a temporary file renamed into place (:func:`write_atomically`), so a killed or failed export
  never leaves a half file; a path that cannot be written is an :class:`ExportFormatError` too.
* **Numpy only.** This module imports numpy (and, for building from a training checkpoint,
  lazily, the pruning code); loading and the numpy runtime need nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from mann_jax.data.normalisation import Normalisation
from mann_jax.errors import UserError

FORMAT_NAME = "mann_jax.compact"
FORMAT_VERSION = 1
Storage = Literal["auto", "dense", "csr"]

#: Below this density a layer is stored as CSR by ``storage="auto"`` (where CSR takes fewer bytes).
CSR_BELOW_DENSITY = 0.5


class ExportFormatError(UserError, ValueError):
    """An exported model file is missing, truncated, corrupt, of an unknown format, or cannot be written; names
    the file."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclasses.dataclass(frozen=True)
class ExpertLayer:
    """One MANN expert layer: ``K`` matrices ``(in, out)`` blended by ω, and ``K`` biases.

    Exactly one of ``alpha`` (dense) and ``csr`` (sparse) is set.

    Attributes:
        beta: Expert biases ``(K, out)``.
        alpha: Dense expert weights ``(K, in, out)``, or None.
        csr: ``(indptr, indices, data)`` of the stacked ``(out, K*in)`` matrix
            ``M[o, k*in + i] = alpha[k, i, o]`` (int32 indices), or None.
        in_features: Input width ``in`` (needed with ``csr``).
    """

    beta: np.ndarray
    alpha: np.ndarray | None = None
    csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    in_features: int = 0

    def __post_init__(self) -> None:
        if (self.alpha is None) == (self.csr is None):
            raise ValueError("ExpertLayer needs exactly one of alpha (dense) and csr (sparse)")
        if self.alpha is not None:
            object.__setattr__(self, "in_features", int(self.alpha.shape[1]))

    @property
    def storage(self) -> Literal["dense", "csr"]:
        """``"dense"`` or ``"csr"``."""
        return "dense" if self.alpha is not None else "csr"

    @property
    def n_experts(self) -> int:
        return int(self.beta.shape[0])

    @property
    def out_features(self) -> int:
        return int(self.beta.shape[1])

    @property
    def size(self) -> int:
        """Number of expert weights ``K * in * out`` (dense count)."""
        return self.n_experts * self.in_features * self.out_features

    @property
    def nnz(self) -> int:
        """Number of non-zero expert weights."""
        if self.alpha is not None:
            return int(np.count_nonzero(self.alpha))
        return int(np.count_nonzero(self.csr_arrays()[2]))

    @property
    def density(self) -> float:
        return self.nnz / max(self.size, 1)

    def dense_alpha(self) -> np.ndarray:
        """The expert weights as a dense ``(K, in, out)`` float32 array."""
        if self.alpha is not None:
            return self.alpha
        k, i, o = self.n_experts, self.in_features, self.out_features
        m = np.zeros((o, k * i), np.float32)
        indptr, indices, data = self.csr_arrays()
        m[np.repeat(np.arange(o), np.diff(indptr)), indices] = data
        return np.ascontiguousarray(m.reshape(o, k, i).transpose(1, 2, 0))

    def csr_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR ``(indptr, indices, data)`` of the stacked ``(out, K*in)`` matrix (built if dense)."""
        if self.csr is not None:
            return self.csr
        assert self.alpha is not None  # __post_init__: exactly one of alpha and csr
        return stacked_csr(self.alpha)

    @classmethod
    def from_dense(cls, alpha: Any, beta: Any, *, storage: Storage = "auto") -> ExpertLayer:
        """A layer from dense ``alpha (K, in, out)`` and ``beta (K, out)``, stored as ``storage``."""
        alpha = np.ascontiguousarray(np.asarray(alpha, np.float32))
        beta = np.ascontiguousarray(np.asarray(beta, np.float32))
        if storage == "auto":
            storage = "csr" if np.count_nonzero(alpha) < CSR_BELOW_DENSITY * alpha.size else "dense"
        if storage == "dense":
            return cls(beta=beta, alpha=alpha)
        if storage != "csr":
            raise ValueError(f"storage must be 'auto', 'dense' or 'csr', got {storage!r}")
        return cls(beta=beta, csr=stacked_csr(alpha), in_features=int(alpha.shape[1]))


def stacked_csr(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR ``(indptr, indices, data)`` of ``M[o, k*in + i] = alpha[k, i, o]`` (shape ``(out, K*in)``)."""
    k, i, o = alpha.shape
    m = np.asarray(alpha, np.float32).transpose(2, 0, 1).reshape(o, k * i)
    rows, cols = np.nonzero(m)  # row-major order: rows ascending, columns ascending within a row
    indptr = np.zeros(o + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=o), out=indptr[1:])
    return indptr, cols.astype(np.int32), np.ascontiguousarray(m[rows, cols])


@dataclasses.dataclass(frozen=True)
class CompactModel:
    """A trained MANN controller in the compact layout (see the module docstring).

    Attributes:
        normalisation: Input/output statistics (numpy float32).
        gating_indices: Columns of the normalised input fed to the gating network.
        gating: Three ``(kernel (in, out), bias (out,))`` pairs.
        layers: The three expert layers (hidden sizes possibly shrunk).
        kept_units: Indices of the trained model's hidden units kept in each hidden layer.
        original_hidden_sizes: Hidden sizes of the trained model.
        metadata: Free JSON-able information (source checkpoint, step, ...).
    """

    normalisation: Normalisation
    gating_indices: tuple[int, ...]
    gating: tuple[tuple[np.ndarray, np.ndarray], ...]
    layers: tuple[ExpertLayer, ExpertLayer, ExpertLayer]
    kept_units: tuple[np.ndarray, np.ndarray]
    original_hidden_sizes: tuple[int, int]
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return self.layers[0].in_features

    @property
    def output_size(self) -> int:
        return self.layers[2].out_features

    @property
    def hidden_sizes(self) -> tuple[int, int]:
        return self.layers[0].out_features, self.layers[1].out_features

    @property
    def n_experts(self) -> int:
        return self.layers[0].n_experts

    @property
    def gating_hidden(self) -> int:
        return int(self.gating[0][0].shape[1])

    def config(self) -> dict[str, Any]:
        """The architecture, as stored in the header."""
        return {
            "input_size": self.input_size,
            "output_size": self.output_size,
            "hidden_sizes": list(self.hidden_sizes),
            "original_hidden_sizes": list(self.original_hidden_sizes),
            "n_experts": self.n_experts,
            "gating_indices": list(self.gating_indices),
            "gating_hidden": self.gating_hidden,
        }

    def params(self) -> dict[str, Any]:
        """Dense numpy parameters in the :class:`mann_jax.model.MANN` layout (shrunk sizes).

        Load them into ``MANN(hidden_sizes=model.hidden_sizes, ...)`` to run the compact model in
        the training stack.
        """
        out: dict[str, Any] = {
            "gating": {f"layer{l}": {"kernel": k, "bias": b} for l, (k, b) in enumerate(self.gating)}}
        for l, layer in enumerate(self.layers):
            out[f"layer{l}"] = {"alpha": layer.dense_alpha(), "beta": layer.beta}
        return out

    def summary(self) -> dict[str, Any]:
        """Sizes and sparsity, per expert layer and in total (JSON-able)."""
        layers = [{"storage": l.storage, "in": l.in_features, "out": l.out_features, "nnz": l.nnz,
                   "density": round(l.density, 6)} for l in self.layers]
        expert = sum(l.size for l in self.layers)
        nnz = sum(l.nnz for l in self.layers)
        original = _expert_weight_count(self.input_size, self.original_hidden_sizes, self.output_size, self.n_experts)
        return {"hidden_sizes": list(self.hidden_sizes), "original_hidden_sizes": list(self.original_hidden_sizes),
                "expert_weights": expert, "expert_nonzeros": nnz,
                "sparsity_vs_original": 1.0 - nnz / max(original, 1), "layers": layers}


def _expert_weight_count(n_in: int, hidden: Sequence[int], n_out: int, k: int) -> int:
    h0, h1 = hidden
    return k * (n_in * h0 + h0 * h1 + h1 * n_out)


# ----------------------------------------------------------------------------- building


def dead_units(params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Bool masks (True = removable) of hidden units that cannot affect the output.

    Unit ``j`` of hidden layer ``h`` is removable when its incoming weights (every expert) and its
    bias are all zero — it then outputs ``elu(0) = 0`` — or when its outgoing weights (every
    expert) are all zero. Removing such units is exact.
    """
    a = [np.asarray(params[f"layer{l}"]["alpha"]) for l in range(3)]
    b = [np.asarray(params[f"layer{l}"]["beta"]) for l in range(2)]
    dead = []
    for h in range(2):
        silent = ~np.any(a[h] != 0, axis=(0, 1)) & ~np.any(b[h] != 0, axis=0)
        unused = ~np.any(a[h + 1] != 0, axis=(0, 2))
        dead.append(silent | unused)
    return dead[0], dead[1]


def apply_masks(params: Mapping[str, Any], masks: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params * masks`` leaf by leaf (numpy; scalar or missing masks keep the leaf)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        m = None if masks is None else masks.get(key)
        if isinstance(value, Mapping):
            out[key] = apply_masks(value, m if isinstance(m, Mapping) else None)
        else:
            arr = np.asarray(value, np.float32)
            out[key] = arr if m is None or np.ndim(m) == 0 else np.where(np.asarray(m, bool), arr, np.float32(0))
    return out


def compact_from_params(
    params: Mapping[str, Any],
    normalisation: Normalisation | Sequence[Any],
    *,
    gating_indices: Sequence[int],
    masks: Mapping[str, Any] | None = None,
    shrink: bool = True,
    storage: Storage = "auto",
    metadata: Mapping[str, Any] | None = None,
) -> CompactModel:
    """Builds the compact model of trained MANN parameters.

    Args:
        params: MANN parameters (nested dict, numpy or jax arrays): ``gating/layer{l}/{kernel,bias}``
            and ``layer{l}/{alpha,beta}``. Pruned weights are expected to be exactly zero (as in a
            pruning run's checkpoint); otherwise pass ``masks``.
        normalisation: The training data's statistics.
        gating_indices: Input columns of the gating network.
        masks: Optional pruning masks (e.g. ``find_pruning_state(opt_state).masks``), applied first.
        shrink: Physically remove hidden units that cannot affect the output (:func:`dead_units`).
        storage: Per expert layer: ``"auto"`` (CSR below density 0.5), ``"dense"`` or ``"csr"``.
        metadata: Free JSON-able information stored in the header.

    Returns:
        The :class:`CompactModel`.
    """
    p = apply_masks(params, masks)
    k0, k1 = p["layer0"]["alpha"].shape[2], p["layer1"]["alpha"].shape[2]
    original = (int(k0), int(k1))
    kept = (np.arange(k0, dtype=np.int32), np.arange(k1, dtype=np.int32))
    if shrink:
        d0, d1 = dead_units(p)
        for d in (d0, d1):  # keep at least one unit per layer so the model stays well-formed
            if d.all():
                d[0] = False
        if d0.any() or d1.any():
            from mann_jax.pruning.structured import shrink as shrink_units  # the training stack, lazily

            kb0, kb1 = p["layer0"]["beta"].shape, p["layer1"]["beta"].shape
            unit_masks = {"layer0": {"beta": np.broadcast_to(~d0, kb0)}, "layer1": {"beta": np.broadcast_to(~d1, kb1)}}
            p = apply_masks(shrink_units(p, unit_masks), None)
            kept = (np.flatnonzero(~d0).astype(np.int32), np.flatnonzero(~d1).astype(np.int32))
    norm = Normalisation(*(np.asarray(a, np.float32) for a in normalisation))
    gating = tuple(
        (np.ascontiguousarray(p["gating"][f"layer{l}"]["kernel"], np.float32),
         np.ascontiguousarray(p["gating"][f"layer{l}"]["bias"], np.float32))
        for l in range(3)
    )
    expert0, expert1, expert2 = (ExpertLayer.from_dense(p[f"layer{l}"]["alpha"], p[f"layer{l}"]["beta"],
                                                        storage=storage) for l in range(3))
    model = CompactModel(
        normalisation=norm, gating_indices=tuple(int(i) for i in gating_indices), gating=gating,
        layers=(expert0, expert1, expert2), kept_units=kept, original_hidden_sizes=original,
        metadata=dict(metadata or {}))
    _check_model(model, "<params>")
    return model


# ----------------------------------------------------------------------------- file I/O


def _arrays_of(model: CompactModel) -> dict[str, np.ndarray]:
    n = model.normalisation
    arrays: dict[str, np.ndarray] = {
        "x_mean": n.x_mean, "x_std": n.x_std, "y_mean": n.y_mean, "y_std": n.y_std,
        "gating_indices": np.asarray(model.gating_indices, np.int32),
        "kept_units0": np.asarray(model.kept_units[0], np.int32),
        "kept_units1": np.asarray(model.kept_units[1], np.int32),
    }
    for l, (kernel, bias) in enumerate(model.gating):
        arrays[f"gating{l}.kernel"], arrays[f"gating{l}.bias"] = kernel, bias
    for l, layer in enumerate(model.layers):
        arrays[f"layer{l}.beta"] = layer.beta
        if layer.alpha is not None:  # storage "dense"
            arrays[f"layer{l}.alpha"] = layer.alpha
        else:
            indptr, indices, data = layer.csr_arrays()
            small = layer.n_experts * layer.in_features <= 65536
            arrays[f"layer{l}.indptr"] = indptr.astype(np.int32)
            arrays[f"layer{l}.indices"] = indices.astype(np.uint16 if small else np.int32)
            arrays[f"layer{l}.data"] = data
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def save_compact(model: CompactModel, path: str | os.PathLike) -> Path:
    """Writes ``model`` to ``path`` (a ``.npz``; atomically: temporary file, then rename).

    Returns:
        The path written.

    Raises:
        ExportFormatError: ``path`` cannot be written (see :func:`write_atomically`).
    """
    arrays = _arrays_of(model)
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": model.config(),
        "layers": [{"storage": l.storage, "in_features": l.in_features, "out_features": l.out_features,
                    "nnz": l.nnz} for l in model.layers],
        "arrays": {k: {"dtype": v.dtype.str, "shape": list(v.shape), "sha256": hashlib.sha256(v.tobytes()).hexdigest()}
                   for k, v in arrays.items()},
        "metadata": model.metadata,
    }
    blob = np.frombuffer(json.dumps(header, sort_keys=True, default=str).encode("utf-8"), np.uint8)
    # Plain arrays only (load_compact reads with allow_pickle=False too).
    return write_atomically(path, lambda f: np.savez(f, header=blob, allow_pickle=False, **arrays))


def _umask() -> int:
    """The process's file-creation mask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unwritable_reason(path: Path, error: OSError) -> str:
    """Why writing ``path`` failed with ``error``, in words: a file where a parent folder should be, else
    the OS error's own text without its file name (which may be a temporary file's)."""
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        return f"{parent} is not a folder"
    return error.strerror or str(error)


def _write_problem(path: Path, error: OSError) -> str:
    """Why ``path`` cannot be written, in words (:func:`unwritable_reason`, and a folder in its place)."""
    if path.is_dir():
        return "it is a folder (give a file name)"
    return unwritable_reason(path, error)


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Writes ``path`` through ``write(file)`` on a temporary file beside it, then renames it into place.

    The file gets the permissions of any newly created file (``0o666`` less the umask, not the
    ``0o600`` of :func:`tempfile.mkstemp`). On failure the temporary file is removed and ``path`` is
    left as it was.

    Returns:
        The path written.

    Raises:
        ExportFormatError: ``path`` cannot be written (a folder, a missing or read-only location, a full
            disk, ...); the message names it.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        if path.is_dir():  # before writing a whole temporary file that cannot be renamed onto it
            raise ExportFormatError(path, "cannot write: it is a folder (give a file name)")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise ExportFormatError(path, f"cannot write: {_write_problem(path, e)}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def load_compact(path: str | os.PathLike) -> CompactModel:
    """Reads a compact model written by :func:`save_compact` (numpy only).

    Raises:
        ExportFormatError: the file is missing, not a compact model, of a newer format version,
            truncated or corrupt (checksums), or inconsistent; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportFormatError(path, "file not found")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if not magic:
            raise ExportFormatError(path, "empty file (truncated?)")
        if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # numpy would try it as a .npy array or a pickle
            raise ExportFormatError(path, f"not a .npz archive (a {FORMAT_NAME} file is a zip of .npy arrays)")
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            if "header" not in names:
                raise ExportFormatError(path, f"not a {FORMAT_NAME} file (no header entry)")
            header = json.loads(bytes(z["header"]).decode("utf-8"))
            if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
                raise ExportFormatError(path, f"not a {FORMAT_NAME} file (format {header.get('format')!r})")
            version = header.get("version")
            if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
                raise ExportFormatError(path, f"format version {version!r} is not supported "
                                              f"(this reader handles 1..{FORMAT_VERSION})")
            arrays: dict[str, np.ndarray] = {}
            for name, spec in header["arrays"].items():
                if name not in names:
                    raise ExportFormatError(path, f"array {name!r} listed in the header is missing (truncated file?)")
                a = z[name]
                if a.dtype.str != spec["dtype"] or list(a.shape) != list(spec["shape"]):
                    raise ExportFormatError(path, f"array {name!r} is {a.dtype.str} {list(a.shape)}, header says "
                                                  f"{spec['dtype']} {spec['shape']}")
                if hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() != spec["sha256"]:
                    raise ExportFormatError(path, f"array {name!r} is corrupt (checksum mismatch)")
                arrays[name] = a
    except ExportFormatError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, KeyError, TypeError,
            UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportFormatError(path, f"unreadable: truncated or corrupt file ({type(e).__name__}: {e})") from e
    except Exception as e:  # zlib.error and other decoder errors of a damaged zip
        raise ExportFormatError(path, f"unreadable: truncated or corrupt file ({type(e).__name__}: {e})") from e
    try:
        model = _model_from_arrays(header, arrays)
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise ExportFormatError(path, f"inconsistent contents ({type(e).__name__}: {e})") from e
    _check_model(model, path)
    return model


def _model_from_arrays(header: dict[str, Any], a: dict[str, np.ndarray]) -> CompactModel:
    cfg = header["config"]
    layers = []
    for l, spec in enumerate(header["layers"]):
        beta = a[f"layer{l}.beta"]
        if spec["storage"] == "dense":
            layers.append(ExpertLayer(beta=beta, alpha=a[f"layer{l}.alpha"]))
        elif spec["storage"] == "csr":
            csr = (a[f"layer{l}.indptr"].astype(np.int32), a[f"layer{l}.indices"].astype(np.int32), a[f"layer{l}.data"])
            layers.append(ExpertLayer(beta=beta, csr=csr, in_features=int(spec["in_features"])))
        else:
            raise ValueError(f"layer {l}: unknown storage {spec['storage']!r}")
    return CompactModel(
        normalisation=Normalisation(a["x_mean"], a["x_std"], a["y_mean"], a["y_std"]),
        gating_indices=tuple(int(i) for i in a["gating_indices"]),
        gating=tuple((a[f"gating{l}.kernel"], a[f"gating{l}.bias"]) for l in range(3)),
        layers=(layers[0], layers[1], layers[2]),
        kept_units=(a["kept_units0"], a["kept_units1"]),
        original_hidden_sizes=(int(cfg["original_hidden_sizes"][0]), int(cfg["original_hidden_sizes"][1])),
        metadata=dict(header.get("metadata") or {}),
    )


def _check_model(model: CompactModel, where: str | os.PathLike) -> None:
    """Raises :class:`ExportFormatError` unless every shape and index of ``model`` is consistent."""

    def fail(problem: str) -> None:
        raise ExportFormatError(where, f"inconsistent model: {problem}")

    n_in, n_out, k = model.input_size, model.output_size, model.n_experts
    widths = (n_in, *model.hidden_sizes, n_out)
    for l, layer in enumerate(model.layers):
        if layer.n_experts != k or layer.in_features != widths[l] or layer.out_features != widths[l + 1]:
            fail(f"expert layer {l} maps {layer.in_features} -> {layer.out_features} with {layer.n_experts} experts; "
                 f"expected {widths[l]} -> {widths[l + 1]} with {k}")
        if layer.alpha is not None and layer.alpha.shape != (k, widths[l], widths[l + 1]):
            fail(f"layer {l} alpha has shape {layer.alpha.shape}")
        if layer.csr is not None:
            indptr, indices, data = layer.csr
            if (indptr.shape != (layer.out_features + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0)
                    or indptr[-1] != len(indices) or len(indices) != len(data)):
                fail(f"layer {l}: malformed CSR row pointers")
            if len(indices) and (indices.min() < 0 or indices.max() >= k * layer.in_features):
                fail(f"layer {l}: CSR column index out of range")
    for name, v, size in (("x_mean", model.normalisation.x_mean, n_in), ("x_std", model.normalisation.x_std, n_in),
                          ("y_mean", model.normalisation.y_mean, n_out), ("y_std", model.normalisation.y_std, n_out)):
        if np.shape(v) != (size,):
            fail(f"{name} has shape {np.shape(v)}, expected ({size},)")
    g = model.gating_indices
    if not g or min(g) < 0 or max(g) >= n_in:
        fail(f"gating indices must lie in [0, {n_in})")
    gh = model.gating_hidden
    expected = ((len(g), gh), (gh, gh), (gh, k))
    for l, ((kernel, bias), shape) in enumerate(zip(model.gating, expected)):
        if kernel.shape != shape or bias.shape != (shape[1],):
            fail(f"gating layer {l} kernel {kernel.shape} / bias {bias.shape}, expected {shape} / ({shape[1]},)")
    for h in range(2):
        if len(model.kept_units[h]) != model.hidden_sizes[h]:
            fail(f"kept_units{h} lists {len(model.kept_units[h])} units for hidden size {model.hidden_sizes[h]}")
