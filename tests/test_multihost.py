"""Multi-process sweeps (jax.distributed, gloo on CPU): the helpers, and two processes on localhost running
the documented command: the same table as one process, a killed run resumed, clear errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from configs import sweep as sweep_config
from mann_jax import multihost, sweep

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# Helpers, in one process
# ----------------------------------------------------------------------------------------------


def test_to_host_reads_local_arrays_and_keeps_structure():
    tree = {"a": jax.numpy.arange(3.0), "b": [np.ones(2, np.int32), 4.0]}
    out = multihost.to_host(tree)
    assert isinstance(out["a"], np.ndarray) and isinstance(out["b"][0], np.ndarray)
    np.testing.assert_array_equal(out["a"], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(out["b"][0], [1, 1])
    assert float(out["b"][1]) == 4.0


def test_one_process_needs_no_agreement(tmp_path):
    multihost.check_same_run({"config": {"x": 1}}, tmp_path)  # a no-op: nothing written, nothing raised
    assert list(tmp_path.iterdir()) == []
    np.testing.assert_array_equal(multihost.gather_rows(np.array([1, 2])), [[1, 2]])
    assert multihost.is_main()


def test_checkpoint_note_names_the_latest_complete_step(tmp_path):
    assert multihost.latest_checkpoint_note(tmp_path) == "no checkpoint was written"
    for name in ("10", "20", "30.orbax-checkpoint-tmp-1"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    assert multihost.latest_checkpoint_note(tmp_path) == (
        f"the checkpoints up to step 20 in {tmp_path / 'checkpoints'} are intact")


def test_a_lost_peer_is_not_recognised_in_one_process():
    # One process has no peers: a gloo-looking message there is a bug, reported with its traceback.
    assert not multihost.is_peer_failure(RuntimeError("Gloo AllGather failed: Connection closed by peer"))


# ----------------------------------------------------------------------------------------------
# Several processes on this machine
# ----------------------------------------------------------------------------------------------


def _command(process_id: int, port: int, workdir: Path, cache: Path, *extra: str) -> list[str]:
    """The documented command (docs/multihost.md), on the toy sweep."""
    return [sys.executable, "-m", "experiments.sweep", "--config=configs/sweep.py:toy",
            f"--config.data.cache_dir={cache}", "--multihost", f"--coordinator_address=127.0.0.1:{port}",
            "--num_processes=2", f"--process_id={process_id}", f"--workdir={workdir}", *extra]


def _start(workdir: Path, cache: Path, *extra: str, extra_for_1: tuple[str, ...] = ()) -> list[subprocess.Popen]:
    port = _free_port()
    # Two CPU devices per process: the 3 models are padded to 4 and sharded over both processes.
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    return [subprocess.Popen(_command(i, port, workdir, cache, *extra, *(extra_for_1 if i else ())), cwd=REPO,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(2)]


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    outs = []
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            outs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
        finally:
            proc.kill()
    return outs


def _last_line(out: str) -> str:
    lines = [line for line in out.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


@pytest.mark.slow
def test_two_processes_equal_one_and_resume_after_a_kill(tmp_path):
    cache, workdir = tmp_path / "cache", tmp_path / "run"
    config = sweep_config.get_config("toy")
    config.data.cache_dir = str(cache)
    one = sweep.run_sweep(config, tmp_path / "one_process", progress=False)  # builds the data cache too
    first_checkpoint = int(config.train.checkpoint_every_steps)
    assert one.steps > 4 * first_checkpoint  # so the kill below lands well before the end

    # Kill process 1 once the first checkpoint is committed; process 0 must stop by itself (no hang).
    procs = _start(workdir, cache, "--heartbeat_timeout=30")
    deadline = time.monotonic() + 240
    while not (workdir / "checkpoints" / str(first_checkpoint)).is_dir():
        assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, _finish(procs, 5)
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    out0 = _finish(procs, 60)[0]
    assert procs[0].returncode not in (0, None), out0[-3000:]
    # Our line after a failed exchange; JAX's own when process 0 was waiting in a runtime barrier.
    assert ("error: another process of this 2-process run stopped" in _last_line(out0)
            or "JAX distributed service detected fatal errors" in out0), out0[-3000:]
    assert not (workdir / "results.json").exists(), "the run ended before the kill: nothing was resumed"

    # Restart both: they resume from the last checkpoint and end with the one-process table.
    outs = _finish(_start(workdir, cache), 240)
    for out in outs:
        assert '"devices": 4' in out, out[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    assert results["processes"] == 2 and results["finished"]
    assert first_checkpoint <= results["start_step"] < one.steps
    assert [r["name"] for r in results["rows"]] == [r["name"] for r in one.rows]
    for got, want in zip(results["rows"], one.rows, strict=True):
        for key in ("actual_sparsity", "nonzero", "size_mb", "mflops"):
            assert got[key] == pytest.approx(want[key], rel=1e-9), key
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-5)
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)


@pytest.mark.slow
def test_processes_with_different_configs_or_workdirs_stop_with_one_error(tmp_path):
    cache = tmp_path / "cache"
    outs = _finish(_start(tmp_path / "a", cache, extra_for_1=("--config.train.learning_rate=1e-3",)), 240)
    for out in outs:
        assert "error: process(es) 1 run a different config or data than process 0" in _last_line(out), out[-2000:]
    outs = _finish(_start(tmp_path / "a", cache, extra_for_1=(f"--workdir={tmp_path / 'b'}",)), 240)
    for out in outs:
        assert "error: process(es) 1 do not see the --workdir of process 0" in _last_line(out), out[-2000:]


@pytest.mark.slow
def test_a_process_whose_peers_never_come_stops_after_the_timeout(tmp_path):
    start = time.monotonic()
    out = subprocess.run(_command(0, _free_port(), tmp_path, tmp_path / "cache", "--initialization_timeout=5"),
                         cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
                         check=False, timeout=120)
    assert out.returncode != 0 and time.monotonic() - start < 100
    assert "--multihost: process 0 of 2 connecting to the coordinator" in out.stderr
    assert "waiting up to 5 s for every process" in out.stderr and "DEADLINE_EXCEEDED" in out.stderr, out.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--coordinator_address=127.0.0.1:1", "--num_processes=2", "--process_id=5"], "process_id"),
    (["--num_processes=2", "--process_id=0"], "coordinator_address"),
])
def test_bad_multihost_settings_are_clear_errors(tmp_path, args, message):
    out = subprocess.run([sys.executable, "-m", "experiments.sweep", "--config=configs/sweep.py:toy", "--multihost",
                          *args, f"--workdir={tmp_path}"], cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                         capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --multihost:") and message in last, last
    assert "Traceback" not in out.stderr
