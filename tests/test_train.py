"""Training: loss falls, resume after SIGKILL is exact, TensorBoard events are readable, configs are strict."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from configs import default
from mann_jax.backend import OPT_OUT_ENV, configure_cpu_backend, cpu_backend_opted_out, jit_train_step
from mann_jax.checkpoint import CheckpointError, Checkpoints
from mann_jax.config_errors import ConfigError
from mann_jax.data.dataset import build_dataset
from mann_jax.resume import check_resumable
from mann_jax.train import (
    ModelFunctions,
    batch_order,
    build_model,
    gating_scalars,
    gating_summary,
    init_state,
    make_optimizer,
    make_train_step,
    train,
)

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--config.data.synthetic_clips=3", "--config.data.synthetic_seconds=6",
    "--config.model.hidden_sizes=(16,16)", "--config.model.n_experts=2",
    "--config.train.batch_size=16", "--config.train.epochs=10", "--config.train.log_every_steps=10",
    "--config.train.checkpoint_every_steps=20", "--config.train.keep_checkpoints=2",
    "--config.train.learning_rate=3e-3",
]


def tiny_config(cache_dir):
    config = default.get_config()
    config.data.update(synthetic_clips=3, synthetic_seconds=6.0, cache_dir=str(cache_dir))
    config.model.update(hidden_sizes=(16, 16), n_experts=2)
    config.train.update(batch_size=16, epochs=4, log_every_steps=10, checkpoint_every_steps=20, keep_checkpoints=2,
                        learning_rate=3e-3)
    return config


def test_batch_order_once_per_epoch_and_remainder_dropped():
    once0 = batch_order(103, 10, epoch=0, seed=1, shuffle="once")
    once5 = batch_order(103, 10, epoch=5, seed=1, shuffle="once")
    assert once0.shape == (10, 10) and len(set(once0.ravel())) == 100
    np.testing.assert_array_equal(once0, once5)
    per = [batch_order(103, 10, epoch=e, seed=1, shuffle="per_epoch") for e in (0, 1)]
    assert not np.array_equal(per[0], per[1])
    with pytest.raises(ValueError, match="train.shuffle"):
        batch_order(10, 2, epoch=0, seed=0, shuffle="always")


@pytest.mark.slow
def test_training_reduces_loss_and_writes_readable_events(tmp_path):
    config = tiny_config(tmp_path / "cache")
    config.train.epochs = 6
    result = train(config, tmp_path / "run", progress=False)
    assert result.val_loss < 0.8 * result.val_mean_predictor_loss
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == result.steps
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"histograms": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("train/loss", "val/loss", "train/learning_rate", "train/weight_decay", "gating/entropy",
                "gating/mean_coefficient/expert_0"):
        assert tag in tags["scalars"], tags["scalars"]
    losses = [e.value for e in events.Scalars("train/loss")]
    assert losses[-1] < losses[0]
    assert any(t.startswith("weights/layer0/alpha") for t in tags["histograms"])
    lr = [e.value for e in events.Scalars("train/learning_rate")]
    assert 0 < min(lr) <= max(lr) <= config.train.learning_rate * (1 + 1e-6)
    # Resuming the finished run runs no step: no training-window loss, the eval-mode loss named as such.
    again = train(config, tmp_path / "run", progress=False)
    assert math.isnan(again.train_loss) and math.isfinite(again.train_eval_loss)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["train_eval_loss"] == again.train_eval_loss
    assert math.isnan(result.train_eval_loss)


def test_gating_summary_equals_the_coefficients_of_the_full_forward_pass():
    config = tiny_config("unused")
    fns = ModelFunctions.of(build_model(config.model, seed=3))
    x = np.random.default_rng(0).normal(size=(50, 480)).astype(np.float32)
    _, omega = fns.predict(fns.params, x, return_gating=True)
    omega = np.asarray(omega, np.float64)
    summary = jax.jit(lambda p, x: gating_summary(fns, p, x))(fns.params, x)
    np.testing.assert_allclose(summary["entropy"], np.mean(-np.sum(omega * np.log(omega), axis=-1)), rtol=1e-5)
    np.testing.assert_allclose(summary["mean_coefficient"], omega.mean(axis=0), rtol=1e-5)
    scalars = gating_scalars(summary)
    assert set(scalars) == {"gating/entropy", "gating/mean_coefficient/expert_0", "gating/mean_coefficient/expert_1"}


@pytest.fixture(scope="module")
def cpu_step_64():
    """The training step of a 4-expert MANN with two 64-unit layers (batches of 16 of 64 rows): ``step``,
    ``fresh()`` (a new initial state), ``x``, ``y``, ``rows`` and ``tuned``, :func:`jit_train_step`'s
    program for the CPU compiled once for those shapes (shared by the two tests below)."""
    config = tiny_config("unused")
    config.model.update(hidden_sizes=(64, 64), n_experts=4)
    fns = ModelFunctions.of(build_model(config.model, seed=0))
    tx = make_optimizer(config.train, n_batches=4)
    step = make_train_step(fns, tx)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 480)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(64, 363)), jnp.float32)
    rows = jnp.arange(16, dtype=jnp.int32)
    fresh = lambda: jax.tree.map(jnp.copy, init_state(fns, tx, seed=0))
    tuned = jit_train_step(step, platform="cpu").lower(fresh(), x, y, rows).compile()
    return {"step": step, "fresh": fresh, "x": x, "y": y, "rows": rows, "tuned": tuned}


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the copies and the option are XLA:CPU's")
def test_cpu_train_step_updates_parameters_in_place_without_copies(cpu_step_64):
    # XLA's default copy insertion copies each donated expert weight the step reads and updates
    # (3 x 8 MB a step for the 8 x 512 model); jit_train_step's options drop those copies, and the
    # step computes the same numbers.
    fresh, x, y, rows, tuned = (cpu_step_64[k] for k in ("fresh", "x", "y", "rows", "tuned"))
    plain = jax.jit(cpu_step_64["step"], donate_argnums=0).lower(fresh(), x, y, rows).compile()

    def weight_copies(compiled):
        hlo = compiled.as_text()
        return [line for line in hlo.splitlines() if " copy(" in line and "alpha" in line.split(" copy(")[1]]

    assert len(weight_copies(plain)) == 3  # what the options exist for (one per expert layer)
    assert weight_copies(tuned) == []
    a, b = fresh(), fresh()
    for _ in range(3):  # the compiled programs themselves (a call through jax.jit would compile again)
        a, _ = plain(a, x, y, rows)
        b, _ = tuned(b, x, y, rows)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7), a.params, b.params)


def test_cpu_backend_computes_adams_two_moments_in_one_loop(cpu_step_64):
    # conftest.py calls configure_cpu_backend() as every command does, so the suite compiles the
    # programs the commands run: with multi-output fusion, one fusion writes both Adam moments of
    # each expert weight (a tuple of two alpha-shaped arrays); without it XLA:CPU writes them in two.
    xla_flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_extra_options" in xla_flags and "xla_cpu_use_multi_output_fusion" not in xla_flags:
        pytest.skip("XLA_FLAGS sets backend options of its own (configure_cpu_backend leaves them)")
    if cpu_backend_opted_out():
        pytest.skip(f"{OPT_OUT_ENV}=off: the suite runs without the CPU backend options")
    assert "xla_cpu_use_multi_output_fusion" in xla_flags
    hlo = cpu_step_64["tuned"].as_text()
    pairs = []
    for shape in ((4, 480, 64), (4, 64, 64), (4, 64, 363)):
        one = f"f32[{','.join(map(str, shape))}]"
        pairs += [line for line in hlo.splitlines() if f"= ({one}{{2,1,0}}, {one}{{2,1,0}}) fusion(" in line]
    assert len(pairs) == 3, pairs  # one per expert layer


def test_configure_cpu_backend_leaves_the_users_backend_options_alone(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_extra_options=xla_cpu_flatten_after_fusion")
    assert configure_cpu_backend() is False
    assert os.environ["XLA_FLAGS"] == "--xla_backend_extra_options=xla_cpu_flatten_after_fusion"


def test_configure_cpu_backend_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.setenv(OPT_OUT_ENV, "Off")
    assert configure_cpu_backend() is False
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1"
    monkeypatch.setenv(OPT_OUT_ENV, "no")
    with pytest.raises(ConfigError, match=f"{OPT_OUT_ENV} must be 'on' or 'off', got 'no'"):
        configure_cpu_backend()


@pytest.mark.slow
def test_a_bad_opt_out_value_ends_a_command_with_one_line():
    env = {**os.environ, OPT_OUT_ENV: "Maybe"}
    done = subprocess.run([sys.executable, "-m", "experiments.train", "--helpshort"], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: environment variable {OPT_OUT_ENV} must be 'on' or 'off', got 'Maybe'"]


def test_configure_cpu_backend_warns_once_jax_runs(monkeypatch):
    jnp.zeros(1).block_until_ready()  # the backend has started (it read XLA_FLAGS then)
    monkeypatch.delenv(OPT_OUT_ENV, raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    with pytest.warns(UserWarning, match="configure_cpu_backend before any JAX computation"):
        assert configure_cpu_backend() is False
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1"


@pytest.mark.slow
def test_configure_cpu_backend_adds_its_options_before_jax_starts():
    code = ("import os; from mann_jax.backend import configure_cpu_backend as c; "
            "print(c(), os.environ['XLA_FLAGS']); import jax, jax.numpy as j; "
            "f = jax.jit(lambda a, b: (a * 2 + b, a * 3 - b)); "
            "print(f.lower(j.ones(99), j.ones(99)).compile().as_text().count('(f32[99]{0}, f32[99]{0}) fusion('))")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", OPT_OUT_ENV)} | {"JAX_PLATFORMS": "cpu",
                                                                        "XLA_FLAGS": "--xla_cpu_ftz=false"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, count = out.stdout.splitlines()
    assert first == "True --xla_cpu_ftz=false --xla_backend_extra_options=xla_cpu_use_multi_output_fusion"
    assert count == "1"  # the two outputs come out of one loop


def _run_train(workdir, cache, *extra, wait=True):
    cmd = [sys.executable, "-m", "experiments.train", "--config", "configs/default.py", f"--workdir={workdir}",
           f"--config.data.cache_dir={cache}", *TINY, *extra]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
        return out
    return proc


def _final_params(workdir, cache):
    config = tiny_config(cache)
    fns = ModelFunctions.of(build_model(config.model, seed=config.train.seed))
    n_batches = len(build_dataset(config.data, progress=False).arrays("train")[0]) // config.train.batch_size
    tx = make_optimizer(config.train, n_batches=n_batches)
    ckpt = Checkpoints(Path(workdir) / "checkpoints", save_every=20, keep=2)
    state, meta = ckpt.restore(init_state(fns, tx, seed=config.train.seed))
    return int(state.step), state.params


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    cache = tmp_path / "cache"
    _run_train(tmp_path / "straight", cache)
    straight_step, straight = _final_params(tmp_path / "straight", cache)

    killed = tmp_path / "killed"
    proc = _run_train(killed, cache, "--config.train.epochs=40", wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in (killed / "checkpoints").glob("[0-9]*") if p.name.isdigit()]
        if steps and max(steps) >= 40:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_step, _ = _final_params(killed, cache)
    assert 0 < killed_step < straight_step
    # Resume with the original number of epochs: the run continues from the checkpoint.
    out = _run_train(killed, cache)
    resumed_step, resumed = _final_params(killed, cache)
    assert resumed_step == straight_step, out
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_refuses_a_different_setup(tmp_path):
    config = tiny_config(tmp_path / "cache")
    config.train.update(epochs=1, batch_size=64)  # 7 steps: the fast suite's run of train() from start to end
    train(config, tmp_path / "run", progress=False)
    config.model.hidden_sizes = (32, 32)
    with pytest.raises(CheckpointError, match="different config"):
        train(config, tmp_path / "run", progress=False)


@pytest.mark.parametrize("override, says", [
    ("--config.train.epocs=3", ["--config.train.epocs", "epochs"]),  # a key typo: ml_collections' suggestion
    ("--config.train.batch_size=-4", ["train.batch_size", ">= 1", "-4"]),  # a value out of range
])
@pytest.mark.slow
def test_config_typo_is_a_clear_error(tmp_path, override, says):
    cmd = [sys.executable, "-m", "experiments.train", "--config", "configs/default.py", f"--workdir={tmp_path / 'w'}",
           override]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out.stderr, out.stderr[-2000:]
    for word in says:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "w").exists()  # refused before anything was written


def test_config_values_out_of_range_are_named_before_any_work(tmp_path):
    from mann_jax.config_errors import ConfigError

    for key, value, name in (("epochs", 0, "train.epochs"), ("batch_size", -4, "train.batch_size"),
                             ("learning_rate", -1e-3, "train.learning_rate")):
        config = tiny_config(tmp_path / "cache")
        config.train[key] = value
        with pytest.raises(ConfigError, match=name):
            train(config, tmp_path / f"run_{key}", progress=False)
        assert not (tmp_path / f"run_{key}").exists()
    config = tiny_config(tmp_path / "cache")
    config.data.source = "bhv"
    with pytest.raises(ConfigError, match="data.source"):
        train(config, tmp_path / "run_source", progress=False)


def test_a_workdir_that_is_a_file_is_a_clear_error(tmp_path):
    from mann_jax.errors import TrainingError

    config = tiny_config(tmp_path / "cache")
    config.train.epochs = 1
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(TrainingError, match="is a file, not a folder"):
        train(config, tmp_path / "afile", progress=False)
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.slow
def test_resuming_with_fewer_epochs_than_ran_is_refused_and_leaves_the_run_alone(tmp_path):
    from mann_jax.errors import TrainingError

    config = tiny_config(tmp_path / "cache")
    config.train.epochs = 2
    train(config, tmp_path / "run", progress=False)
    before = {name: (tmp_path / "run" / name).read_bytes() for name in ("summary.json", "config.json")}
    config.train.epochs = 1
    with pytest.raises(TrainingError, match=r"past the .* steps of this config .* train.epochs >= 2"):
        train(config, tmp_path / "run", progress=False)
    for name, data in before.items():
        assert (tmp_path / "run" / name).read_bytes() == data, name


def test_run_loop_stops_before_saving_weights_a_step_made_non_finite(tmp_path):
    # A fake step: the weights turn NaN at step 7 while every reported loss stays finite (the loss of
    # a step is computed before its update). Saves every 5 steps: 5 is written, 10 must not be.
    from mann_jax.errors import TrainingError
    from mann_jax.loop import run_loop, steps_one_after_another

    class Bar:
        def update(self, n):
            pass

        def set_postfix(self, d):
            pass

    def step(state, rows, update_masks=True):
        w = state["w"] * (np.nan if int(state["n"]) == 6 else 1.0)
        return {"w": w, "n": state["n"] + 1}, {"loss": np.float32(1.0)}

    ckpt = Checkpoints(tmp_path / "checkpoints", save_every=5, keep=3, background=False)
    state = {"w": jnp.ones(4, jnp.float32), "n": jnp.array(0, jnp.int32)}
    with pytest.raises(TrainingError, match=r"diverged by step 10: non-finite .* up to step 5 .* intact"):
        run_loop(state, steps_one_after_another(step), start_step=0, total_steps=20, n_batches=20, log_every=100,
                 samples_per_step=1,
                 rows_for_epoch=lambda e: [None] * 20, checkpoints=ckpt, meta_at=lambda d: {"step": d},
                 on_log=lambda *a: {}, on_epoch_end=lambda *a: None, bar=Bar())
    assert ckpt.latest_step() == 5
    restored, _ = ckpt.restore({"w": jnp.zeros(4, jnp.float32), "n": jnp.array(0, jnp.int32)})
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.ones(4, np.float32))


@pytest.mark.slow  # trains until it diverges (test_run_loop_stops_before_saving_... checks the loop in-process)
def test_a_diverging_run_never_checkpoints_non_finite_weights(tmp_path):
    # The step that makes the weights non-finite still reports the finite loss of the weights before
    # it; the check before each save must catch the weights themselves.
    from mann_jax.errors import TrainingError

    config = tiny_config(tmp_path / "cache")
    config.train.update(epochs=4, learning_rate=1e6, checkpoint_every_steps=5, log_every_steps=1000)
    with pytest.raises(TrainingError, match="diverged") as info:
        train(config, tmp_path / "run", progress=False)
    ckpt = Checkpoints(tmp_path / "run" / "checkpoints", save_every=5, keep=2)
    if ckpt.latest_step() is None:
        assert "no checkpoint was written" in str(info.value)
    else:
        assert f"up to step {ckpt.latest_step()}" in str(info.value)
        fns = ModelFunctions.of(build_model(config.model, seed=config.train.seed))
        n_batches = len(build_dataset(config.data, progress=False).arrays("train")[0]) // config.train.batch_size
        state, _ = ckpt.restore(init_state(fns, make_optimizer(config.train, n_batches=n_batches), seed=0))
        assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.params))


@pytest.mark.slow
def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    config = tiny_config(tmp_path / "cache")
    config.train.epochs = 1
    train(config, tmp_path / "run", progress=False)
    step_dir = max((tmp_path / "run" / "checkpoints").glob("[0-9]*"), key=lambda p: int(p.name))
    for f in (step_dir / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=rf"checkpoints/{step_dir.name}: cannot restore") as info:
        train(config, tmp_path / "run", progress=False)
    message = str(info.value)
    assert "\n" not in message and len(message) < 700, message  # one line, not TensorStore's whole spec
    others = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").glob("[0-9]*") if p != step_dir)
    assert others and f"other steps here: {', '.join(map(str, others))}" in message


@pytest.mark.slow
def test_training_with_one_cycle_pruning_reaches_the_target(tmp_path):
    config = tiny_config(tmp_path / "cache")
    config.train.epochs = 3
    config.pruning.update(target_sparsity=0.9, schedule="one_cycle", start=0.0, end=0.8)
    train(config, tmp_path / "run", progress=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    params = ModelFunctions.of(build_model(config.model, seed=0)).params
    n = sum(params[f"layer{i}"]["alpha"].size for i in range(3))
    exact = round(0.9 * n) / n  # exactly round(s * N) zeros
    assert summary["sparsity"]["overall"] == pytest.approx(exact, abs=1e-12)
    assert summary["params_sparsity"]["overall"] >= exact  # pruned weights are exactly zero
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    actual = [e.value for e in events.Scalars("sparsity/overall")]
    scheduled = [e.value for e in events.Scalars("sparsity/scheduled")]
    assert actual == sorted(actual) and actual[0] < 0.5 and actual[-1] == pytest.approx(exact, abs=1e-7)
    assert scheduled[-1] == pytest.approx(0.9, abs=1e-6)
    assert "train/loss" in events.Tags()["scalars"]


def test_bad_pruning_settings_are_clear_errors(tmp_path):
    config = tiny_config(tmp_path / "cache")
    config.train.epochs = 1
    for key, value, message in (("target_sparsity", 1.0, "target_sparsity"), ("start", 0.9, "window"),
                                ("schedule", "cubic", "unknown pruning schedule")):
        bad = tiny_config(tmp_path / "cache")
        bad.train.epochs = 1
        bad.pruning.target_sparsity = 0.5
        bad.pruning[key] = value
        if key == "start":
            bad.pruning.end = 0.5
        with pytest.raises(ValueError, match=message):
            train(bad, tmp_path / f"run_{key}", progress=False)


def test_workdirs_from_before_matmul_precision_still_resume(tmp_path: Path) -> None:
    # A config saved before model.matmul_precision existed ran float32 products ("highest"):
    # resuming it with that value is allowed, with another value refused.
    current = default.get_config().to_dict()
    saved = json.loads(json.dumps(current, default=str))
    del saved["model"]["matmul_precision"]
    check_resumable(saved, current, tmp_path)
    current["model"]["matmul_precision"] = "default"
    with pytest.raises(CheckpointError, match="model.matmul_precision"):
        check_resumable(saved, current, tmp_path)


def test_run_loop_hands_the_steps_between_two_events_to_one_call(tmp_path):
    # Logs every 4 steps, epochs of 6, checkpoints every 5, 14 steps: the calls end exactly where
    # the loop has something to do, run in order, and the logged mean is the window's mean loss.
    from mann_jax.loop import run_loop

    calls, logs = [], []

    def steps(state, rows_seq, update_masks):
        calls.append((list(rows_seq), list(update_masks)))
        return state + len(rows_seq), float(sum(rows_seq))  # loss of a step = its row index

    class Bar:
        def update(self, n):
            pass

        def set_postfix(self, d):
            pass

    ckpt = Checkpoints(tmp_path / "checkpoints", save_every=5, keep=5, background=False)
    state, last = run_loop(
        0, steps, start_step=0, total_steps=14, n_batches=6, log_every=4, samples_per_step=1,
        rows_for_epoch=lambda e: list(range(6 * e, 6 * e + 6)), checkpoints=ckpt,
        meta_at=lambda d: {}, on_log=lambda done, step, mean, rate, st: logs.append((done, float(mean))) or {},
        on_epoch_end=lambda *a: None, bar=Bar(), checkpoint_state=lambda s: {"n": jnp.asarray(s)},
        update_masks_at=lambda i: i % 3 == 0)
    assert [rows for rows, _ in calls] == [[0, 1, 2, 3], [4], [5], [6, 7], [8, 9], [10, 11], [12, 13]]
    assert [flags for _, flags in calls] == [[i % 3 == 0 for i in rows] for rows, _ in calls]
    assert state == 14 and ckpt.all_steps() == [5, 10, 14]
    assert logs == [(4, 1.5), (6, 4.5), (8, 6.5), (12, 9.5), (14, 12.5)] and float(last) == 12.5
