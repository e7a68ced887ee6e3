"""The GPU check behind ``make device-check`` (``python -m experiments.device_check``): the benchmarks
and a short full-scale trade-off, one JSON summary.

On a machine with a GPU and the pinned JAX's CUDA plugin (``.venv/bin/pip install -c <the setup's lock
file> -e '.[cuda12]'``, or ``cuda13``; docs/dependencies.md), runs one after another, each in its own
process with its share of ``--budget_s``:

* ``bench_sweep``: ten 8 x 512 levels, the ``vmap`` strategy (what ``"auto"`` runs on a GPU) against
  training the levels one after another; ``ratio_in_window`` = a sweep step inside the pruning window
  over the same steps run level after level (target on an H100/H200: <= 0.15; reported, not asserted);
* ``bench_train``: the dense 8 x 512 training step (JAX rows);
* ``bench_inference``: per-frame latency and batch throughput of the dense, unstructured and
  structured controllers (the JAX rows kept);
* ``tradeoff``: the study's trade-off experiment at full model size (8 experts x 512, 3 levels,
  3 epochs, one seed) on the embedded data: sweep, rollouts, skating and quality figures.

Writes ``--out`` (JSON: the device named, each part's figures, seconds and status) and prints it
last. A part that fails or runs past its time is recorded as such and the others still run; the
exit status is 1 when one did. Without a GPU (JAX's default backend is the CPU) it measures
nothing, says so, writes a summary saying so and exits 0. ``--allow_cpu --smoke`` runs every part at
toy size on the CPU (the tests check the plumbing that way).
"""

from __future__ import annotations

import json
import os
import platform as host_platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mann_jax.metric_writer import json_safe

#: JAX on a GPU takes most of its memory when it starts; this process only names the device.
_PREALLOCATE = "XLA_PYTHON_CLIENT_PREALLOCATE"
#: Share of the budget per part (the rest is slack for process starts).
SHARES: dict[str, float] = {"bench_sweep": 0.30, "bench_train": 0.12, "bench_inference": 0.15, "tradeoff": 0.35}
#: The sweep target on an H100/H200: a sweep step inside the pruning window over K single steps.
SWEEP_RATIO_TARGET = 0.15
#: The trade-off's overrides of configs/study.py:toy: the study's model size, 3 levels, 3 epochs, one seed.
TRADEOFF_FULL_SCALE: tuple[str, ...] = (
    "--config.model.hidden_sizes=(512, 512)", "--config.model.n_experts=8", "--config.train.batch_size=32",
    "--config.train.epochs=3", "--config.train.learning_rate=1e-4", "--config.data.synthetic_clips=8",
    "--config.data.synthetic_seconds=20.0", "--config.study.levels=(0.0, 0.5, 0.9)",
    "--config.study.structured_levels=()", "--config.study.seeds=(23456,)", "--config.pruning.update_every=100")


def part_commands(workdir: Path, *, smoke: bool) -> dict[str, list[str]]:
    """The command-line arguments of each part (after ``python -m``)."""
    if smoke:
        # "loop" too: what "auto" runs on a CPU, so that the ratios exist there.
        sweep_args = ["--levels=3", "--hidden=16", "--rounds=1", "--chunk=2", "--strategies=vmap,loop"]
        train_args = ["--steps=2", "--rounds=1"]
        inference_args = ["--repeats=5", "--cold_frames=1", "--batch=8", "--batch_repeats=1"]
        tradeoff_args = ["--config.study.levels=(0.0, 0.5)", "--config.study.structured_levels=()",
                         "--config.study.seeds=(23456,)"]
    else:
        sweep_args = ["--levels=10", "--rounds=3", "--strategies=vmap"]  # "auto" on a GPU
        train_args = ["--steps=50", "--rounds=3"]
        inference_args = ["--repeats=300"]
        tradeoff_args = list(TRADEOFF_FULL_SCALE)
    return {
        "bench_sweep": ["experiments.bench_sweep", *sweep_args],
        "bench_train": ["experiments.bench_train", *train_args],
        "bench_inference": ["experiments.bench_inference", "--no_onnx", *inference_args],
        "tradeoff": ["experiments.tradeoff", "--config=configs/study.py:toy", f"--workdir={workdir / 'tradeoff'}",
                     *tradeoff_args],
    }


def device_description() -> dict[str, Any]:
    """What JAX runs on here: platform, device kind and count, versions (starts JAX's backend)."""
    import jax
    import jaxlib.version

    devices = jax.devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind, "device_count": len(devices),
            "jax": jax.__version__, "jaxlib": jaxlib.version.__version__, "host": host_platform.node(),
            "python": host_platform.python_version()}


def no_accelerator_message(device: dict[str, Any]) -> str:
    """Why nothing is measured on a CPU-only machine, and what would change that."""
    hint = ("this machine has nvidia-smi: install the pinned JAX's CUDA plugin (.venv/bin/pip install "
            "-c requirements-py3.X.lock -e '.[cuda12]', or '.[cuda13]' for a CUDA 13 driver)"
            if shutil.which("nvidia-smi")
            else "run it on a machine with an NVIDIA GPU and the pinned JAX's CUDA plugin")
    return (f"device-check: no GPU: JAX {device['jax']} runs on {device['device_count']} x {device['device_kind']} "
            f"({device['platform']}); nothing measured ({hint})")


def run_part(module_args: Sequence[str], timeout_s: float, log: Path, *,
             env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs ``python -m <module_args>``; its last stdout line parsed as JSON (the benchmarks' convention).

    Returns ``{"status": "ok" | "failed" | "timed out", "seconds", "result"?, "error"?}``; the whole
    output goes to ``log``.
    """
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", *module_args], capture_output=True, text=True,
                              check=False, timeout=timeout_s, cwd=Path(__file__).resolve().parents[1], env=env)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        log.write_text(out)
        return {"status": "timed out", "seconds": round(time.perf_counter() - start, 1),
                "error": f"still running after {timeout_s:.0f} s (output so far: {log})"}
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    seconds = round(time.perf_counter() - start, 1)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if proc.returncode != 0 or not isinstance(result, dict):
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:300]
        return {"status": "failed", "seconds": seconds, "error": f"exit status {proc.returncode}: {tail} ({log})"}
    return {"status": "ok", "seconds": seconds, "result": result}


def headline(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The figures a reader looks for first, from the parts that ran."""
    out: dict[str, Any] = {}
    sweep = parts.get("bench_sweep", {}).get("result")
    if sweep:
        ratio = sweep.get("ratio_in_window")
        out["sweep_ratio_in_window"] = ratio
        out["sweep_ratio_update_every_step"] = sweep.get("ratio")
        out["sweep_ratio_target"] = SWEEP_RATIO_TARGET
        out["sweep_ratio_target_met"] = None if ratio is None else bool(ratio <= SWEEP_RATIO_TARGET)
    train = parts.get("bench_train", {}).get("result")
    if train:
        out["train_step_ms"] = train.get("jax_mix_ms")
        out["train_samples_per_s"] = train.get("jax_samples_per_s")
    inference = parts.get("bench_inference", {}).get("result")
    if inference:
        out["inference_jax"] = {name: {k: v for k, v in row.items()
                                       if k in ("batch1_us", "speedup_batch1") or k.endswith("_frames_per_s")}
                                for name, row in inference.get("results", {}).items() if name.startswith("jax/")}
    tradeoff = parts.get("tradeoff", {}).get("result")
    if tradeoff:
        out["tradeoff_val_loss"] = tradeoff.get("val_loss")
        out["tradeoff_walk_skating"] = tradeoff.get("walk_skating")
    return out


def only_jax_rows(result: dict[str, Any]) -> dict[str, Any]:
    """bench_inference's summary with only the JAX runtime's rows and targets."""
    return {**result, "results": {k: v for k, v in result.get("results", {}).items() if k.startswith("jax/")},
            "targets": {k: v for k, v in result.get("targets", {}).items() if k.startswith("jax")}}


def run_check(out: Path, *, budget_s: float = 480, allow_cpu: bool = False, smoke: bool = False) -> int:
    """Runs the check (see the module docstring), writes ``out``; returns the exit status."""
    start = time.perf_counter()
    # The parts run with the environment as given; this process leaves the GPU's memory to them.
    parts_env = dict(os.environ)
    os.environ.setdefault(_PREALLOCATE, "false")
    device = device_description()
    summary: dict[str, Any] = {"device": device, "smoke": smoke, "budget_s": budget_s}
    out.parent.mkdir(parents=True, exist_ok=True)
    if device["platform"] == "cpu" and not allow_cpu:
        message = no_accelerator_message(device)
        print(message)
        summary.update(skipped=True, reason=message)
        out.write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary))
        return 0
    workdir = out.parent / (out.stem + "_parts")
    workdir.mkdir(parents=True, exist_ok=True)
    parts: dict[str, dict[str, Any]] = {}
    for name, args in part_commands(workdir, smoke=smoke).items():
        print(f"device-check: {name} (up to {SHARES[name] * budget_s:.0f} s) ...", flush=True)
        parts[name] = run_part(args, SHARES[name] * budget_s, workdir / f"{name}.log", env=parts_env)
        if name == "bench_inference" and parts[name].get("result"):
            parts[name]["result"] = only_jax_rows(parts[name]["result"])
        print(f"device-check: {name}: {parts[name]['status']} in {parts[name]['seconds']} s"
              + (f" ({parts[name]['error']})" if "error" in parts[name] else ""), flush=True)
    summary.update(skipped=False, seconds=round(time.perf_counter() - start, 1), headline=headline(parts),
                   parts=parts)
    summary = json_safe(summary)  # a figure the benchmarks could not measure (NaN) becomes null
    out.write_text(json.dumps(summary, indent=2, default=str, allow_nan=False))
    print(f"device-check: summary in {out}")
    print(json.dumps({"device": device, "headline": summary["headline"],
                      "status": {k: v["status"] for k, v in parts.items()}}, default=str, allow_nan=False))
    return 0 if all(p["status"] == "ok" for p in parts.values()) else 1
