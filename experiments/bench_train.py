"""Benchmark one dense MANN training step (8 experts x 512, batch 32) on this machine.

  python -m experiments.bench_train [--steps 50] [--batch_size 32]

Measured in the same run: the jitted JAX step (AdamWR, dropout, both formulations), the machine's
float32 matmul peak and the step-time floor it implies, and, if torch is installed, the same step
written in plain PyTorch eager mode, all timed in interleaved rounds (the lowest round median of each
is reported: the machine is shared, and a busy period then falls on every candidate alike). Prints a
table and, as the last line, JSON with every figure.
Targets: JAX >= 2x the PyTorch eager step; JAX step within 3x of the matmul floor. PyTorch is timed
with three formulations (blend, as a direct port of the original; mix with einsum; mix as one
matmul over the stacked experts, as the JAX model computes it) and compared at its fastest.

Also printed: the memory-traffic floor. At batch 32 the step does little arithmetic per weight
touched (2 x 32 FLOPs per weight and pass), so memory traffic, not the matmul peak, could be what
bounds it; this floor checks that (measured: it does not, see the README). The least traffic any
float32 Adam step can make (:func:`step_bytes`): the weights read in the forward pass and again
in the backward pass, and the optimizer reading and writing parameter, first and second moment
(gradients assumed to stay in cache or fused into the update) = 32 bytes per parameter. The floor
is that over the best streaming bandwidth measured in the same run: a jitted in-place scale of an
array the size of the step's optimizer state (so the same level of the memory hierarchy; on this
machine's 260 MB L3 that is cache, not DRAM).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from configs import default
from experiments.timing import timed_rounds
from mann_jax.backend import configure_cpu_backend, jit_train_step
from mann_jax.data import layout
from mann_jax.train import (
    ModelFunctions,
    build_model,
    init_state,
    make_optimizer,
    make_train_step,
)

_STEPS = flags.DEFINE_integer("steps", 50, "Timed steps per measurement (a fifth of that for the slow blend "
                              "formulations and the matmul peak), spread over --rounds interleaved rounds.",
                              lower_bound=1)
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds (the lowest round median is reported).",
                               lower_bound=1)
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.", lower_bound=1)
_ROWS = 4096  # rows of random normalised data to draw batches from


def _time(fn, steps: int) -> float:
    """Median seconds per call of ``fn`` over ``steps`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_fn(n: int = 2048) -> Callable[[int], None]:
    """One jitted ``n x n`` float32 matmul (``2 n^3`` FLOPs): this machine's practical matmul peak."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    return lambda i: f(a).block_until_ready()


def memory_bandwidth_gbs(nbytes: int, steps: int = 10) -> float:
    """Best read + write bandwidth (GB/s) of a jitted in-place scale of an ``nbytes`` float32 array.

    The buffer is donated, so each call streams the same memory (no fresh allocation to fault in).
    """
    f = jax.jit(lambda v: v * 1.0001, donate_argnums=0)
    holder = {"a": f(jnp.ones(nbytes // 4, jnp.float32))}

    def one() -> None:
        holder["a"] = f(holder["a"])
        holder["a"].block_until_ready()

    return 2 * nbytes / _time(one, steps) / 1e9


def parameter_count(config) -> int:
    """Parameters of the MANN of ``config.model`` (every leaf: experts, biases, gating)."""
    fns = ModelFunctions.of(build_model(config.model, seed=0))
    return int(sum(np.size(a) for a in jax.tree.leaves(fns.params)))


def step_bytes(n_params: int) -> int:
    """Least memory traffic of one float32 Adam step (see the module docstring): 32 bytes per parameter."""
    forward_and_backward_reads = 2 * 4 * n_params
    optimizer_reads_and_writes = 2 * 3 * 4 * n_params  # parameter, first and second moment: read and written
    return forward_and_backward_reads + optimizer_reads_and_writes


def step_flops(config, batch: int) -> float:
    """Matmul FLOPs of one training step: forward + backward (2x forward) of the expert layers."""
    sizes = [layout.INPUT_DIM, *config.model.hidden_sizes, layout.OUTPUT_DIM]
    weights = config.model.n_experts * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 3 * 2 * weights * batch


def jax_step_fn(config, formulation: str, batch: int) -> Callable[[int], None]:
    """Call ``i``: one jitted JAX training step (AdamWR, dropout) of the model in ``formulation`` on
    the ``i % 8``-th of eight fixed batches."""
    config = config.copy_and_resolve_references()
    config.model.formulation = formulation
    fns = ModelFunctions.of(build_model(config.model, seed=0))
    tx = make_optimizer(config.train, n_batches=_ROWS // batch)
    state = init_state(fns, tx, seed=0)
    step = jit_train_step(make_train_step(fns, tx))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(_ROWS, layout.INPUT_DIM)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(_ROWS, layout.OUTPUT_DIM)), jnp.float32)
    rows = [jnp.asarray(rng.integers(0, _ROWS, batch), jnp.int32) for _ in range(8)]
    holder = {"state": state}

    def one(i: int) -> None:
        holder["state"], m = step(holder["state"], x, y, rows[i % 8])
        m["loss"].block_until_ready()

    return one


def torch_step_fn(config, batch: int, formulation: str) -> Callable[[int], None] | None:
    """The same MANN step in plain PyTorch eager mode (Adam) on a random batch (the call number is
    ignored), or None without torch.

    ``formulation="blend"`` blends the expert weights per sample, as the original code and a direct
    port do; ``"mix"`` mixes the expert outputs with einsum; ``"mix-matmul"`` mixes them as the JAX
    model does, as one matmul over the stacked experts (the fairest port of the JAX step). Runs on
    the device JAX runs on (:func:`torch_device`), float32 products on both (no TF32).
    """
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    device = torch_device()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_default_device(device)  # for building the model only
    try:
        k = config.model.n_experts
        sizes = [layout.INPUT_DIM, *config.model.hidden_sizes, layout.OUTPUT_DIM]
        gsizes = [len(layout.GATING_INDICES), config.model.gating_hidden, config.model.gating_hidden, k]
        alphas = [torch.nn.Parameter(torch.randn(k, i, o) * 0.01) for i, o in zip(sizes[:-1], sizes[1:])]
        betas = [torch.nn.Parameter(torch.zeros(k, o)) for o in sizes[1:]]
        gating = [torch.nn.Linear(i, o) for i, o in zip(gsizes[:-1], gsizes[1:])]
        params = alphas + betas + [p for g in gating for p in g.parameters()]
        opt = torch.optim.Adam(params, lr=1e-4)
        drop = torch.nn.Dropout(1 - config.model.keep_prob)
        gidx = torch.tensor(layout.GATING_INDICES)
        x = torch.randn(_ROWS, layout.INPUT_DIM)
        y = torch.randn(_ROWS, layout.OUTPUT_DIM)
    finally:
        torch.set_default_device("cpu")

    def one(_call: int) -> None:  # a random batch each call
        idx = torch.randint(0, _ROWS, (batch,), device=device)
        xb, yb = x[idx], y[idx]
        g = xb[:, gidx]
        for i, lin in enumerate(gating):
            g = lin(drop(g))
            if i < len(gating) - 1:
                g = torch.nn.functional.elu(g)
        omega = torch.softmax(g, dim=-1)
        h = xb
        for i, (a, b) in enumerate(zip(alphas, betas)):
            if formulation == "blend":
                h = torch.einsum("bi,bio->bo", drop(h), torch.einsum("bk,kio->bio", omega, a)) + omega @ b
            elif formulation == "mix":
                h = torch.einsum("bk,bko->bo", omega, torch.einsum("bi,kio->bko", drop(h), a) + b)
            else:  # "mix-matmul": the JAX model's own mixing, one (batch, K*in) x (K*in, out) product
                scaled = (omega[:, :, None] * drop(h)[:, None, :]).reshape(h.shape[0], -1)
                h = scaled @ a.reshape(-1, a.shape[-1]) + omega @ b
            if i < len(alphas) - 1:
                h = torch.nn.functional.elu(h)
        loss = torch.mean((h - yb) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()  # time the work, not its queueing

    return one


def torch_device() -> str:
    """``"cuda"`` when JAX runs on a GPU and torch sees one, else ``"cpu"``: the same hardware for both."""
    import torch

    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def main(argv: list[str]) -> None:
    del argv
    configure_cpu_backend()  # the compiler options training runs with, before JAX starts
    config = default.get_config()
    batch, steps = _BATCH.value, _STEPS.value
    flops = step_flops(config, batch)
    n_params = parameter_count(config)
    bandwidth = memory_bandwidth_gbs(3 * 4 * n_params)  # parameter + moments: the state the update streams
    memory_floor = step_bytes(n_params) / (bandwidth * 1e9)
    fns = {"matmul": matmul_fn(), "jax_mix": jax_step_fn(config, "mix", batch),
           "jax_blend": jax_step_fn(config, "blend", batch)}
    for formulation in ("mix", "blend", "mix-matmul"):
        fn = torch_step_fn(config, batch, formulation)
        if fn is not None:
            fns[f"torch_{formulation}"] = fn
    rounds = _ROUNDS.value
    per_round = max(1, steps // rounds)
    calls = {name: max(1, per_round // 5) if "blend" in name or name == "matmul" else per_round for name in fns}
    seconds = {name: t.best for name, t in timed_rounds(fns, calls, rounds=rounds).items()}
    peak = 2 * 2048**3 / seconds["matmul"] / 1e9
    floor = flops / (peak * 1e9)
    mix, blend = seconds["jax_mix"], seconds["jax_blend"]
    torch_mix, torch_blend, torch_matmul = (seconds.get(f"torch_{f}") for f in ("mix", "blend", "mix-matmul"))
    torch_s = None if torch_mix is None else min(torch_mix, torch_blend, torch_matmul)
    result = {
        "device": jax.devices()[0].device_kind,
        "batch_size": batch,
        "matmul_peak_gflops": round(peak, 1),
        "step_gflop": round(flops / 1e9, 3),
        "floor_ms": round(floor * 1e3, 2),
        "jax_mix_ms": round(mix * 1e3, 2),
        "jax_blend_ms": round(blend * 1e3, 2),
        "jax_samples_per_s": round(batch / mix, 1),
        "jax_over_floor": round(mix / floor, 2),
        "memory_bandwidth_gb_s": round(bandwidth, 1),
        "step_min_bytes": step_bytes(n_params),
        "memory_floor_ms": round(memory_floor * 1e3, 2),
        "jax_over_memory_floor": round(mix / memory_floor, 2),
        "torch_eager_mix_ms": None if torch_mix is None else round(torch_mix * 1e3, 2),
        "torch_eager_blend_ms": None if torch_blend is None else round(torch_blend * 1e3, 2),
        "torch_eager_mix_matmul_ms": None if torch_matmul is None else round(torch_matmul * 1e3, 2),
        "jax_speedup_over_torch": None if torch_s is None else round(torch_s / mix, 2),
        "torch_device": None if torch_s is None else torch_device(),
    }
    print(f"matmul peak          {peak:8.1f} GFLOP/s   -> step floor {floor * 1e3:7.2f} ms ({flops / 1e9:.3f} GFLOP)")
    print(f"memory bandwidth     {bandwidth:8.1f} GB/s      -> step floor {memory_floor * 1e3:7.2f} ms "
          f"({step_bytes(n_params) / 1e6:.0f} MB at least: {n_params:,} parameters)")
    print(f"JAX step (mix)       {mix * 1e3:8.2f} ms   {batch / mix:8.0f} samples/s   "
          f"{mix / floor:5.2f} x matmul floor, {mix / memory_floor:4.2f} x memory floor")
    print(f"JAX step (blend)     {blend * 1e3:8.2f} ms   (the original formulation)")
    if torch_s is None:
        print("PyTorch eager        (torch not installed: skipped)")
    else:
        print(f"PyTorch eager (mix)   {torch_mix * 1e3:7.2f} ms   (torch on {torch_device()})")
        print(f"PyTorch eager (blend) {torch_blend * 1e3:7.2f} ms")
        print(f"PyTorch eager (mix as one matmul, the JAX model's formulation) {torch_matmul * 1e3:7.2f} ms")
        print(f"JAX vs the fastest PyTorch eager step: {torch_s / mix:.2f} x faster")
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
