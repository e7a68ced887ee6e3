"""The GPU check (``make device-check``): the benchmarks and a short full-scale trade-off, one JSON summary.

  python -m experiments.device_check [--out runs/device_check.json] [--budget_s 480] [--allow_cpu --smoke]

What runs and what is written: :mod:`mann_jax.device_check`. Without a GPU it says so and exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags, logging

from mann_jax.device_check import run_check

_OUT = flags.DEFINE_string("out", "runs/device_check.json", "Where the JSON summary is written.")
_BUDGET = flags.DEFINE_integer("budget_s", 480, "Seconds for all parts together (each gets a fixed share).",
                               lower_bound=60)
_ALLOW_CPU = flags.DEFINE_bool("allow_cpu", False, "Run the parts even without a GPU (with --smoke: a plumbing test).")
_SMOKE = flags.DEFINE_bool("smoke", False, "Every part at toy size (seconds per part; the figures mean nothing).")


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    sys.exit(run_check(Path(_OUT.value), budget_s=_BUDGET.value, allow_cpu=_ALLOW_CPU.value, smoke=_SMOKE.value))


if __name__ == "__main__":
    app.run(main)
