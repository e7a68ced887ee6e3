"""Sparsity sweeps: every strategy equals independent single runs, sharding, resume, table, traces, errors."""

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import chex
import jax
import numpy as np
import pytest

from configs import sweep as sweep_config
from mann_jax import pruning, sweep
from mann_jax.checkpoint import Checkpoints
from mann_jax.errors import TrainingError
from mann_jax.pruning import accounting
from mann_jax.train import train

REPO = Path(__file__).resolve().parents[1]
LEVELS = (0.0, 0.5, 0.8)


def tiny_config(cache_dir, **sweep_settings):
    config = sweep_config.get_config()
    config.data.update(synthetic_clips=3, synthetic_seconds=6.0, cache_dir=str(cache_dir))
    config.model.update(hidden_sizes=(16, 16), n_experts=2)
    config.train.update(batch_size=16, epochs=1, log_every_steps=10, checkpoint_every_steps=20, keep_checkpoints=2,
                        learning_rate=3e-3)
    config.pruning.update(update_every=3, end=0.8)
    config.sweep.update({"levels": LEVELS, **sweep_settings})
    return config


def traced_once(step):
    """The step, failing if it is traced more than once per compiled program (a recompilation per
    level would trace again). A sweep compiles two programs, with and without the mask update, and
    chex counts both under one name (same source, same wrapping site): hence at most 2 traces."""
    chex.clear_trace_counter()
    return chex.assert_max_traces(step, n=2)


def assert_trees_close(a, b, rtol=1e-5, atol=2e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def single_runs(tmp_path_factory, cache):
    """Independent train() runs, one per level, same data order (the reference)."""
    out = []
    for level in LEVELS:
        config = tiny_config(cache)
        del config.sweep  # a plain single-model config
        config.pruning.target_sparsity = level
        out.append(train(config, tmp_path_factory.mktemp(f"single_{level}"), progress=False))
    return out


@pytest.fixture(scope="module")
def vmap_sweep(tmp_path_factory, cache):
    workdir = tmp_path_factory.mktemp("sweep_vmap")
    result = sweep.run_sweep(tiny_config(cache, strategy="vmap"), workdir, progress=False,
                             wrap_step=traced_once)
    return workdir, result


def _check_against_singles(result, single_runs):
    assert result.steps == single_runs[0].steps
    for i, single in enumerate(single_runs):
        assert_trees_close(sweep.unstack(result.state.params, i), single.state.params)
        masks = pruning.find_pruning_state(sweep.unstack(result.state.opt_state, i)).masks
        if LEVELS[i] > 0:
            assert_trees_close(masks, pruning.find_pruning_state(single.state.opt_state).masks, rtol=0, atol=0)
        assert result.rows[i]["val_loss"] == pytest.approx(single.val_loss, rel=1e-5)
        assert result.rows[i]["train_loss"] == pytest.approx(single.train_loss, rel=1e-5)


@pytest.mark.slow
def test_vmap_sweep_equals_single_runs_traced_once(vmap_sweep, single_runs):
    _, result = vmap_sweep
    assert result.strategy == "vmap"
    _check_against_singles(result, single_runs)
    actual = [r["actual_sparsity"] for r in result.rows]
    assert actual[0] == 0.0 and actual[1] == pytest.approx(0.5, abs=1e-3) and actual[2] == pytest.approx(0.8, abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["loop", "map", "unroll"])
def test_every_strategy_equals_single_runs(strategy, tmp_path, cache, single_runs):
    # One trace of the single-model step serves every level (no recompilation per level).
    result = sweep.run_sweep(tiny_config(cache, strategy=strategy), tmp_path, progress=False,
                             wrap_step=traced_once)
    assert result.strategy == strategy
    _check_against_singles(result, single_runs)


@pytest.mark.slow
def test_seeds_are_a_second_mapped_axis(tmp_path, cache):
    config = tiny_config(cache, levels=(0.5,), seeds=(1, 2), shared_data_order=False, strategy="vmap")
    result = sweep.run_sweep(config, tmp_path / "sweep", progress=False)
    assert [r["name"] for r in result.rows] == ["level_50_seed_1", "level_50_seed_2"]
    for i, seed in enumerate((1, 2)):
        single = tiny_config(cache)
        del single.sweep
        single.train.seed = seed
        single.pruning.target_sparsity = 0.5
        ref = train(single, tmp_path / f"single_{seed}", progress=False)
        assert_trees_close(sweep.unstack(result.state.params, i), ref.state.params)


def test_a_small_sweep_trains_every_level_and_writes_its_table(tmp_path, cache):
    # The fast suite's sweep from start to end, 7 steps, with the strategy "auto" picks on one CPU device (the
    # checks against single runs, resume and calibration train for longer and are slow).
    config = tiny_config(cache, levels=(0.0, 0.5), strategy="loop")
    config.train.batch_size = 64
    result = sweep.run_sweep(config, tmp_path, progress=False)
    assert result.strategy == "loop" and [r["name"] for r in result.rows] == ["level_00", "level_50"]
    assert [r["actual_sparsity"] for r in result.rows] == [0.0, pytest.approx(0.5, abs=1e-3)]
    table = json.loads((tmp_path / "results.json").read_text())
    assert table["finished"] and [r["name"] for r in table["rows"]] == ["level_00", "level_50"]
    assert Checkpoints(tmp_path / "checkpoints", save_every=20, keep=2).latest_step() == result.steps > 0


@pytest.mark.slow
def test_auto_calibrates_and_picks_a_strategy(tmp_path, cache):
    assert sweep.default_strategy("gpu") == "vmap" and sweep.default_strategy("tpu") == "vmap"
    config = tiny_config(cache, levels=(0.0, 0.5), strategy="auto", calibration_steps=1, calibrate=("vmap", "loop"))
    result = sweep.run_sweep(config, tmp_path, progress=False)
    assert result.strategy in ("vmap", "loop") and set(result.calibration) == {"vmap", "loop"}
    meta = Checkpoints(tmp_path / "checkpoints", save_every=20, keep=2).read_meta()
    assert meta["strategy"] == result.strategy


@pytest.mark.slow
def test_resume_continues_every_level_and_equals_uninterrupted(tmp_path, cache, vmap_sweep):
    _, straight = vmap_sweep
    config = tiny_config(cache, strategy="vmap")
    partial = sweep.run_sweep(config, tmp_path, progress=False, stop_after=25)  # of 29 steps
    assert partial.steps == 25 and not json.loads((tmp_path / "results.json").read_text())["finished"]
    # Resume with another (equivalent) strategy: the checkpoint is independent of the layout.
    config.sweep.strategy = "loop"
    resumed = sweep.run_sweep(config, tmp_path, progress=False)
    assert resumed.steps == straight.steps
    assert np.all(np.asarray(resumed.state.step) == straight.steps)
    assert_trees_close(resumed.state.params, straight.state.params)
    table = json.loads((tmp_path / "results.json").read_text())
    assert table["finished"]
    # The training time adds up over the calls (the first one's as of its last checkpoint).
    assert resumed.seconds < resumed.train_seconds <= partial.train_seconds + resumed.seconds + 1e-6
    assert table["train_seconds"] == pytest.approx(resumed.train_seconds, abs=0.01)
    # A changed setup is refused.
    config.sweep.levels = (0.0, 0.4, 0.8)
    with pytest.raises(Exception, match="different config"):
        sweep.run_sweep(config, tmp_path, progress=False)


@pytest.mark.slow
def test_resuming_with_fewer_epochs_than_ran_is_refused_and_leaves_the_table_alone(tmp_path, cache):
    config = tiny_config(cache, strategy="vmap")
    config.train.epochs = 2
    sweep.run_sweep(config, tmp_path, progress=False)
    before = (tmp_path / "results.json").read_bytes()
    config.train.epochs = 1
    with pytest.raises(TrainingError, match=r"past the .* steps of this config"):
        sweep.run_sweep(config, tmp_path, progress=False)
    assert (tmp_path / "results.json").read_bytes() == before
    # Resuming the finished run (no step to run, so no samples/s) still writes strict JSON.
    config.train.epochs = 2
    sweep.run_sweep(config, tmp_path, progress=False)
    table = json.loads((tmp_path / "results.json").read_text(), parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    assert table["finished"]
    # It keeps the training losses it recorded (dropout on), not a loss measured another way.
    recorded = [r["train_loss"] for r in json.loads(before)["rows"]]
    assert [r["train_loss"] for r in table["rows"]] == recorded and all(np.isfinite(recorded))
    (tmp_path / "results.json").unlink()  # the record is the checkpoint's, not the table's
    again = sweep.run_sweep(config, tmp_path, progress=False)
    assert [r["train_loss"] for r in again.rows] == recorded
    assert [r["val_loss"] for r in again.rows] == [r["val_loss"] for r in table["rows"]]
    assert all(np.isnan(sweep.recorded_train_losses({}, 3)))  # a checkpoint from before: unknown


@pytest.mark.slow
def test_results_table_matches_checkpoints_and_outputs_exist(vmap_sweep, cache):
    workdir, result = vmap_sweep
    with open(workdir / "results.csv") as f:
        table = list(csv.DictReader(f))
    rows = json.loads((workdir / "results.json").read_text())["rows"]
    assert [r["name"] for r in table] == ["level_00", "level_50", "level_80"] == [r["name"] for r in rows]
    ckpt = Checkpoints(workdir / "checkpoints", save_every=20, keep=2)
    state, meta = ckpt.restore(result.state)
    assert ckpt.latest_step() == result.steps and [m["level"] for m in meta["models"]] == list(LEVELS)
    for i, (row, jrow) in enumerate(zip(table, rows)):
        params = sweep.unstack(state.params, i)
        masks = pruning.find_pruning_state(sweep.unstack(state.opt_state, i)).masks
        full = jax.tree.map(lambda p, m: np.broadcast_to(np.asarray(m), np.shape(p)), params, masks)
        counts = accounting.nonzero_counts(params, full)
        assert int(row["nonzero"]) == jrow["nonzero"] == counts.total
        assert float(row["actual_sparsity"]) == pytest.approx(pruning.sparsity_report(masks)["overall"])
        assert jrow["size_mb"] == pytest.approx(accounting.model_size_mb(params, full))
        assert jrow["mflops"] == pytest.approx(accounting.flops_per_frame(params, full).mflops)
        assert float(row["level"]) == LEVELS[i]
    assert (workdir / "val_loss_vs_sparsity.png").stat().st_size > 1000
    for name in ("level_00", "level_50", "level_80", "combined"):
        assert any((workdir / "tensorboard" / name).glob("events.out.tfevents.*")), name
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(workdir / "tensorboard" / "combined"))
    events.Reload()
    assert [e.step for e in events.Scalars("final/val_loss")] == [0, 50, 80]
    level = EventAccumulator(str(workdir / "tensorboard" / "level_80"))
    level.Reload()
    assert {"train/loss", "val/loss", "sparsity/overall"} <= set(level.Tags()["scalars"])
    # The last logged sparsity (counted on the devices) is the final masks' (counted on the host).
    assert level.Scalars("sparsity/overall")[-1].step == result.steps
    assert level.Scalars("sparsity/overall")[-1].value == pytest.approx(float(table[2]["actual_sparsity"]), rel=1e-6)


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_per_model_statistics_are_computed_per_model_for_every_runner(strategy):
    rng = np.random.default_rng(0)
    masks = {"w": rng.random((3, 4, 5)) > np.array([0.1, 0.5, 0.9])[:, None, None],
             "v": rng.random((3, 7)) > 0.5, "b": np.ones((3,), bool)}  # b: a stacked scalar True (not pruned)
    unused_step = lambda state, x, y, rows: (state, {})  # noqa: E731 - the runners jit it, nothing runs it
    runner = sweep.make_runner(strategy, step=unused_step, vmap_step=unused_step, n_models=3,
                               devices=jax.devices()[:1], x=np.zeros((4, 480), np.float32),
                               y=np.zeros((4, 363), np.float32))
    held = runner.put({"masks": masks})
    pruned, entries = runner.per_model(held, lambda s: pruning.pruned_entries(s["masks"]))
    want = [(~masks["w"][i]).sum() + (~masks["v"][i]).sum() for i in range(3)]
    np.testing.assert_array_equal(pruned, want)
    np.testing.assert_array_equal(entries, [27, 27, 27])
    # With an array every model shares (not mapped over the models).
    shared = np.arange(5, dtype=np.float32)
    got = runner.per_model(held, lambda s, x: jax.numpy.sum(s["masks"]["w"], axis=(0,)) @ x, shared)
    np.testing.assert_allclose(got, [masks["w"][i].sum(axis=0) @ shared for i in range(3)])


_SHARDED = textwrap.dedent("""
    import sys, numpy as np, jax
    sys.path.insert(0, {tests!r})
    from test_sweep import tiny_config
    from mann_jax import sweep
    assert jax.device_count() == 4, jax.devices()
    out = {{}}
    for strategy in ("vmap", "loop"):
        r = sweep.run_sweep(tiny_config({cache!r}, strategy=strategy), {workdir!r} + "/" + strategy, progress=False)
        assert r.n_devices == (4 if strategy == "vmap" else 3), (strategy, r.n_devices)
        for j, leaf in enumerate(jax.tree.leaves(r.state.params)):
            out[f"{{strategy}}_{{j}}"] = np.asarray(leaf)
    np.savez({workdir!r} + "/params.npz", **out)
""")


@pytest.mark.slow
def test_sharded_over_four_devices_equals_unsharded(tmp_path, cache, vmap_sweep):
    _, unsharded = vmap_sweep
    # 3 levels over 4 devices: the model axis is padded to 4 and the padding dropped.
    code = _SHARDED.format(tests=str(REPO / "tests"), cache=str(cache), workdir=str(tmp_path))
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    saved = np.load(tmp_path / "params.npz")
    for strategy in ("vmap", "loop"):
        leaves = [saved[f"{strategy}_{j}"] for j in range(len(jax.tree.leaves(unsharded.state.params)))]
        assert_trees_close(leaves, jax.tree.leaves(unsharded.state.params))


def test_uneven_error_mode_refuses(cache):
    devices = [jax.devices()[0]] * 1
    runner = sweep.make_runner("vmap", step=None, vmap_step=None, n_models=3, devices=devices,
                               x=np.zeros((4, 480), np.float32), y=np.zeros((4, 363), np.float32), uneven="error")
    assert runner.padded == 3  # one device: always divides
    with pytest.raises(sweep.SweepConfigError, match="do not divide"):
        sweep.StackedRunner("vmap", step=None, vmap_step=None, n_models=3, devices=devices * 2,
                            x=np.zeros((4, 480), np.float32), y=np.zeros((4, 363), np.float32),
                            per_model_rows=False, uneven="error")


def test_memory_refusal_is_a_clear_error(tmp_path, cache):
    config = tiny_config(cache, max_memory_gb=1e-4)
    with pytest.raises(sweep.SweepMemoryError, match=r"needs about .* GiB.*fewer levels per shard"):
        sweep.run_sweep(config, tmp_path, progress=False)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


@pytest.mark.parametrize("setting, value, message", [
    ("levels", (0.0, 1.0), r"\[0, 1\)"),
    ("levels", (-0.1,), r"\[0, 1\)"),
    ("levels", (), "empty"),
    ("levels", (0.5, 0.5), "duplicates"),
    ("seeds", (3, 3), "duplicates"),
    ("strategy", "fastest", "sweep.strategy"),
    ("uneven", "drop", "sweep.uneven"),
    ("eval_every_epochs", 0, "eval_every_epochs"),
])
def test_bad_sweep_settings_are_clear_errors(setting, value, message, tmp_path):
    config = tiny_config(tmp_path)
    config.sweep[setting] = value
    with pytest.raises(ValueError, match=message):
        sweep.make_plan(config)


def test_config_without_sweep_section_is_a_clear_error(tmp_path):
    config = tiny_config(tmp_path)
    del config.sweep
    with pytest.raises(sweep.SweepConfigError, match="configs/sweep.py"):
        sweep.run_sweep(config, tmp_path, progress=False)


def test_level_names(tmp_path):
    assert [sweep.level_name(v) for v in (0.0, 0.1, 0.9, 0.125)] == ["level_00", "level_10", "level_90", "level_12.5"]
    # Two levels within 0.0001 % would share a name, a TensorBoard folder and a table row: refused.
    config = tiny_config(tmp_path)
    config.sweep.levels = (0.5, 0.5000000001)
    with pytest.raises(sweep.SweepConfigError, match=r"share the name\(s\) \['level_50'\]"):
        sweep.make_plan(config)


@pytest.mark.parametrize("arg", [None, "runlocal", "dog"])
def test_sweep_configs_build(arg):
    config = sweep_config.get_config(arg)
    plan = sweep.make_plan(config)
    assert plan.levels == tuple(round(0.1 * i, 1) for i in range(10)) and plan.n_models == 10
    assert config.sweep.strategy == "auto"
    with pytest.raises(ValueError, match="unknown config argument"):
        sweep_config.get_config("fast")


@pytest.mark.slow
def test_command_reports_bad_settings_in_one_line(tmp_path):
    cmd = [sys.executable, "-m", "experiments.sweep", "--config", "configs/sweep.py:runlocal",
           f"--workdir={tmp_path}", "--config.sweep.levels=(0.0,1.5)"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == "error: sweep.levels: every level must lie in [0, 1), got 1.5"
