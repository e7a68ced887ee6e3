"""Benchmark a K-level sparsity sweep step against K sequential single-model steps, on this machine.

  python -m experiments.bench_sweep [--levels 10] [--rounds 6] [--batch_size 32] [--hidden 512]

The model is the study's (8 experts x 512, batch 32), trained through the sweep's pruned optimizer
(AdamWR + global magnitude masks). Two phases are timed, because the mask update (an exact global
top-k over 5.5 M weights, every step inside the one-cycle window with ``update_every=1``)
dominates a pruned step: ``update`` (every timed step recomputes the masks) and ``no_update``
(the steps between updates and outside the window, which a sweep runs through a step compiled
without the mask update; so does this phase). In each phase, interleaved over ``--rounds`` rounds
(min taken: the machine is shared and noisy):

* ``single``: what training the levels one after another costs per sweep step: ONE model's state
  taking K steps in a row (the one jitted step), as in a single-model run, where the model's
  state (88 MB for 8 x 512 with Adam and masks) stays in cache from step to step. Reported as
  ``K x single``. (Not K models' states taking one step each: their states would stream from
  DRAM every step, which flatters the sweep.)
* every sweep strategy of :mod:`mann_jax.sweep` over all devices (on CPU the host is split into
  ``--cpu_devices`` XLA devices first, default one per core), and ``vmap`` and ``loop`` on one
  device (``loop/1 device`` is what ``auto`` runs on CPU with the default ``sweep.cpu_devices = 1``),
  each timed over ``--chunk`` sweep steps per call (``Runner.steps``, the call a sweep's loop makes
  between two log lines; ``loop`` runs them model by model), reported per sweep step; the
  ``update`` phase takes one step per call (its steps are dominated by the mask update).

Prints a table and, as the LAST line, JSON with every figure, the device kind, what ``auto``
picks and ``ratio`` = sweep(auto) / (K x single) in the ``update`` phase (targets: <= 0.8 on the
2-core CPU, <= 0.2 on one GPU; the sweep must never lose to the loop of single runs: <= 1), and
``ratio_in_window``: the same for the mean step inside the pruning window of a default sweep
(masks updated every ``pruning.update_every`` steps of ``configs/sweep.py``, 100 by default;
outside the window every step is a ``no_update`` one).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from absl import app, flags

from experiments.timing import Timing, timed_rounds

_LEVELS = flags.DEFINE_integer("levels", 10, "K: number of sparsity levels.", lower_bound=1)
_ROUNDS = flags.DEFINE_integer("rounds", 6, "Timed rounds per phase (each candidate once per round; min taken).",
                              lower_bound=1)
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_HIDDEN = flags.DEFINE_integer("hidden", 512, "Hidden width of the experts.")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 0, "CPU: XLA devices the host is split into for this benchmark "
                                    "(0: one per core); the 1-device variants run on the first.")
_CHUNK = flags.DEFINE_integer("chunk", 10, "Sweep steps per timed call in the no_update phase (a sweep runs up to "
                              "a log interval, 100 by default, per call).", lower_bound=1)
_STRATEGIES = flags.DEFINE_list("strategies", ["vmap", "map", "unroll", "loop"], "Sweep strategies to time.")
_PHASES = flags.DEFINE_list("phases", ["update", "no_update"], "Phases: 'update' and/or 'no_update'.")
_ROWS = 4096  # rows of random normalised data to draw batches from


def _config(levels: int, batch: int, hidden: int, update_every: int) -> Any:
    """The sweep config benchmarked: the study's model at ``levels`` evenly spaced levels."""
    from configs import sweep as sweep_config

    config = sweep_config.get_config()
    config.sweep.levels = tuple(round(i / levels, 6) for i in range(levels))
    config.model.hidden_sizes = (hidden, hidden)
    config.train.batch_size = batch
    config.pruning.update_every = update_every
    return config


def main(argv: list[str]) -> None:
    del argv
    from mann_jax import sweep
    from mann_jax.backend import configure_cpu_backend

    k = _LEVELS.value
    split = _config(k, _BATCH.value, _HIDDEN.value, 1)
    split.sweep.cpu_devices = _CPU_DEVICES.value
    sweep.configure_cpu_devices(split)  # before JAX starts
    configure_cpu_backend()  # the compiler options training runs with

    import jax
    import numpy as np

    from mann_jax.data import layout
    from mann_jax.train import make_train_step

    devices = jax.devices()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(_ROWS, layout.INPUT_DIM)).astype(np.float32)
    y = rng.normal(size=(_ROWS, layout.OUTPUT_DIM)).astype(np.float32)
    batches = [rng.integers(0, _ROWS, _BATCH.value).astype(np.int32) for _ in range(8)]
    report: dict[str, Any] = {"device_kind": devices[0].device_kind, "platform": devices[0].platform,
                    "n_devices": len(devices), "levels": k, "batch_size": _BATCH.value,
                    "model": f"8 experts x {_HIDDEN.value}", "phases": {}}
    print(f"{k} levels, batch {_BATCH.value}, 8 experts x {_HIDDEN.value}, {len(devices)} x "
          f"{devices[0].device_kind} ({devices[0].platform})")
    for phase in _PHASES.value:
        update_every = 1 if phase == "update" else 10**9
        config = _config(k, _BATCH.value, _HIDDEN.value, update_every)
        plan = sweep.make_plan(config)
        # A long run: every step lies inside the one-cycle window (mask update on each step with
        # update_every=1; with 10**9 only the first, untimed, step updates).
        # The update phase runs the full step; the no-update phase the step compiled without the
        # mask update, as a sweep's loop runs on the steps that need none.
        tx, tx_vmap = sweep.sweep_optimizers(config, n_batches=_ROWS // _BATCH.value, total_steps=10**7,
                                             mask_updates=phase == "update")
        fns, stacked = sweep.initial_state(config, plan, tx)
        step, vstep = make_train_step(fns, tx), make_train_step(fns, tx_vmap)

        def runner(name: str, devs: list, n_models: int = k, step: Any = step, vstep: Any = vstep) -> sweep.Runner:
            return sweep.make_runner(name, step=step, vmap_step=vstep, n_models=n_models, devices=devs, x=x, y=y)

        # One model (the middle level) for the single-run baseline.
        one_model = jax.tree.map(lambda a: a[k // 2 : k // 2 + 1], stacked)
        candidates = {"single": runner("loop", devices[:1], n_models=1)}
        for name in _STRATEGIES.value:
            candidates[name] = runner(name, devices)
        if len(devices) > 1:
            for name in ("vmap", "loop"):
                if name in _STRATEGIES.value:
                    candidates[f"{name}/1 device"] = runner(name, devices[:1])
        chunk = _CHUNK.value if phase == "no_update" else 1
        # Per call: the steps handed to Runner.steps, and the sweep steps they amount to ("single":
        # K steps of its one model, one sweep step's worth of work; a sweep: `chunk` sweep steps).
        steps_per_call = {name: (k, 1) if name == "single" else (chunk, chunk) for name in candidates}
        update = phase == "update"
        held = {}
        compile_s = {}
        for name, r in candidates.items():
            start = time.perf_counter()
            held[name], m = r.step(r.put(one_model if name == "single" else stacked), batches[0], update_masks=update)
            jax.block_until_ready(m["loss"])
            compile_s[name] = time.perf_counter() - start

        def call_of(name: str, r: sweep.Runner, held: dict = held, update: bool = update,
                    steps_per_call: dict = steps_per_call) -> Any:
            n = steps_per_call[name][0]

            def call(i: int) -> None:
                rows = [batches[(i * n + j + 1) % len(batches)] for j in range(n)]
                held[name], loss = r.steps(held[name], rows, [update] * n)
                jax.block_until_ready(loss)
            return call

        # One call per candidate per round (the first call, the compilation, is timed above);
        # per sweep step: a call's time over its steps (K single-model steps make one sweep step).
        timed = timed_rounds({name: call_of(name, r) for name, r in candidates.items()}, 1,
                             rounds=_ROUNDS.value, warmup=0)
        timed = {name: Timing(t.best / steps_per_call[name][1], t.median / steps_per_call[name][1])
                 for name, t in timed.items()}
        seq = timed["single"].best
        rows = {}
        print(f"[{phase}] {k} x single (one model, {k} steps in a row, 1 device): {1e3 * seq:.0f} ms per sweep step "
              f"({1e3 * seq / k:.1f} ms per model step; first call {compile_s['single']:.1f} s)")
        for name in candidates:
            if name == "single":
                continue
            best, med = timed[name]
            rows[name] = {"ms": round(1e3 * best, 2), "median_ms": round(1e3 * med, 2),
                          "ratio": round(best / seq, 3), "first_call_s": round(compile_s[name], 1)}
            print(f"[{phase}] {name:<14} {1e3 * best:8.0f} ms  ratio {best / seq:5.2f}  "
                  f"(median {1e3 * med:.0f} ms; first call {compile_s[name]:.1f} s)")
        report["phases"][phase] = {"sweep_steps_per_call": chunk,
                                   "single_ms": round(1e3 * seq / k, 2), "k_single_ms": round(1e3 * seq, 2),
                                   "k_single_median_ms": round(1e3 * timed["single"].median, 2),
                                   "strategies": rows}
        del held, candidates
    # What "auto" runs with the default config: its strategy on the devices a sweep gets by default
    # (on CPU sweep.cpu_devices = 1, i.e. one device).
    auto = sweep.default_strategy(devices[0].platform)
    default_devices = _config(k, _BATCH.value, _HIDDEN.value, 1).sweep.cpu_devices
    if devices[0].platform == "cpu" and default_devices == 1 and len(devices) > 1:
        auto += "/1 device"
    main_phase = "update" if "update" in report["phases"] else next(iter(report["phases"]))
    strategies = report["phases"][main_phase]["strategies"]
    report["auto"] = auto
    report["best"] = min(strategies, key=lambda n: strategies[n]["ratio"])
    report["ratio"] = strategies[auto]["ratio"] if auto in strategies else math.nan
    # Inside the pruning window a sweep with the default config updates the masks every
    # ``update_every``-th step: its mean step there is one update step and update_every - 1 plain
    # ones, for the sweep and for the single runs alike (all four measured above).
    phases = report["phases"]
    if {"update", "no_update"} <= set(phases) and all(auto in phases[p]["strategies"] for p in phases):
        from configs import sweep as sweep_config

        every = int(sweep_config.get_config().pruning.update_every)

        def mean_ms(candidate: str) -> float:
            def ms(phase: str) -> float:
                if candidate == "single":
                    return phases[phase]["k_single_ms"]
                return phases[phase]["strategies"][candidate]["ms"]

            return (ms("update") + (every - 1) * ms("no_update")) / every

        report["update_every"] = every
        report["ratio_in_window"] = round(mean_ms(auto) / mean_ms("single"), 3)
        print(f"inside the pruning window (masks updated every {every} steps, the sweep config's default): "
              f"ratio {report['ratio_in_window']:.2f}")
    print(json.dumps(report))


if __name__ == "__main__":
    app.run(main)
