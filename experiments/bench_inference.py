"""Per-frame inference speed of a dense, a 90 % unstructured and a 90 % structured MANN controller.

  python -m experiments.bench_inference
  python -m experiments.bench_inference --threads=2 --repeats=1000 --no_onnx

Measures, in ONE run, on the default 480-512-512-363 x 8-expert model (untrained weights drawn
as the original initialiser; speed does not depend on training):

* ``dense``: every weight;
* ``unstructured``: global magnitude masks over all expert weights
  (:func:`mann_jax.pruning.accounting.global_magnitude_masks`), ``--sparsity`` of them zero;
* ``structured``: ``--sparsity`` of the hidden units of each hidden layer removed (the units with
  the smallest L1 norm of in+out weights over all experts, :mod:`mann_jax.pruning.structured`),
  physically shrunk by the export;

each through :class:`~mann_jax.export.runtime.NumpyRuntime` (its batch-1 frame compiled with numba,
:mod:`mann_jax.export.compiled_kernels`, or numpy calls and scipy's CSR without numba: the header
says which; ``--numpy_fallback`` also times ``compiled=False`` as backend ``numpy-scipy``),
:class:`~mann_jax.export.runtime.JaxRuntime` and (unless ``--no_onnx``) onnxruntime (``mix`` and
``blend`` graphs), plus the original per-frame blend formulation in numpy as a reference.
Reported: batch-1 latency (microseconds per frame, raw input to raw output) in the steady state
(the lowest median single frame of interleaved rounds of 50 consecutive frames per configuration,
:mod:`experiments.timing`; the median over all frames is in the JSON) and cold (the median frame
right after reading twice the last-level cache of other memory, so the weights come from DRAM: a
controller run once per game frame after the rest of the frame's work), batch-``--batch``
throughput (frames/s), speed-ups over the dense model of the same backend, and the memory-traffic
floor: bytes of the non-zero weights read per frame over a memory bandwidth measured in the same
run (a large numpy copy, counting read + write bytes; also ``cfloor``, over a copy the size of the
dense weights, which stays in the last-level cache). The targets are checked on the steady-state
latency; the cold columns are reported beside them. The last line is JSON.

``--threads`` (default 1: one core per controller, the game setting, and immune to the long
stalls a multi-threaded BLAS shows at batch 1 when another process holds a core) sets the threads
of OpenBLAS and onnxruntime and the cores the whole process runs on (the first ``--threads`` it may
use; XLA's own thread pool has no setting that works), so numpy, JAX and onnxruntime get the same
cores; it is applied before numpy starts (0: library defaults, every core).
"""

from __future__ import annotations

import os
import sys


def _threads_from_argv(argv: list[str]) -> int:
    """``--threads`` read before absl (numpy's BLAS reads its thread count once, at import); 0 (touch
    nothing) for a value that is not an integer, which absl then refuses with its own message."""
    for i, arg in enumerate(argv):
        if arg.startswith("--threads=") or (arg == "--threads" and i + 1 < len(argv)):
            value = arg.split("=", 1)[1] if "=" in arg else argv[i + 1]
            try:
                return int(value)
            except ValueError:
                return 0
    return 1


_THREADS = _threads_from_argv(sys.argv)
if _THREADS > 0:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(_THREADS)
    # XLA:CPU has no working flag for its thread count (--xla_cpu_multi_thread_eigen=false still used
    # every core), so the cores themselves are limited: the process, and every thread it starts from
    # here on, runs on the first --threads usable cores.
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:_THREADS])

import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from experiments.timing import timed_rounds  # noqa: E402
from mann_jax.data.normalisation import Normalisation  # noqa: E402
from mann_jax.export.compact import CompactModel, compact_from_params  # noqa: E402
from mann_jax.export.runtime import JaxRuntime, NumpyRuntime, fold  # noqa: E402
from mann_jax.model import DEFAULT_GATING_INDICES  # noqa: E402
from mann_jax.pruning.accounting import default_params, global_magnitude_masks  # noqa: E402

_THREADS_FLAG = flags.DEFINE_integer("threads", 1, "Threads for OpenBLAS and onnxruntime, and the cores the process "
                                     "runs on (0: library defaults, every core).",
                                     lower_bound=0)
_SPARSITY = flags.DEFINE_float("sparsity", 0.9, "Fraction of expert weights (unstructured) / hidden units "
                               "(structured) removed, in [0, 1).")
flags.register_validator("sparsity", lambda v: 0.0 <= v < 1.0, message="--sparsity must be in [0, 1)")
_REPEATS = flags.DEFINE_integer("repeats", 600, "Batch-1 frames timed per configuration.", lower_bound=1)
_COLD = flags.DEFINE_integer("cold_frames", 15, "Batch-1 frames timed per configuration right after evicting "
                             "the caches (0: skip the cold measurement).", lower_bound=0)
_BATCH = flags.DEFINE_integer("batch", 256, "Crowd size of the throughput measurement.", lower_bound=1)
_BATCH_REPEATS = flags.DEFINE_integer("batch_repeats", 12, "Batch calls timed per configuration.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 23456, "Weight seed.")
_NO_ONNX = flags.DEFINE_bool("no_onnx", False, "Skip onnxruntime.")
_NO_JAX = flags.DEFINE_bool("no_jax", False, "Skip JAX.")
_NUMPY_FALLBACK = flags.DEFINE_bool("numpy_fallback", False,
                                    "Also time NumpyRuntime(compiled=False) (numpy calls, scipy CSR) as 'numpy-scipy'.")

VARIANTS = ("dense", "unstructured", "structured")


# ----------------------------------------------------------------------------- models


def build_variants(*, seed: int, sparsity: float) -> dict[str, CompactModel]:
    """The dense, unstructured and structured compact models of one weight draw."""
    import jax.numpy as jnp

    from mann_jax.pruning import structured

    params = default_params(seed)
    rng = np.random.default_rng(seed)
    norm = Normalisation(rng.normal(0, 1, 480).astype(np.float32), rng.uniform(0.5, 2, 480).astype(np.float32),
                         rng.normal(0, 1, 363).astype(np.float32), rng.uniform(0.5, 2, 363).astype(np.float32))
    gi = DEFAULT_GATING_INDICES
    out = {"dense": compact_from_params(params, norm, gating_indices=gi, storage="dense", shrink=False)}
    out["unstructured"] = compact_from_params(params, norm, gating_indices=gi,
                                              masks=global_magnitude_masks(params, [sparsity])[0])
    alphas = tuple(jnp.abs(jnp.asarray(params[f"layer{l}"]["alpha"])) for l in range(3))
    alive = (jnp.ones(alphas[0].shape[-1], bool), jnp.ones(alphas[1].shape[-1], bool))
    u0, u1 = structured.prune_units(structured.unit_scores(alphas, alive), alive, jnp.float32(sparsity), scope="local")
    leaf = structured.leaf_masks_from_units(params, u0, u1)
    masks: dict[str, Any] = {}
    for (layer, name), m in leaf.items():
        masks.setdefault(layer, {})[name] = np.asarray(m)
    out["structured"] = compact_from_params(params, norm, gating_indices=gi, masks=masks)
    return out


def weight_bytes(model: CompactModel) -> dict[str, int]:
    """Bytes read per frame: non-zero values only (the floor's numerator) and as the runtime stores them."""
    gating = sum(k.size + b.size for k, b in model.gating) * 4
    folded = fold(model)[1]
    values = gating + sum(l.nnz for l in folded) * 4
    return {"nonzero_values": values, "gating": gating, "expert_nonzeros": sum(l.nnz for l in folded)}


def representation_bytes(rt: NumpyRuntime, model: CompactModel) -> int:
    """Bytes of the weights the numpy batch-1 kernels actually read (compiled CSR: values + uint16
    indices + row pointers; scipy CSR: values + int32 indices + row pointers)."""
    total = sum(k.size + b.size for k, b in model.gating) * 4
    frame = rt.compiled_frame
    for l, (layer, kind) in enumerate(zip(rt.layers, rt.kernels)):
        if kind == "dense":
            total += layer.matrix.nbytes
        elif frame is not None:
            total += frame.layers[l].nbytes
        else:
            total += layer.nnz * 8 + (layer.matrix.shape[1] + 1) * 4
    return total


# ----------------------------------------------------------------------------- timing


def copy_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes per second of ``np.copyto`` (read + write counted), best of ``repeats``."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best


def last_level_cache_bytes(cache_dir: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int:
    """Size of the CPU's largest cache (Linux sysfs ``index*/size`` files such as ``266240K``), 256 MiB
    where none can be read."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    sizes = []
    for f in cache_dir.glob("index*/size"):
        try:
            text = f.read_text().strip()
            sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
        except (OSError, ValueError, IndexError):  # unreadable, empty or not a size: not counted
            continue
    return max(sizes, default=256 << 20)


def cold_calls(fns: dict[str, Callable[[int], None]], *, rounds: int, evict_bytes: int) -> dict[str, float]:
    """Median seconds of one call of each function right after a read of ``evict_bytes`` of other
    memory (twice the last-level cache): the weights come from DRAM, as for a controller that runs
    once per game frame after the rest of the frame's work."""
    other = np.ones(evict_bytes // 4, np.float32)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        for name, f in fns.items():
            other.max()  # a vectorised read of every line
            t = time.perf_counter()
            f(r)
            samples[name].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in samples.items()}


def blend_step(model: CompactModel) -> Callable[[np.ndarray], np.ndarray]:
    """The original per-frame formulation in numpy (blend every expert matrix, then one matvec)."""
    ref = NumpyRuntime(model, kernel="dense")
    alphas = [l.dense_alpha() for l in model.layers]
    betas = [l.beta for l in model.layers]
    n = model.normalisation

    def step(x: np.ndarray) -> np.ndarray:
        xn = (x - n.x_mean) / n.x_std
        h1 = np.append(xn, np.float32(1))
        omega = ref._gating_one(h1)
        h = xn
        for l in range(3):
            w = np.tensordot(omega, alphas[l], axes=1)
            h = h @ w + omega @ betas[l]
            if l < 2:
                h = np.maximum(h, 0) + np.expm1(np.minimum(h, 0))
        return h * n.y_std + n.y_mean

    return step


# ----------------------------------------------------------------------------- main


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    threads = int(_THREADS_FLAG.value)
    sparsity = float(_SPARSITY.value)
    t0 = time.perf_counter()
    models = build_variants(seed=int(_SEED.value), sparsity=sparsity)
    rng = np.random.default_rng(0)
    n = models["dense"].normalisation
    rows = (rng.normal(0, 1, (64, 480)).astype(np.float32) * n.x_std + n.x_mean).astype(np.float32)
    crowd = (rng.normal(0, 1, (int(_BATCH.value), 480)).astype(np.float32) * n.x_std + n.x_mean).astype(np.float32)

    runtimes: dict[tuple[str, str], Any] = {}
    for v, m in models.items():
        runtimes[("numpy", v)] = NumpyRuntime(m)
        if _NUMPY_FALLBACK.value:
            runtimes[("numpy-scipy", v)] = NumpyRuntime(m, compiled=False)
        if not _NO_JAX.value:
            runtimes[("jax", v)] = JaxRuntime(m)
    tmp = tempfile.TemporaryDirectory()
    if not _NO_ONNX.value:
        from mann_jax.export.onnx import export_onnx, load_onnx

        for form in ("mix", "blend"):
            for v, m in models.items():
                path = export_onnx(m, Path(tmp.name) / f"{v}_{form}.onnx", formulation=form)
                runtimes[(f"onnx-{form}", v)] = load_onnx(path, threads=threads or None)

    # Every runtime must reproduce the numpy dense-kernel reference before it is timed.
    for (backend, v), rt in runtimes.items():
        ref = NumpyRuntime(models[v], kernel="dense", batch_kernel="dense").batch(rows[:8])
        got = np.stack([np.asarray(rt.step(r)) for r in rows[:8]])
        err = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
        if err > 1e-5:
            raise AssertionError(f"{backend}/{v}: batch-1 output differs from the reference by {err:.2e} (relative)")

    def step_fn(rt: Any, backend: str) -> Callable[[int], None]:
        if backend == "jax":
            return lambda i: np.asarray(rt.step(rows[i % 64]))
        return lambda i: rt.step(rows[i % 64])

    def batch_fn(rt: Any, backend: str) -> Callable[[int], None]:
        if backend == "jax":
            return lambda i: np.asarray(rt.batch(crowd))
        return lambda i: rt.batch(crowd)

    b1_fns = {f"{b}/{v}": step_fn(rt, b) for (b, v), rt in runtimes.items()}
    blend = blend_step(models["dense"])
    b1_fns["numpy-blend/dense"] = lambda i: blend(rows[i % 64])
    dram = copy_bandwidth(1 << 30, 3)
    cache = copy_bandwidth(models["dense"].layers[0].size * 4 * 3, 20)
    # Steady state: every frame timed alone in rounds of 50 per configuration. The medians keep the
    # first frames of a round out, which run with the caches full of the previous configuration's
    # weights (means over 20-frame blocks measured up to ~100 us more for the unstructured model);
    # cold_calls measures such frames on purpose.
    b1_timed = timed_rounds(b1_fns, 50, rounds=max(int(_REPEATS.value) // 50, 1), warmup=2)
    b1 = {k: t.best for k, t in b1_timed.items()}
    evict = 2 * last_level_cache_bytes()
    cold = cold_calls(b1_fns, rounds=int(_COLD.value), evict_bytes=evict) if _COLD.value > 0 else {}
    bn_timed = timed_rounds({f"{b}/{v}": batch_fn(rt, b) for (b, v), rt in runtimes.items()}, 2,
                            rounds=max(int(_BATCH_REPEATS.value) // 2, 1), warmup=2)
    bn = {k: t.best for k, t in bn_timed.items()}
    dram_after = copy_bandwidth(1 << 30, 3)
    dram = max(dram, dram_after)

    batch = int(_BATCH.value)
    results: dict[str, Any] = {}
    backends = sorted({b for b, _ in runtimes}, key=["numpy", "numpy-scipy", "jax", "onnx-mix", "onnx-blend"].index)
    print(f"MANN 480-512-512-363 x 8 experts, sparsity {sparsity:.0%}, threads {threads or 'default'}; "
          f"copy bandwidth {dram / 1e9:.1f} GB/s (1 GiB), {cache / 1e9:.1f} GB/s (cache-resident "
          f"{3 * models['dense'].layers[0].size * 4 / 2**20:.0f} MiB)")
    sparse_impl = runtimes[("numpy", "unstructured")].sparse_impl
    print(f"numpy batch-1 sparse layers: {sparse_impl}"
          + (" (the whole frame compiled; CSR with uint16 indices)" if sparse_impl == "numba" else " (no numba)"))
    if cold:
        print(f"cold: frames after reading {evict / 2**20:.0f} MiB of other memory (twice the last-level cache), "
              f"median of {int(_COLD.value)}")
    header = (f"{'backend':<11} {'model':<13} {'kernels':<22} {'batch1 us':>10} {'x dense':>8} {'floor us':>9} "
              f"{'x floor':>8} {'cfloor us':>9} {'cold us':>9} {'x dense':>8} {'x floor':>8} "
              f"{f'batch{batch} fr/s':>15} {'x dense':>8}")
    print(header)
    print("-" * len(header))
    for backend in backends:
        for v in VARIANTS:
            key = f"{backend}/{v}"
            rt = runtimes[(backend, v)]
            wb = weight_bytes(models[v])
            floor, cfloor = wb["nonzero_values"] / dram, wb["nonzero_values"] / cache
            t1, tn = b1[key], bn[key]
            kernels = ",".join(rt.kernels) if hasattr(rt, "kernels") else "ort"
            row = {
                "batch1_us": t1 * 1e6, "speedup_batch1": b1[f"{backend}/dense"] / t1,
                "batch1_median_us": b1_timed[key].median * 1e6,
                "floor_us": floor * 1e6, "x_floor": t1 / floor, "cache_floor_us": cfloor * 1e6,
                f"batch{batch}_frames_per_s": batch / tn, f"speedup_batch{batch}": bn[f"{backend}/dense"] / tn,
                "kernels": kernels, "nonzero_weight_bytes": wb["nonzero_values"],
                "hidden_sizes": list(models[v].hidden_sizes), "expert_nonzeros": wb["expert_nonzeros"],
            }
            if cold:
                row.update(cold_batch1_us=cold[key] * 1e6, cold_speedup_batch1=cold[f"{backend}/dense"] / cold[key],
                           cold_x_floor=cold[key] / floor)
            if backend.startswith("numpy"):
                row["sparse_impl"] = rt.sparse_impl
                row["representation_bytes"] = representation_bytes(rt, models[v])
                row["representation_floor_us"] = row["representation_bytes"] / dram * 1e6
                if isinstance(rt, NumpyRuntime):
                    row["batch_kernels"] = ",".join(rt.batch_kernels)
            results[key] = row
            cold_cols = (f"{row['cold_batch1_us']:>9.1f} {row['cold_speedup_batch1']:>8.2f} {row['cold_x_floor']:>8.2f}"
                         if cold else f"{'-':>9} {'-':>8} {'-':>8}")
            print(f"{backend:<11} {v:<13} {kernels:<22} {t1 * 1e6:>10.1f} {row['speedup_batch1']:>8.2f} "
                  f"{floor * 1e6:>9.1f} {row['x_floor']:>8.2f} {cfloor * 1e6:>9.1f} {cold_cols} {batch / tn:>15.0f} "
                  f"{row[f'speedup_batch{batch}']:>8.2f}")
    results["numpy-blend/dense"] = {"batch1_us": b1["numpy-blend/dense"] * 1e6,
                                    "slowdown_vs_mix": b1["numpy-blend/dense"] / b1["numpy/dense"]}
    print(f"numpy original blend formulation, dense, batch 1: {b1['numpy-blend/dense'] * 1e6:.1f} us "
          f"({results['numpy-blend/dense']['slowdown_vs_mix']:.2f}x the mixed dense path)")

    targets = {}
    for backend in backends:
        if backend.startswith("onnx"):
            continue
        u, s = results[f"{backend}/unstructured"], results[f"{backend}/structured"]
        targets[backend] = {
            "unstructured_4x": u["speedup_batch1"] >= 4.0, "unstructured_within_2x_floor": u["x_floor"] <= 2.0,
            "structured_8x": s["speedup_batch1"] >= 8.0, "structured_within_2x_floor": s["x_floor"] <= 2.0,
        }
        print(f"targets ({backend}, batch 1): unstructured {u['speedup_batch1']:.2f}x (>= 4: "
              f"{'met' if targets[backend]['unstructured_4x'] else 'NOT met'}), {u['x_floor']:.2f}x its floor (<= 2: "
              f"{'met' if targets[backend]['unstructured_within_2x_floor'] else 'NOT met'}); structured "
              f"{s['speedup_batch1']:.2f}x (>= 8: {'met' if targets[backend]['structured_8x'] else 'NOT met'}), "
              f"{s['x_floor']:.2f}x its floor (<= 2: "
              f"{'met' if targets[backend]['structured_within_2x_floor'] else 'NOT met'})")
        if cold:
            read = ""
            if "representation_bytes" in u:  # the numpy runtimes: what the kernels read, over the cold frame
                rates = [results[f"{backend}/{v}"]["representation_bytes"] / results[f"{backend}/{v}"]["cold_batch1_us"]
                         / 1e3 for v in VARIANTS]
                read = f"; weights read at {min(rates):.0f}-{max(rates):.0f} GB/s"
            print(f"  cold frames ({backend}; reported, not targets): unstructured {u['cold_speedup_batch1']:.2f}x "
                  f"dense, {u['cold_x_floor']:.2f}x its floor; structured {s['cold_speedup_batch1']:.2f}x dense, "
                  f"{s['cold_x_floor']:.2f}x its floor{read}")
    tmp.cleanup()
    summary = {
        "benchmark": "inference", "threads": threads, "sparsity": sparsity, "batch": batch,
        "copy_bandwidth_gb_s": dram / 1e9, "cache_copy_bandwidth_gb_s": cache / 1e9,
        "cold_evict_bytes": evict if cold else 0,
        "numpy_sparse_impl": sparse_impl, "results": results, "targets": targets,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary, default=float))


if __name__ == "__main__":
    app.run(main)
