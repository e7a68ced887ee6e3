"""Timing for the benchmarks on a shared, noisy machine: interleaved rounds, every call timed alone.

The project's machines are shared: another tenant's work moves a measurement by tens of percent
for seconds at a time. The benchmarks therefore time their candidates in interleaved rounds (a
busy period falls on every candidate alike rather than on whichever ran then), time every call on
its own (so a slow first call of a round shows as one slow sample, not a slower mean), and report
the lowest round median (the least disturbed round; the median of every call comes with it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np


class Timing(NamedTuple):
    """Seconds per call of one candidate."""

    best: float  #: the lowest round median
    median: float  #: the median over every timed call


def timed_rounds(fns: dict[str, Callable[[int], Any]], calls: int | dict[str, int], *, rounds: int,
                 warmup: int = 1) -> dict[str, Timing]:
    """Times each function in ``rounds`` interleaved rounds of ``calls`` (or ``calls[name]``)
    consecutive calls, after ``warmup`` untimed calls each.

    Args:
        fns: Candidates by name; each is called with a running call number (0, 1, ...), e.g. to
            pick its input.
        calls: Calls per round, for every candidate or by name.
        rounds: Number of rounds (at least 1).
        warmup: Untimed calls of each candidate before the first round.

    Returns:
        A :class:`Timing` per name.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    per_round = {name: calls[name] if isinstance(calls, dict) else calls for name in fns}
    if any(n < 1 for n in per_round.values()):
        raise ValueError(f"calls per round must be at least 1, got {per_round}")
    for fn in fns.values():
        for i in range(warmup):
            fn(i)
    medians: dict[str, list[float]] = {name: [] for name in fns}
    every: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name, fn in fns.items():
            times = []
            for i in range(per_round[name]):
                start = time.perf_counter()
                fn(r * per_round[name] + i)
                times.append(time.perf_counter() - start)
            medians[name].append(float(np.median(times)))
            every[name].extend(times)
    return {name: Timing(min(medians[name]), float(np.median(every[name]))) for name in fns}
