"""The benchmarks' timing statistic (experiments.timing), on a scripted clock."""

from __future__ import annotations

import numpy as np
import pytest

from experiments import timing


class ScriptedClock:
    """``time.perf_counter`` stand-in: each candidate call advances it by the next scripted duration."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def candidate(clock: ScriptedClock, durations: list[float], log: list[tuple[str, int]], name: str):
    it = iter(durations)

    def fn(i: int) -> None:
        log.append((name, i))
        clock.now += next(it)

    return fn


def test_best_is_the_lowest_round_median_and_median_covers_every_call(monkeypatch):
    clock = ScriptedClock()
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    log: list[tuple[str, int]] = []
    # One warm-up call (not timed), then 3 rounds of 3 calls; the second round is disturbed.
    a_rounds = [[1.0, 1.1, 5.0], [3.0, 3.0, 3.0], [0.9, 1.0, 1.2]]
    b_rounds = [[2.0, 2.0, 2.0], [6.0, 2.5, 6.0], [2.2, 2.1, 9.0]]
    fns = {"a": candidate(clock, [100.0] + sum(a_rounds, []), log, "a"),
           "b": candidate(clock, [100.0] + sum(b_rounds, []), log, "b")}
    got = timing.timed_rounds(fns, 3, rounds=3)
    assert got["a"].best == pytest.approx(1.0)  # round medians 1.1, 3.0, 1.0
    assert got["b"].best == pytest.approx(2.0)  # round medians 2.0, 6.0, 2.2
    assert got["a"].median == pytest.approx(np.median(sum(a_rounds, [])))
    assert got["b"].median == pytest.approx(np.median(sum(b_rounds, [])))
    # Warm-up first, then rounds interleaved candidate by candidate, call numbers counting on.
    assert log[:2] == [("a", 0), ("b", 0)]
    assert log[2:8] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]
    assert log[8:11] == [("a", 3), ("a", 4), ("a", 5)]


def test_calls_per_round_by_name(monkeypatch):
    clock = ScriptedClock()
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    log: list[tuple[str, int]] = []
    fns = {"fast": candidate(clock, [0.0] + [1.0] * 8, log, "fast"),
           "slow": candidate(clock, [0.0] + [4.0] * 2, log, "slow")}
    got = timing.timed_rounds(fns, {"fast": 4, "slow": 1}, rounds=2)
    assert [n for n, _ in log].count("fast") == 1 + 8
    assert [n for n, _ in log].count("slow") == 1 + 2
    assert got["fast"] == timing.Timing(1.0, 1.0)
    assert got["slow"] == timing.Timing(4.0, 4.0)


@pytest.mark.parametrize("kwargs", [{"calls": 3, "rounds": 0}, {"calls": 0, "rounds": 2},
                                    {"calls": {"f": 0}, "rounds": 1}])
def test_rejects_empty_measurements(kwargs):
    with pytest.raises(ValueError, match="at least 1"):
        timing.timed_rounds({"f": lambda i: None}, kwargs["calls"], rounds=kwargs["rounds"])
