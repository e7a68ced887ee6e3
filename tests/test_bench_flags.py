"""The benchmarks refuse nonsensical flags (zero rounds, a sparsity outside [0, 1), ...) before timing anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Every test here starts a Python process (the benchmarks define clashing absl flags and set the process's
# threads and CPU affinity on import, so they cannot be imported side by side in the test process).
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("command, flag", [
    ("experiments.bench_train", "--rounds=0"),
    ("experiments.bench_sweep", "--rounds=0"),
    ("experiments.bench_sweep", "--levels=0"),
    ("experiments.bench_sweep", "--chunk=0"),
    ("experiments.bench_train", "--steps=0"),
    ("experiments.bench_inference", "--sparsity=1.5"),
    ("experiments.bench_inference", "--sparsity=1"),
    ("experiments.bench_inference", "--repeats=0"),
    ("experiments.bench_inference", "--batch=0"),
    ("experiments.bench_inference", "--threads=-1"),
    ("experiments.bench_inference", "--threads=two"),
    ("experiments.bench_inference", "--cold_frames=-1"),
])
def test_bad_benchmark_flags_are_one_line_errors(command, flag):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", command, flag], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    name = flag.split("=")[0]
    assert proc.returncode != 0 and f"flag {name}=" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout.strip()


def test_last_level_cache_size_skips_unreadable_sysfs_entries(tmp_path):
    # The cold measurement sizes its eviction buffer from sysfs: malformed, empty and unreadable
    # entries are skipped, and with none readable the benchmark falls back to 256 MiB. Run in a
    # subprocess: importing bench_inference sets thread environment variables for the process.
    for i, text in enumerate(["48K", "2048K", "260M", "garbage", "", "12Q"]):
        (tmp_path / "cache" / f"index{i}").mkdir(parents=True)
        (tmp_path / "cache" / f"index{i}" / "size").write_text(text + "\n")
    (tmp_path / "cache" / "index9" / "size").mkdir(parents=True)  # a folder where a file should be
    (tmp_path / "empty").mkdir()
    code = ("from pathlib import Path\n"
            "from experiments.bench_inference import last_level_cache_bytes\n"
            f"print(last_level_cache_bytes(Path({str(tmp_path / 'cache')!r})), "
            f"last_level_cache_bytes(Path({str(tmp_path / 'empty')!r})))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(260 << 20), str(256 << 20)]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
@pytest.mark.parametrize("threads", [1, 0])
def test_bench_inference_threads_pin_the_process_to_that_many_cores(threads):
    # XLA's thread pool has no working thread-count flag, so --threads limits the cores: JAX,
    # numpy and onnxruntime all run on the first --threads usable ones (0: every core).
    code = ("import os, sys\n"
            f"sys.argv = ['bench_inference', '--threads={threads}']\n"
            "before = len(os.sched_getaffinity(0))\n"
            "import experiments.bench_inference\n"
            "print(before, len(os.sched_getaffinity(0)))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    before, after = map(int, proc.stdout.split())
    assert after == (min(threads, before) if threads else before)
