"""The benchmarks refuse nonsensical flags (zero rounds, a sparsity outside [0, 1), ...) before timing anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command, flag", [
    ("experiments.bench_train", "--rounds=0"),
    ("experiments.bench_train", "--steps=0"),
    ("experiments.bench_inference", "--sparsity=1.5"),
    ("experiments.bench_inference", "--sparsity=1"),
    ("experiments.bench_inference", "--repeats=0"),
    ("experiments.bench_inference", "--batch=0"),
    ("experiments.bench_inference", "--cold_frames=-1"),
])
def test_bad_benchmark_flags_are_one_line_errors(command, flag):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", command, flag], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    name = flag.split("=")[0]
    assert proc.returncode != 0 and f"flag {name}=" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout.strip()
