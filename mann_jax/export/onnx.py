"""ONNX export of a whole MANN controller, for onnxruntime and game engines.

The graph maps RAW inputs to RAW outputs, everything included::

    x (batch, input_size) float32
      -> x_n = (x - x_mean) / x_std
      -> gating: Gather(x_n, gating_indices) -> MatMul+Add, Elu -> MatMul+Add, Elu -> MatMul+Add
         -> Softmax = omega (batch, K)                                     [output "omega"]
      -> 3 expert layers blended by omega (Elu after the first two)
      -> y = y_n * y_std + y_mean                                          [output "y" (batch, output_size)]

built directly with the ``onnx.helper`` API (opset 17, IR version 8; no torch / jax2onnx), from a
:class:`~mann_jax.export.compact.CompactModel` — so structured pruning arrives physically shrunk.

Design choices:

* **Two formulations** of an expert layer, both exact: ``"mix"`` (the expert outputs mixed: the
  vector ``[w_1 x, ..., w_K x]`` times the stacked ``(K*in, out)`` matrix, one MatMul, plus
  ``omega @ beta``) and ``"blend"`` (the original: ``W = omega @ alpha`` reshaped to
  ``(batch, in, out)``, then a batched MatMul). ``"mix"`` is the default: in onnxruntime 1.32 on
  the 2-core CPU (one thread, dense 8x512 model) it took 913 us per frame at batch 1 against
  1113 us blending, and ran 12.7 k frames/s at batch 256 against 1.05 k (blend materialises a
  weight matrix per sample); ``python -m experiments.bench_inference`` prints both. On the
  90 %-structured (shrunk) model both take ~60 us per frame at batch 1.
* **Sparse initializers** (``GraphProto.sparse_initializer``, COO with int64 flat indices: 12 bytes
  per non-zero) hold expert matrices below density 1/3, so a 90 %-pruned model is a small file.
  onnxruntime densifies them when the session is created: its CPU kernels have no fast sparse
  MatMul, so unstructured sparsity shrinks the file, not the per-frame time, in ONNX. (The sparse
  speed-up lives in :mod:`mann_jax.export.runtime`.)
* The file carries ``metadata_props`` (format name and version, sizes, gating indices); a missing,
  truncated or corrupt file raises :class:`~mann_jax.export.compact.ExportFormatError` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mann_jax.export.compact import CompactModel, ExportFormatError, write_atomically

Formulation = Literal["mix", "blend"]

FORMAT_NAME = "mann_jax.onnx_controller"
FORMAT_VERSION = 1
OPSET = 17
IR_VERSION = 8
#: Expert matrices below this density become sparse initializers (COO: 12 bytes per non-zero).
SPARSE_BELOW_DENSITY = 1.0 / 3.0


class _Graph:
    """Collects nodes and (sparse) initializers with unique names."""

    def __init__(self, sparse_initializers: bool) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.sparse: list[Any] = []
        self.use_sparse = sparse_initializers
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, stem: str, array: np.ndarray, *, allow_sparse: bool = False) -> str:
        from onnx import helper, numpy_helper

        name = self.name(stem)
        array = np.ascontiguousarray(array)
        if allow_sparse and self.use_sparse and array.dtype == np.float32:
            flat = array.ravel()
            nz = np.flatnonzero(flat)
            if len(nz) < SPARSE_BELOW_DENSITY * flat.size:
                values = numpy_helper.from_array(flat[nz], name)
                indices = numpy_helper.from_array(nz.astype(np.int64), name + "_indices")
                self.sparse.append(helper.make_sparse_tensor(values, indices, list(array.shape)))
                return name
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: list[str], stem: str | None = None, output: str | None = None,
           **attrs: Any) -> str:
        from onnx import helper

        out = output or self.name(stem or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name("n_" + op_type), **attrs))
        return out


def build_onnx(model: CompactModel, *, formulation: Formulation = "mix",
               sparse_initializers: bool = True) -> Any:
    """The ONNX ``ModelProto`` of the controller (see the module docstring).

    Args:
        model: The compact model (structured pruning already shrunk).
        formulation: ``"mix"`` (default, faster in onnxruntime) or ``"blend"`` (the original).
        sparse_initializers: Store expert matrices below density 1/3 as sparse initializers.

    Returns:
        A checked ``onnx.ModelProto``.
    """
    import onnx
    from onnx import TensorProto, helper

    if formulation not in ("mix", "blend"):
        raise ValueError(f"formulation must be 'mix' or 'blend', got {formulation!r}")
    g = _Graph(sparse_initializers)
    n = model.normalisation
    k = model.n_experts
    axes1, axes2 = g.const("axes1", np.array([1], np.int64)), g.const("axes2", np.array([2], np.int64))

    xn = g.op("Div", [g.op("Sub", ["x", g.const("x_mean", np.asarray(n.x_mean, np.float32))]),
                      g.const("x_std", np.asarray(n.x_std, np.float32))], "x_normalised")
    h = g.op("Gather", [xn, g.const("gating_indices", np.asarray(model.gating_indices, np.int64))], "gating_input",
             axis=1)
    for l, (kernel, bias) in enumerate(model.gating):
        h = g.op("Add", [g.op("MatMul", [h, g.const(f"gating{l}_kernel", kernel)]), g.const(f"gating{l}_bias", bias)])
        if l < 2:
            h = g.op("Elu", [h], alpha=1.0)
    omega = g.op("Softmax", [h], output="omega", axis=-1)
    omega_col = g.op("Unsqueeze", [omega, axes2], "omega_col")  # (B, K, 1)

    h = xn
    for l, layer in enumerate(model.layers):
        i, o = layer.in_features, layer.out_features
        alpha = layer.dense_alpha()
        expert_bias = g.op("MatMul", [omega, g.const(f"layer{l}_beta", layer.beta)])
        if formulation == "mix":
            scaled = g.op("Mul", [omega_col, g.op("Unsqueeze", [h, axes1])])  # (B, K, I)
            flat = g.op("Reshape", [scaled, g.const("shape", np.array([0, k * i], np.int64))])
            a = g.const(f"layer{l}_alpha", alpha.reshape(k * i, o), allow_sparse=True)
            y = g.op("MatMul", [flat, a])
        else:
            a = g.const(f"layer{l}_alpha", alpha.reshape(k, i * o), allow_sparse=True)
            w = g.op("Reshape", [g.op("MatMul", [omega, a]), g.const("shape", np.array([0, i, o], np.int64))])
            y = g.op("Squeeze", [g.op("MatMul", [g.op("Unsqueeze", [h, axes1]), w]), axes1])
        h = g.op("Add", [y, expert_bias], f"layer{l}_out")
        if l < 2:
            h = g.op("Elu", [h], alpha=1.0)
    h = g.op("Mul", [h, g.const("y_std", np.asarray(n.y_std, np.float32))])
    g.op("Add", [h, g.const("y_mean", np.asarray(n.y_mean, np.float32))], output="y")

    graph = helper.make_graph(
        g.nodes, "mann_controller",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", model.input_size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", model.output_size]),
         helper.make_tensor_value_info("omega", TensorProto.FLOAT, ["batch", k])],
        initializer=g.initializers, sparse_initializer=g.sparse)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mann_jax",
                              doc_string="MANN controller: raw inputs -> raw outputs and gating coefficients")
    proto.ir_version = IR_VERSION
    meta = {"format": FORMAT_NAME, "version": str(FORMAT_VERSION), "formulation": formulation,
            "input_size": str(model.input_size), "output_size": str(model.output_size),
            "hidden_sizes": ",".join(map(str, model.hidden_sizes)), "n_experts": str(k),
            "gating_indices": ",".join(map(str, model.gating_indices))}
    helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model: CompactModel, path: str | os.PathLike, *, formulation: Formulation = "mix",
                sparse_initializers: bool = True) -> Path:
    """Writes the controller as an ONNX file (atomically). Returns the path.

    Raises:
        ExportFormatError: ``path`` cannot be written (see :func:`~mann_jax.export.compact.write_atomically`).
    """
    data = build_onnx(model, formulation=formulation, sparse_initializers=sparse_initializers).SerializeToString()
    return write_atomically(path, lambda f: f.write(data))


class OnnxRuntime:
    """An onnxruntime session of an exported controller, with the runtime interface.

    Args:
        path: The ``.onnx`` file.
        threads: onnxruntime intra-op threads (None: its default, all cores).

    Raises:
        ExportFormatError: the file is missing, truncated or corrupt, or not a controller export.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        import onnx
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ExportFormatError(path, "file not found")
        try:
            proto = onnx.load(str(path))
            onnx.checker.check_model(proto)
        except Exception as e:  # protobuf DecodeError, ValidationError, ...
            raise ExportFormatError(path, f"not a readable ONNX model: truncated or corrupt "
                                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
        meta = {p.key: p.value for p in proto.metadata_props}
        if meta.get("format") != FORMAT_NAME:
            raise ExportFormatError(path, f"not a MANN controller export (metadata format {meta.get('format')!r})")
        if int(meta.get("version", "0")) > FORMAT_VERSION:
            raise ExportFormatError(path, f"controller format version {meta.get('version')} is newer than "
                                          f"supported {FORMAT_VERSION}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ExportFormatError(path, f"onnxruntime cannot load it ({type(e).__name__}: {e})") from e
        self.metadata = meta
        self.input_size = int(meta["input_size"])
        self.output_size = int(meta["output_size"])

    def batch(self, x: Any, *, return_gating: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Raw ``(N, input_size)`` -> raw ``(N, output_size)`` (and ω ``(N, K)``)."""
        x = np.ascontiguousarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"batch expects inputs of shape (N, {self.input_size}), got {x.shape}")
        y, omega = self.session.run(["y", "omega"], {"x": x})
        return (y, omega) if return_gating else y

    def step(self, x: Any, *, return_gating: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Raw ``(input_size,)`` -> raw ``(output_size,)`` (and ω ``(K,)``)."""
        x = np.asarray(x, np.float32)
        if x.shape != (self.input_size,):
            raise ValueError(f"step expects one input of shape ({self.input_size},), got {x.shape}")
        y, omega = self.session.run(["y", "omega"], {"x": x[None]})
        return (y[0], omega[0]) if return_gating else y[0]

    def __call__(self, x: Any, *, return_gating: bool = False) -> Any:
        """:meth:`step` for a 1-D input, :meth:`batch` for a 2-D one."""
        if np.ndim(x) == 1:
            return self.step(x, return_gating=return_gating)
        return self.batch(x, return_gating=return_gating)


def load_onnx(path: str | os.PathLike, *, threads: int | None = None) -> OnnxRuntime:
    """An :class:`OnnxRuntime` of an exported controller file (clear errors for a bad file)."""
    return OnnxRuntime(path, threads=threads)
