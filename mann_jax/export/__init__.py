"""Export of trained MANN controllers, and a fast runtime for them.

Submodules:

* :mod:`mann_jax.export.ai4animation`: the AI4Animation ``.bin`` weight format (read and write,
  bit-exact round trip), so original trained weights load into the Flax model and our models
  run in the original Unity runtime.
* :mod:`mann_jax.export.compact`: a single-file compact format (``.npz`` + JSON header) for a
  trained, pruned controller — structured pruning physically shrunk, unstructured stored as CSR —
  loadable with numpy alone.
* :mod:`mann_jax.export.onnx`: ONNX export of the whole controller (normalisation, gating,
  experts, denormalisation) for onnxruntime / game engines.
* :mod:`mann_jax.export.runtime`: per-frame inference (batch 1 and crowds) in numpy and in JAX,
  exploiting the sparsity.

Names are imported lazily (PEP 562), so ``import mann_jax.export.compact`` and the numpy runtime
do not pull in JAX or Flax.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "WeightsFormatError": "mann_jax.export.ai4animation",
    "load_ai4animation_weights": "mann_jax.export.ai4animation",
    "model_from_ai4animation": "mann_jax.export.ai4animation",
    "save_ai4animation": "mann_jax.export.ai4animation",
    "CompactModel": "mann_jax.export.compact",
    "ExpertLayer": "mann_jax.export.compact",
    "ExportFormatError": "mann_jax.export.compact",
    "compact_from_params": "mann_jax.export.compact",
    "load_compact": "mann_jax.export.compact",
    "save_compact": "mann_jax.export.compact",
    "OnnxRuntime": "mann_jax.export.onnx",
    "build_onnx": "mann_jax.export.onnx",
    "export_onnx": "mann_jax.export.onnx",
    "load_onnx": "mann_jax.export.onnx",
    "NumpyRuntime": "mann_jax.export.runtime",
    "JaxRuntime": "mann_jax.export.runtime",
    "make_runtime": "mann_jax.export.runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mann_jax.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(_EXPORTS) | {"__doc__", "__name__", "__path__"})
