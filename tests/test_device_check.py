"""``make device-check`` (experiments/device_check.py): the CPU-only path, the parts' bookkeeping, the headline."""

import json
import os
import subprocess

import jax
import pytest

from mann_jax import device_check


def test_cpu_only_machine_measures_nothing_says_so_and_succeeds(tmp_path, monkeypatch, capsys):
    assert jax.default_backend() == "cpu"  # the tests run on the CPU

    def no_process(*args, **kwargs):
        raise AssertionError(f"a part was started on a CPU-only machine: {args}")

    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)  # run_check sets it for itself
    out = tmp_path / "check" / "device_check.json"
    assert device_check.run_check(out) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("device-check: no GPU: JAX ") and "nothing measured" in first
    summary = json.loads(out.read_text())
    assert summary["skipped"] is True and summary["reason"] == first
    assert summary["device"]["platform"] == "cpu" and summary["device"]["jax"] == jax.__version__
    assert "parts" not in summary and not (tmp_path / "check" / "device_check_parts").exists()


def test_headline_reports_the_sweep_ratio_against_its_target_without_asserting_it():
    parts = {
        "bench_sweep": {"status": "ok", "result": {"ratio_in_window": 0.21, "ratio": 0.4}},
        "bench_train": {"status": "ok", "result": {"jax_mix_ms": 1.5, "jax_samples_per_s": 21000.0}},
        "bench_inference": {"status": "ok", "result": {"results": {
            "jax/dense": {"batch1_us": 90.0, "speedup_batch1": 1.0, "batch256_frames_per_s": 1e6, "kernels": "x"},
            "numpy/dense": {"batch1_us": 50.0, "speedup_batch1": 1.0}}}},
        "tradeoff": {"status": "failed", "error": "exit status 1"},
    }
    h = device_check.headline(parts)
    assert h["sweep_ratio_in_window"] == 0.21 and h["sweep_ratio_target"] == device_check.SWEEP_RATIO_TARGET
    assert h["sweep_ratio_target_met"] is False
    assert h["train_step_ms"] == 1.5
    assert h["inference_jax"] == {"jax/dense": {"batch1_us": 90.0, "speedup_batch1": 1.0,
                                                "batch256_frames_per_s": 1e6}}
    assert "tradeoff_val_loss" not in h  # the failed part gives no figures
    parts["bench_sweep"]["result"]["ratio_in_window"] = 0.12
    assert device_check.headline(parts)["sweep_ratio_target_met"] is True


def test_only_jax_rows_of_the_inference_benchmark_are_kept():
    result = {"threads": 1, "results": {"jax/dense": {"a": 1}, "numpy/dense": {"a": 2}, "numpy-blend/dense": {}},
              "targets": {"jax": {"x": True}, "numpy": {"x": False}}}
    kept = device_check.only_jax_rows(result)
    assert kept == {"threads": 1, "results": {"jax/dense": {"a": 1}}, "targets": {"jax": {"x": True}}}


def test_the_full_scale_parts_are_the_ones_the_issue_names(tmp_path):
    commands = device_check.part_commands(tmp_path, smoke=False)
    assert list(commands) == ["bench_sweep", "bench_train", "bench_inference", "tradeoff"]
    assert "--strategies=vmap" in commands["bench_sweep"] and "--levels=10" in commands["bench_sweep"]
    tradeoff = commands["tradeoff"]
    for arg in ("--config.model.hidden_sizes=(512, 512)", "--config.model.n_experts=8",
                "--config.study.levels=(0.0, 0.5, 0.9)", "--config.train.epochs=3"):
        assert arg in tradeoff
    assert sum(device_check.SHARES.values()) < 1.0  # slack for process starts within the budget


@pytest.mark.slow
def test_a_failing_or_overrunning_part_is_recorded_not_raised(tmp_path, monkeypatch):
    (tmp_path / "fake_bench.py").write_text('print("table")\nprint(\'{"ratio": 0.5}\')\n')
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    ok = device_check.run_part(["fake_bench"], 60, tmp_path / "ok.log")
    assert ok["status"] == "ok" and ok["result"] == {"ratio": 0.5}
    failed = device_check.run_part(["mann_jax_no_such_module"], 60, tmp_path / "failed.log")
    assert failed["status"] == "failed" and "exit status 1" in failed["error"]
    assert "No module named" in (tmp_path / "failed.log").read_text()
    slow = device_check.run_part(["timeit", "-n1", "-r1", "import time; time.sleep(30)"], 2, tmp_path / "slow.log")
    assert slow["status"] == "timed out" and slow["seconds"] < 20
    no_json = device_check.run_part(["json.tool", "--help"], 60, tmp_path / "no_json.log")
    assert no_json["status"] == "failed"  # exits 0 but its last line is no JSON object
