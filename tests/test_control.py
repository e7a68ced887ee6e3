"""Controller: exact replay under an oracle, batching/vmap equivalence, scenarios, errors, and a
briefly trained model that walks on the floor where it is told to."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from mann_jax.checkpoint import CheckpointError
from mann_jax.control import (
    SCENARIOS,
    ControlSettings,
    initial_state_from_input,
    load_params,
    make_scenario,
    network_input,
    pad,
    replay_errors,
    replay_from_motion,
    replay_from_rows,
    rollout,
    simulate,
    stack,
    stack_params,
    stack_scenarios,
    start_row,
)
from mann_jax.control.render import mp4_writer_available
from mann_jax.data import layout
from mann_jax.data.dataset import build_dataset, clip_rows
from mann_jax.data.normalisation import Normalisation
from mann_jax.data.skeleton import Motion
from mann_jax.data.synthetic import generate_default_clips
from mann_jax.evaluate import foot_skating, paw_positions, root_speed_tracking
from mann_jax.train import ModelFunctions, build_model, train

FPS = 60.0


@pytest.fixture(scope="module")
def synthetic():
    """Feature rows of one procedural clip (original, not mirrored) and their normalisation."""
    clip = generate_default_clips(seed=0, num_clips=1, seconds_per_clip=4.0)[0]
    config = default.get_config().data
    rows = clip_rows(clip.motion, config, labels=clip.styles)
    keep = ~rows.mirrored
    x, y = rows.inputs[keep], rows.outputs[keep]
    return clip.motion, config, x, y, Normalisation.fit(x, y)


def tiny_fns(hidden=16, experts=2, seed=0):
    config = default.get_config()
    config.model.update(hidden_sizes=(hidden, hidden), n_experts=experts)
    return ModelFunctions.of(build_model(config.model, seed=seed))


# ----------------------------------------------------------------------------- runtime plumbing


def test_oracle_replay_reproduces_the_clip(synthetic):
    """With a predictor that returns the clip's own outputs, the runtime rebuilds the clip."""
    motion, _, x, y, norm = synthetic
    replay = replay_from_rows(x, y, fps=FPS, name=motion.name)
    y_norm = jnp.asarray(norm.normalise_outputs(y), jnp.float32)

    def oracle(_, t):
        return y_norm[t], jnp.zeros(1)

    settings = ControlSettings(damp_root_when_idle=False, record_inputs=True)
    to32 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)  # noqa: E731
    result = jax.jit(lambda i, c: simulate(oracle, to32(norm), i, c, fps=FPS, settings=settings))(
        to32(replay.initial), to32(replay.control))
    errors = replay_errors(result, replay)
    assert errors.root.max() < 1e-3 and errors.heading.max() < 0.05
    assert errors.world.max() < 2e-3 and errors.local.max() < 2e-3
    # The inputs the runtime builds are the dataset's features: positions, directions, styles and
    # bones exactly; trajectory velocities differ slightly (runtime: root steps; data: central
    # differences of the smoothed root). Past samples are exact once they come from the rollout.
    inputs = np.asarray(result.inputs)
    names = layout.input_column_names()
    exact = [i for i, n in enumerate(names) if ".vel." not in n or n.startswith("bone")]
    np.testing.assert_allclose(inputs[layout.PAST_FRAMES:, exact], x[layout.PAST_FRAMES:, exact], atol=3e-3)
    vel = [i for i, n in enumerate(names) if n.startswith("traj") and ".vel." in n]
    assert np.abs(inputs[:, vel] - x[:, vel]).max() < 0.1


def test_initial_state_inputs_match_the_row(synthetic):
    _, _, x, _, _ = synthetic
    state = jax.tree.map(jnp.asarray, initial_state_from_input(x[0]))
    rebuilt = np.asarray(network_input(state))
    np.testing.assert_allclose(rebuilt[layout.INPUT_BONES], x[0, layout.INPUT_BONES], atol=1e-4)
    np.testing.assert_allclose(rebuilt[layout.INPUT_TRAJECTORY], x[0, layout.INPUT_TRAJECTORY], atol=1e-4)
    with pytest.raises(ValueError, match="480"):
        initial_state_from_input(x[0, :100])


def test_batched_and_model_vmapped_rollouts_equal_single_rollouts(synthetic):
    _, _, x, _, norm = synthetic
    fns = tiny_fns()
    scenarios = [make_scenario("walk", seconds=0.4), make_scenario("turn90", before_seconds=0.2, after_seconds=0.2),
                 make_scenario("sit", idle_seconds=0.1, hold_seconds=0.2)]
    control, _ = stack_scenarios(scenarios)
    starts = [initial_state_from_input(x[i]) for i in (0, 40, 80)]
    batched = rollout(fns, fns.params, norm, stack(starts), control)
    assert batched.bones.shape == (3, 24, layout.NUM_BONES, 3)
    assert batched.gating.shape == (3, 24, 2)
    for i, (s, start) in enumerate(zip(scenarios, starts)):
        single = rollout(fns, fns.params, norm, start, pad(s, 24).control)
        np.testing.assert_allclose(batched.bones[i], single.bones, atol=1e-5)
        np.testing.assert_allclose(batched.root_positions[i], single.root_positions, atol=1e-5)
    other = jax.tree.map(lambda a: a * 1.5, fns.params)
    both = rollout(fns, stack_params([fns.params, other]), norm, stack(starts), control, models_axis=True)
    assert both.bones.shape == (2, 3, 24, layout.NUM_BONES, 3)
    np.testing.assert_allclose(both.bones[0], batched.bones, atol=1e-5)
    np.testing.assert_allclose(both.bones[1], rollout(fns, other, norm, stack(starts), control).bones, atol=1e-5)
    assert not np.allclose(both.bones[0], both.bones[1])
    from mann_jax.control.render import tracks_from_rollout

    tracks = tracks_from_rollout(both, [f"{m}/{s.name}" for m in ("a", "b") for s in scenarios])
    assert len(tracks) == 6 and tracks[4].title == "b/turn90"
    np.testing.assert_array_equal(tracks[4].bones, both.bones[1, 1])
    with pytest.raises(ValueError, match="6 tracks"):
        tracks_from_rollout(both, ["a"])
    # An expert mask reaches the network: switching expert 1 off puts all weight on expert 0.
    masked = rollout(fns, fns.params, norm, starts[0], pad(scenarios[0], 24).control, expert_mask=jnp.array([1., 0.]))
    np.testing.assert_allclose(masked.gating[:, 0], 1.0, atol=1e-6)


def test_mismatched_params_and_controls_are_clear_errors(synthetic):
    _, _, x, _, norm = synthetic
    fns = tiny_fns()
    start = initial_state_from_input(x[0])
    control = make_scenario("walk", seconds=0.1).control
    wrong = tiny_fns(hidden=8).params
    with pytest.raises(ValueError, match="do not match the model config.*layer0/alpha"):
        rollout(fns, wrong, norm, start, control)
    with pytest.raises(ValueError, match="model axis"):
        rollout(fns, fns.params, norm, start, control, models_axis=True)
    with pytest.raises(ValueError, match="do not match"):
        stack_params([fns.params, wrong])
    with pytest.raises(ValueError, match="control.styles"):
        rollout(fns, fns.params, norm, start, control._replace(styles=control.styles[:, :3]))
    with pytest.raises(ValueError, match="initial state"):
        rollout(fns, fns.params, norm, stack([start, start]), stack([control] * 3))


def test_too_short_clip_is_a_clear_error(synthetic):
    motion, config, x, y, _ = synthetic
    short = Motion(name="short", skeleton=motion.skeleton, local_rotations=motion.local_rotations[:100],
                   local_translations=motion.local_translations[:100], frame_time=motion.frame_time)
    with pytest.raises(ValueError, match="short: clip has 100 frames; replay needs at least 122"):
        replay_from_motion(short, config)
    with pytest.raises(ValueError, match="no feature rows"):
        replay_from_rows(x[:0], y[:0], fps=FPS)
    with pytest.raises(ValueError, match="consecutive"):
        replay_from_rows(x[:10], y[:10], fps=FPS, frames=np.arange(0, 20, 2))
    replay = replay_from_motion(motion, config)
    assert replay.reference_bones.shape == (len(x), layout.NUM_BONES, 3)


# ----------------------------------------------------------------------------- scenarios


def test_scenarios_are_reproducible_and_parameterised():
    for name in SCENARIOS:
        a, b = make_scenario(name), make_scenario(name)
        assert a.name == name and a.num_frames > 0
        for u, v in zip(a.control[:3], b.control[:3]):
            np.testing.assert_array_equal(u, v)
        np.testing.assert_allclose(a.control.styles.sum(-1), 1.0)
    t = make_scenario("turn180", speed=1.5, before_seconds=1.0)
    k = t.events["turn"]
    assert k == 60
    assert t.control.heading[k - 1] == 0.0 and t.control.heading[k] == pytest.approx(np.pi)
    np.testing.assert_allclose(t.commanded_speed, 1.5)
    stop = make_scenario("trot_stop")
    assert stop.commanded_speed[stop.events["stop"] - 1] == 2.0 and stop.commanded_speed[-1] == 0.0
    assert stop.control.styles[-1, layout.STYLES.index("Idle")] == 1.0
    assert make_scenario("sit").control.styles[-1, layout.STYLES.index("Sit")] == 1.0
    j = make_scenario("jump")
    assert j.control.styles[j.events["jump"], layout.STYLES.index("Jump")] == 1.0
    with pytest.raises(ValueError, match="unknown scenario 'dance'; expected one of walk, run, turn90, turn180, trot"):
        make_scenario("dance")
    with pytest.raises(ValueError, match="no parameter.*'sped'"):
        make_scenario("walk", sped=1.0)
    with pytest.raises(ValueError, match="must end before"):
        make_scenario("jump", jump_at_seconds=3.8)
    control, speeds = stack_scenarios([make_scenario("walk", seconds=1.0), make_scenario("run", seconds=2.0)])
    assert control.heading.shape == (2, 120) and speeds[0, -1] == 1.0


# ----------------------------------------------------------------------------- a briefly trained model


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dog_bvh_dir):
    """A small MANN trained ~10 s on one real walking clip (D1_007_KAN01_001)."""
    tmp = tmp_path_factory.mktemp("one_clip")
    clips = tmp / "clips"
    clips.mkdir()
    os.symlink(dog_bvh_dir / "D1_007_KAN01_001.bvh", clips / "D1_007_KAN01_001.bvh")
    config = default.get_config()
    config.data.update(source="bvh", path=str(clips), cache_dir=str(tmp / "cache"))
    config.model.update(hidden_sizes=(64, 64), n_experts=4, keep_prob=1.0)
    config.train.update(epochs=40, learning_rate=1e-3, log_every_steps=10_000, checkpoint_every_steps=100_000,
                        histograms_every_epochs=1000)
    result = train(config, tmp / "run", progress=False)
    dataset = build_dataset(config.data, progress=False)
    return config, result, dataset, tmp / "run"


@pytest.mark.slow
def test_trained_model_walks_straight_on_the_floor(trained):
    _, result, dataset, _ = trained
    scenario = make_scenario("walk", speed=1.0, seconds=6.0)
    start = initial_state_from_input(dataset.inputs[start_row(dataset, style="Move")])
    r = rollout(result.fns, result.state.params, dataset.normalisation, start, scenario.control)
    bones = np.asarray(r.bones)
    paws = paw_positions(bones)
    lowest = paws[..., 1].min(axis=-1)
    # On the floor: the lowest paw within [-3, +5] cm of y = 0 on nearly every frame (mocap: 0-2 cm).
    assert np.mean((lowest > -0.03) & (lowest < 0.05)) > 0.9
    assert np.median(paws[..., 1]) < 0.05
    hips = bones[:, layout.BONES.index("Hips"), 1]
    assert 0.35 < np.median(hips) < 0.6  # the dog's standing hips: ~0.46 m
    # Follows the command: forward along +z (heading 0) at roughly 1 m/s, little sideways drift.
    final = np.asarray(r.root_positions[-1])
    assert 0.75 * 6.0 < final[2] < 1.25 * 6.0
    assert abs(final[0]) < 0.15 * final[2]
    tracking = root_speed_tracking(np.asarray(r.root_positions), scenario.commanded_speed, fps=FPS, skip_frames=60)
    assert abs(float(tracking.mean_speed) - 1.0) < 0.2
    facing = np.asarray(r.root_directions[-1])
    assert abs(np.degrees(np.arctan2(facing[0], facing[2]))) < 15.0
    assert float(foot_skating(paws, fps=FPS).cm_per_frame) < 0.5
    assert np.all(np.isfinite(bones))


@pytest.mark.slow
def test_trained_model_replays_its_clip(trained):
    _, result, dataset, _ = trained
    from mann_jax.control import replay_from_dataset

    replay = replay_from_dataset(dataset, "D1_007_KAN01_001")
    r = rollout(result.fns, result.state.params, dataset.normalisation, replay.initial, replay.control)
    errors = replay_errors(r, replay)
    assert errors.world[0] < 0.02  # one step of a model trained for seconds: within 2 cm of the clip
    # Posture relative to the root within 10 cm of the clip's on average: the trajectory drives the
    # dog, not the clip's footfall timing, so the paws run out of phase (the authors' network: 7 cm).
    assert errors.local.mean() < 0.1


@pytest.mark.slow
def test_load_params_from_checkpoint_and_shape_mismatch(trained, tmp_path):
    config, result, _, workdir = trained
    params = load_params(workdir, result.fns)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(result.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = config.model.copy_and_resolve_references()
    other.hidden_sizes = (32, 32)
    with pytest.raises(CheckpointError, match="do not match the model config"):
        load_params(workdir, ModelFunctions.of(build_model(other, seed=0)))
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        load_params(tmp_path / "nothing", result.fns)
    # A damaged checkpoint (every file of its state garbled) names its folder.
    import shutil

    damaged = tmp_path / "damaged" / "checkpoints"
    shutil.copytree(workdir / "checkpoints", damaged)
    step_dir = max(damaged.glob("[0-9]*"), key=lambda p: int(p.name))
    for f in (step_dir / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=rf"checkpoints/{step_dir.name}: cannot restore checkpoint"):
        load_params(damaged, result.fns)


_RESAVE_ON_FOUR_DEVICES = """
import jax, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from configs import default
from mann_jax.checkpoint import Checkpoints
from mann_jax.control.rollout import load_params
from mann_jax.train import ModelFunctions, build_model

assert len(jax.devices()) == 4
config = default.get_config()
config.model.update(hidden_sizes=(64, 64), n_experts=4, keep_prob=1.0)
params = load_params({workdir!r}, ModelFunctions.of(build_model(config.model, seed=0)))  # saved on 1 device
mesh = Mesh(np.array(jax.devices()), ("d",))
spec = lambda a: P("d") if a.ndim and a.shape[0] % 4 == 0 else P()  # experts split over the devices
sharded = jax.tree.map(lambda a: jax.device_put(a, NamedSharding(mesh, spec(a))), params)
assert any(len(a.sharding.device_set) == 4 for a in jax.tree.leaves(sharded))
checkpoints = Checkpoints({out!r}, save_every=1, keep=1)
checkpoints.save(7, {{"params": sharded}}, {{}})
checkpoints.close()
"""


@pytest.mark.slow
def test_load_params_reads_checkpoints_written_on_other_devices(trained, tmp_path):
    # A run trained on a GPU, or a model sharded over several devices, must load on this 1-device
    # CPU process (a rollout or an export on a laptop): Orbax refuses another topology by default.
    import subprocess
    import sys
    from pathlib import Path

    _, result, _, workdir = trained
    code = _RESAVE_ON_FOUR_DEVICES.format(workdir=str(workdir), out=str(tmp_path / "checkpoints"))
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(jax.devices()) == 1
    params = load_params(tmp_path, result.fns)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(result.state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------- rendering and the command


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")  # ffmpeg / the command: fork+exec
def test_renderer_writes_gif_mp4_strip_and_plot(synthetic, tmp_path):
    import imageio.v3 as iio

    from mann_jax.control.render import (
        Track,
        mp4_writer_available,
        plot_paws,
        render_frames,
        render_strip,
        write_gif,
        write_mp4,
        write_videos,
    )

    motion, _, x, y, _ = synthetic
    replay = replay_from_rows(x[:21], y[:21], fps=FPS)
    track = Track(bones=replay.reference_bones, root_positions=replay.reference_root_positions,
                  root_directions=replay.reference_root_directions, title="mocap")
    frames = render_frames([track, track], fps=FPS, stride=2, width=160, height=128)
    assert frames.shape == (11, 128, 320, 3) and frames.dtype == np.uint8
    assert frames.std() > 0  # something was drawn
    write_gif(frames, tmp_path / "a.gif", fps=30)
    assert iio.imread(tmp_path / "a.gif").shape == (11, 128, 320, 3)
    if mp4_writer_available():  # the pinned environment has imageio-ffmpeg; some images lack it
        write_mp4(frames, tmp_path / "a.mp4", fps=30)
        mp4 = iio.imread(tmp_path / "a.mp4")
        assert mp4.shape[0] == 11 and mp4.shape[1:3] == (128, 320)
        assert write_videos(frames, tmp_path, "b", fps=30) == ["b.gif", "b.mp4"]
        assert iio.imread(tmp_path / "b.mp4").shape[0] == 11
    moments = render_strip([track], tmp_path / "strip.png", fps=FPS, columns=3, width=120, height=96)
    assert moments == [0, 10, 20] and iio.imread(tmp_path / "strip.png").shape[:2] == (96, 360)
    plot_paws([track], tmp_path / "paws.png", fps=FPS)
    assert (tmp_path / "paws.png").stat().st_size > 0
    with pytest.raises(ValueError, match="same number of frames"):
        render_frames([track, dataclasses.replace(track, bones=track.bones[:5])], fps=FPS)


def test_without_the_mp4_writer_videos_fall_back_to_gif_and_write_mp4_says_why(monkeypatch, tmp_path, capsys):
    import imageio.v3 as iio

    from mann_jax.control import render

    # As on a machine where imageio-ffmpeg is missing: imageio would otherwise pick its TIFF plugin
    # for the ".mp4" name and fail with "unexpected keyword argument 'fps'".
    monkeypatch.setattr(render, "mp4_writer_available", lambda: False)
    frames = np.arange(3, dtype=np.uint8)[:, None, None, None] * np.full((3, 32, 48, 3), 60, np.uint8)
    with pytest.raises(RuntimeError, match=r"a\.mp4: MP4 needs the imageio-ffmpeg package"):
        render.write_mp4(frames, tmp_path / "a.mp4", fps=10)
    assert render.write_videos(frames, tmp_path, "v", fps=10) == ["v.gif"]
    assert iio.imread(tmp_path / "v.gif").shape == (3, 32, 48, 3) and not (tmp_path / "v.mp4").exists()
    assert "skipped" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")  # ffmpeg / the command: fork+exec
@pytest.mark.slow
def test_rollout_command_writes_video_metrics_and_plot(trained, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    import imageio.v3 as iio

    config, _, _, workdir = trained
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "experiments.rollout", "--config", "configs/dog.py",
           f"--config.data.path={config.data.path}", f"--config.data.cache_dir={config.data.cache_dir}",
           "--config.model.hidden_sizes=(64,64)", "--config.model.n_experts=4", "--config.model.keep_prob=1.0",
           f"--checkpoint={workdir}", "--scenario=turn90", "--param=before_seconds=0.5", "--param=after_seconds=0.5",
           "--start_style=Move", "--stride=3", f"--out={out}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scenario"]["name"] == "turn90" and metrics["scenario"]["frames"] == 60
    model = metrics["models"][0]
    assert model["finite"] and model["skating_cm_per_frame"] >= 0
    assert metrics["ground_truth_skating"]["clips"] == 1
    assert iio.imread(out / "rollout.gif").shape[0] == 20 == metrics["video_frames"]
    if mp4_writer_available():  # the pinned environment has imageio-ffmpeg; some images lack it
        assert iio.imread(out / "rollout.mp4").shape[0] == 20 and "rollout.mp4" in metrics["files"]
    else:
        assert "rollout.mp4" not in metrics["files"] and "skipped" in proc.stderr
    assert (out / "paws.png").stat().st_size > 0 and (out / "strip.png").stat().st_size > 0
    bad = subprocess.run(cmd[:-4] + ["--scenario=dance", f"--out={out}"], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "unknown scenario 'dance'" in bad.stderr
