"""Sparsity schedules: known values, window placement, update steps, bad windows, plots."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mann_jax.pruning import SCHEDULES, Schedule, make_schedule, plot_schedules
from mann_jax.pruning import schedules as S


def _values(sched: Schedule) -> np.ndarray:
    """The fraction at every step count of the run (evaluated on a fixed 512-step grid: eager ops
    then compile once for all schedules)."""
    assert sched.total_steps <= 512
    return np.asarray(sched(jnp.arange(512, dtype=jnp.int32)))[: sched.total_steps]


def test_one_cycle_matches_design_numbers():
    f = S.one_cycle()
    for t, want in ((0.2, 0.04), (0.4, 0.40), (0.6, 0.92)):
        assert abs(float(f(jnp.float32(t))) - want) <= 0.01, t
    assert float(f(jnp.float32(1.0))) == pytest.approx(1.0, abs=1e-7)
    # The same through a Schedule: window = whole run of 11 steps, so step c is t = c / 10.
    v = _values(make_schedule("one_cycle", start=0.0, end=1.0, total_steps=11))
    np.testing.assert_allclose(v[[2, 4, 6]], [0.04, 0.40, 0.92], atol=0.01)
    assert v[-1] == 1.0


def test_agp_cubic_linear_cosine_at_mid_window():
    for name, want in (("agp", 0.875), ("linear", 0.5), ("cosine", 0.5)):
        v = _values(make_schedule(name, start=0.0, end=1.0, total_steps=101))
        assert v[50] == pytest.approx(want, abs=1e-6), name
        assert v[0] == pytest.approx(0.0, abs=1e-6) and v[-1] == 1.0
    assert float(S.agp(power=2)(jnp.float32(0.5))) == pytest.approx(0.75)


def test_one_shot_prunes_everything_at_window_start():
    v = _values(make_schedule("one_shot", start=0.25, end=0.75, total_steps=101))
    np.testing.assert_array_equal(v[:25], 0.0)
    np.testing.assert_array_equal(v[25:], 1.0)


def test_iterative_equal_steps():
    sched = make_schedule("iterative", start=0.0, end=1.0, total_steps=101, n_steps=4)
    v = _values(sched)
    np.testing.assert_array_equal(v[:25], 0.25)
    np.testing.assert_array_equal(v[25:50], 0.5)
    np.testing.assert_array_equal(v[50:75], 0.75)
    np.testing.assert_array_equal(v[75:], 1.0)
    # A step exactly at i / n of a window whose float32 t is inexact (7 steps, n = 7) is on time.
    v7 = _values(make_schedule("iterative", start=0.0, end=1.0, total_steps=8, n_steps=7))
    np.testing.assert_allclose(v7, [1 / 7, 2 / 7, 3 / 7, 4 / 7, 5 / 7, 6 / 7, 1.0, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(_values(make_schedule("iterative", start=0.1, end=0.9, total_steps=11, n_steps=1)),
                                  _values(make_schedule("one_shot", start=0.1, end=0.9, total_steps=11)))


def test_window_placement_and_update_steps():
    sched = make_schedule("linear", start=0.2, end=0.7, total_steps=21)  # counts 4 .. 14
    assert (sched.start_step, sched.end_step) == (4, 14)
    v = _values(sched)
    np.testing.assert_array_equal(v[:4], 0.0)
    np.testing.assert_allclose(v[4:15], np.arange(11) / 10, atol=1e-7)
    np.testing.assert_array_equal(v[14:], 1.0)
    due = np.asarray(sched.is_update_step(jnp.arange(21), 4))
    assert list(np.flatnonzero(due)) == [4, 8, 12, 14]  # every 4th from the start, plus the last
    assert [c for c in range(21) if sched.mask_update_due(c, 4)] == [4, 8, 12, 14]  # the host's copy
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        sched.mask_update_due(4, 0)
    last = make_schedule("cosine", start=0.0, end=1.0, total_steps=10)
    assert last.end_step == 9 and float(last(9)) == 1.0  # end = 1 is the last step of training


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.sampled_from(sorted(SCHEDULES)), st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(1, 300))
def test_every_schedule_is_monotone_within_0_1(name, a, b, total):
    start, end = min(a, b), max(a, b)
    sched = make_schedule(name, start=start, end=end, total_steps=total)
    v = _values(sched)
    assert np.all((v >= 0) & (v <= 1))
    assert np.all(np.diff(v) >= 0)
    assert np.all(v[: sched.start_step] == 0) and np.all(v[sched.end_step:] == 1)


def test_bad_windows_and_names_are_errors():
    for start, end in ((0.5, 0.4), (-0.1, 0.5), (0.2, 1.1)):
        with pytest.raises(ValueError, match="window"):
            make_schedule("linear", start=start, end=end, total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        make_schedule("linear", start=0.0, end=1.0, total_steps=0)
    with pytest.raises(ValueError, match="unknown pruning schedule"):
        make_schedule("exponential", start=0.0, end=1.0, total_steps=10)
    with pytest.raises(ValueError, match="bad arguments"):
        make_schedule("linear", start=0.0, end=1.0, total_steps=10, n_steps=3)
    with pytest.raises(ValueError, match="n_steps"):
        make_schedule("iterative", start=0.0, end=1.0, total_steps=10, n_steps=0)


def test_plot_schedules_writes_png_and_svg(tmp_path):
    png = plot_schedules(["one_cycle", "agp", make_schedule("one_shot", start=0.3, end=0.3, total_steps=50)],
                         tmp_path / "schedules.png", total_steps=50)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = plot_schedules(sorted(SCHEDULES), tmp_path / "sub" / "schedules.svg", total_steps=50, target=0.9)
    assert b"<svg" in svg.read_bytes()[:1000]
    with pytest.raises(ValueError, match="png or .svg"):
        plot_schedules(["linear"], tmp_path / "s.jpg")


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(1, 400), st.integers(1, 50))
def test_host_and_traced_update_steps_agree(a, b, total, every):
    # The loops pick the compiled step on the host (mask_update_due); the step itself decides with
    # is_update_step: they must name the same steps.
    sched = make_schedule("one_cycle", start=min(a, b), end=max(a, b), total_steps=total)
    # One array shape for every example (the eager ops compile once), cut to the steps checked.
    traced = np.asarray(sched.is_update_step(jnp.arange(403), every))[: total + 3]
    assert [sched.mask_update_due(c, every) for c in range(total + 3)] == traced.tolist()


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_from_config_reads_each_schedules_own_keys(name):
    from configs import default
    from mann_jax.pruning import schedule_from_config
    from mann_jax.train import make_pruning_schedule

    pc = default.get_config().pruning
    pc.schedule, pc.start, pc.end = name, 0.1, 0.8
    pc.alpha, pc.beta, pc.power, pc.n_steps = 10.0, 4.0, 2.0, 3  # not the factories' defaults
    steps = jnp.arange(200)
    got = jax.vmap(schedule_from_config(pc, total_steps=200))(steps)
    want = jax.vmap(make_pruning_schedule(pc, total_steps=200))(steps)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    if name in ("one_cycle", "agp", "iterative"):  # the section's values are used, not the defaults
        default_fn = jax.vmap(make_schedule(name, start=0.1, end=0.8, total_steps=200))(steps)
        assert not np.array_equal(np.asarray(got), np.asarray(default_fn))
