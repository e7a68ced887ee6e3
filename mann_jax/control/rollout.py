"""Autoregressive MANN controller: the runtime of AI4Animation's ``BioAnimation_Wolf.cs`` in JAX.

Per frame, for each character (everything in metres, m/s, degrees; y up; root-local x = left,
z = facing, as :mod:`mann_jax.data.layout`):

1. **Trajectory control** (``PredictTrajectory``). The command of the frame (a desired heading,
   a desired velocity ``move`` in the heading's frame, six style weights) is smoothed into a
   target: ``heading ← heading + g·(command − heading)``, ``target_velocity ← lerp(target_velocity,
   R(heading)·move, g)`` with ``g = 0.25`` while a command is active and ``0.05`` otherwise, and a
   trajectory-correction weight ``c ← lerp(c, [moving or turning], g)``. The 50 future points
   ``i = 1..50`` (``w = i/50``) are blended toward the target, as the original:

   * position increments: ``Δp_i ← lerp(Δp_i, target_velocity·dt, 1 − (1 − w)^0.75)``, re-summed
     from the current root;
   * directions: ``d_i ← lerp(d_i, target_direction, 1 − (1 − w)^1.25)`` (renormalised);
   * velocities: ``v_i ← lerp(v_i, target_velocity, w)``;
   * styles of the current and future points: ``s_i ← lerp(s_i, command, τ + w(1 − τ))`` with the
     original's style transition ``τ = 0.1``, renormalised to sum 1; speeds
     ``← lerp(speed, |target_velocity|, g)``.

2. **Network input** (``Animate``). The 12 trajectory samples (points 0, 10, …, 110 of the 111
   points: 60 past frames, the current root, 50 future points over the next second) relative to
   the current root, and the
   posture of the previous frame relative to the previous root (point 59) — exactly the columns of
   :mod:`mann_jax.data.features`. It is normalised with the dataset's
   :class:`~mann_jax.data.normalisation.Normalisation`, run through the MANN in evaluation mode
   (no dropout) and denormalised.

3. **Root update.** The past points shift by one; the root moves by
   ``u·(dx, dθ, dz)/fps`` in its own frame, where the original damps root motion when idle or
   resting: ``u = min((1 − Idle)^0.25, (1 − Sit − Stand − Lie)^0.5)`` (styles of the current point).
   The future points move with the root, then blend toward the network's predicted future
   trajectory (samples 6..11 relative to the NEXT root, linearly interpolated to every frame):
   ``p ← lerp(p, lerp(p + v/fps, p_net, 0.5), c)``, likewise directions and velocities.

4. **Posture.** The predicted bones (relative to the current root) go to world space and blend
   with the previous posture advanced by the predicted velocity:
   ``p_bone ← lerp(p_bone + v_bone/fps, p_net, 0.5)``; forward/up axes and velocities are taken as
   predicted. These world positions are the output of the frame.

**Replay.** When a :class:`Control` carries ``future`` (the clip's own future trajectory samples
relative to its root, i.e. the input columns of samples 6..11), step 1 is replaced by writing that
trajectory onto the character's current root: the character is driven along the clip's path
shape, its past trajectory and posture are its own, and the root still moves by the network's
root update (so drift is measured, not hidden).

**Simplified relative to the original** (stated, not hidden): no IK / foot locking
(``MotionEditing``), no terrain (flat floor at y = 0, as the original's "flat terrain" branch);
commands are explicit headings and velocities rather than keys, so the keyboard logic (``PoolBias``
speed per style, the PID speed controller, curvature-dependent jump rules, the 1 s intro walk) is
absent; the target heading is smoothed as an ANGLE (the original lerps direction vectors, which
degenerates for a 180° command). The future position blend uses ``dt = 1/50`` per point as the
original (``future_step="original"``: the 50 future points span one second, the span of the data's
future samples).

**Vectorisation.** :func:`simulate` is ONE character under any predictor, a ``lax.scan`` over
frames. :func:`rollout` jits it, ``vmap``-ed over characters (scenarios) and, with
``models_axis=True``, over a stacked parameter pytree with a leading model axis, so a whole sweep
is rolled out in one call.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from mann_jax.checkpoint import CheckpointError
from mann_jax.data import layout
from mann_jax.data.normalisation import Normalisation
from mann_jax.model import apply, check_params

Params = dict[str, Any]

# The runtime's trajectory (BioAnimation_Wolf.cs): 111 points, a sample every POINT_DENSITY points. The
# 60 past points are past frames (1/60 s apart); the 50 future points span the next second (1/50 s
# apart), so samples fall at -1 s .. -1/6 s every 1/6 s and 0.2 s .. 1 s every 0.2 s: the exporter's
# :data:`layout.SAMPLE_OFFSETS`.
POINT_DENSITY = 10
ROOT_POINT = POINT_DENSITY * layout.CURRENT_SAMPLE  # 60: the current root
FUTURE = POINT_DENSITY * (layout.NUM_TRAJECTORY_SAMPLES - 1 - layout.CURRENT_SAMPLE)  # 50 future points
NUM_POINTS = ROOT_POINT + FUTURE + 1  # 111
SAMPLE_POINTS = np.arange(layout.NUM_TRAJECTORY_SAMPLES) * POINT_DENSITY

IDLE, MOVE, JUMP, SIT, STAND, LIE = range(layout.NUM_STYLES)


def _interpolation_matrix(num_points: int, num_samples: int, step: int) -> np.ndarray:
    """``(num_points, num_samples)``: point ``p`` is linear between samples ``p // step`` and the next."""
    w = np.zeros((num_points, num_samples), np.float32)
    for p in range(num_points):
        s0 = min(p // step, num_samples - 1)
        s1 = min(s0 + 1, num_samples - 1)
        f = (p % step) / step
        w[p, s0] += 1.0 - f
        w[p, s1] += f
    return w


# Every one of the 111 points from the 12 samples; the 51 current+future points from samples 6..11.
_W_ALL = _interpolation_matrix(NUM_POINTS, layout.NUM_TRAJECTORY_SAMPLES, POINT_DENSITY)
_W_FUTURE = _interpolation_matrix(FUTURE + 1, layout.NUM_FUTURE_SAMPLES, POINT_DENSITY)


# ----------------------------------------------------------------------------- data structures


@dataclasses.dataclass(frozen=True)
class ControlSettings:
    """Constants of the runtime (defaults: the original's).

    Attributes:
      target_gain: smoothing of the target while a command is active (0.25).
      target_decay: smoothing when no command is active (0.05).
      style_transition: per-frame style blend at the current point (the original's 0.1).
      bias_pos, bias_dir, bias_vel: exponents of the future blend weights (0.75, 1.25, 1.0).
      trajectory_blend: weight of the network's future trajectory against the extrapolated one (0.5).
      posture_blend: weight of the predicted bone positions against ``previous + v/fps`` (0.5).
      damp_root_when_idle: apply the original's root-motion factor ``u`` (see the module docstring).
      future_step: ``"original"`` (``dt = 1/50`` per future point: the 50 points span the next second,
        as the data's future samples) or ``"fps"`` (``1/fps``: a path 1/6 shorter than the data's).
      record_inputs: also return the network input of every frame (memory: T x 480 per character).
    """

    target_gain: float = 0.25
    target_decay: float = 0.05
    style_transition: float = 0.1
    bias_pos: float = 0.75
    bias_dir: float = 1.25
    bias_vel: float = 1.0
    trajectory_blend: float = 0.5
    posture_blend: float = 0.5
    damp_root_when_idle: bool = True
    future_step: Literal["fps", "original"] = "original"
    record_inputs: bool = False


class Control(NamedTuple):
    """Commands, one row per frame (leading axis ``T``; a leading character axis when batched).

    Attributes:
      move: ``(T, 2)`` desired velocity (x = left, z = forward) in the frame of the desired
        heading, m/s.
      heading: ``(T,)`` desired facing angle in world space, radians, continuous (not wrapped):
        0 faces +z, + turns left (toward +x). A 180° left turn is ``heading + π``.
      styles: ``(T, 6)`` desired style weights (Idle, Move, Jump, Sit, Stand, Lie).
      future: ``None``, or for replay ``(T, 6, 13)``: the future trajectory samples 6..11 in the
        input layout (:data:`layout.SAMPLE_FIELDS`) relative to the current root; overrides the
        trajectory control (see the module docstring).
    """

    move: Any
    heading: Any
    styles: Any
    future: Any = None


class CharacterState(NamedTuple):
    """Everything a character carries from frame to frame (world space, floor at y = 0).

    Attributes:
      traj_pos, traj_dir, traj_vel: ``(111, 2)`` x–z positions, unit facings, velocities of the
        per-frame trajectory points (60 past, current root at index 60, 50 future).
      traj_speed: ``(111,)`` m/s.
      traj_styles: ``(111, 6)``.
      bone_pos, bone_fwd, bone_up, bone_vel: ``(27, 3)`` the posture of the last frame.
      target_heading: ``()`` smoothed commanded heading, radians.
      target_vel: ``(2,)`` smoothed commanded world velocity, m/s.
      correction: ``()`` trajectory-correction weight in [0, 1].
    """

    traj_pos: Any
    traj_dir: Any
    traj_vel: Any
    traj_speed: Any
    traj_styles: Any
    bone_pos: Any
    bone_fwd: Any
    bone_up: Any
    bone_vel: Any
    target_heading: Any
    target_vel: Any
    correction: Any


class Rollout(NamedTuple):
    """Per-frame results (leading model / character axes, then ``T``).

    Attributes:
      bones: ``(..., T, 27, 3)`` world positions of every point on frame t.
      root_positions: ``(..., T, 3)`` root of frame t on the floor (y = 0).
      root_directions: ``(..., T, 3)`` its unit facing.
      root_update: ``(..., T, 3)`` root update applied (dx m/s, dθ deg/s, dz m/s; after damping).
      gating: ``(..., T, K)`` expert coefficients ω.
      styles: ``(..., T, 6)`` styles of the current trajectory point (the network's input).
      target_velocity: ``(..., T, 3)`` the smoothed commanded world velocity.
      inputs: ``(..., T, 480)`` network inputs (``record_inputs``) or None.
      final_state: the :class:`CharacterState` after the last frame.
    """

    bones: Any
    root_positions: Any
    root_directions: Any
    root_update: Any
    gating: Any
    styles: Any
    target_velocity: Any
    inputs: Any
    final_state: Any


# ----------------------------------------------------------------------------- 2-D / 3-D root frames
# A root is a floor point (x, z) and a unit facing d = (d_x, d_z); its left axis is (d_z, −d_x).


def _left(d: Any) -> Any:
    return jnp.stack([d[..., 1], -d[..., 0]], axis=-1)


def _to_local(v: Any, d: Any) -> Any:
    """World x–z vectors → root-local (x = left, z = facing)."""
    return jnp.stack([(v * _left(d)).sum(-1), (v * d).sum(-1)], axis=-1)


def _from_local(v: Any, d: Any) -> Any:
    """Root-local (x, z) vectors → world x–z."""
    return v[..., 0:1] * _left(d) + v[..., 1:2] * d


def _rotate(d: Any, degrees: Any) -> Any:
    """Turn x–z vectors left by ``degrees``."""
    a = jnp.radians(degrees)[..., None]
    return jnp.cos(a) * d + jnp.sin(a) * _left(d)


def _normalise(v: Any) -> Any:
    return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-8)


def _heading_direction(angle: Any) -> Any:
    """Unit x–z facing of a heading angle (0 = +z, + = left = toward +x)."""
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1)


def _axes3(d: Any) -> tuple[Any, Any, Any]:
    """World 3-D left, up, facing axes of a root facing ``d`` (x–z)."""
    zero = jnp.zeros_like(d[..., 0])
    left = jnp.stack([d[..., 1], zero, -d[..., 0]], axis=-1)
    up = jnp.stack([zero, jnp.ones_like(zero), zero], axis=-1)
    fwd = jnp.stack([d[..., 0], zero, d[..., 1]], axis=-1)
    return left, up, fwd


def _to_local3(v: Any, d: Any) -> Any:
    left, up, fwd = _axes3(d)
    return jnp.stack([(v * left).sum(-1), (v * up).sum(-1), (v * fwd).sum(-1)], axis=-1)


def _from_local3(v: Any, d: Any) -> Any:
    left, up, fwd = _axes3(d)
    return v[..., 0:1] * left + v[..., 1:2] * up + v[..., 2:3] * fwd


def _floor_point(p: Any) -> Any:
    return jnp.stack([p[..., 0], jnp.zeros_like(p[..., 0]), p[..., 1]], axis=-1)


def _lerp(a: Any, b: Any, t: Any) -> Any:
    return a + (b - a) * t


# ----------------------------------------------------------------------------- one frame


def _control_trajectory(state: CharacterState, ctrl: Control, s: ControlSettings, fps: float) -> CharacterState:
    """Step 1: smooth the command into a target and blend the future trajectory toward it."""
    move, heading_cmd, style_cmd = ctrl.move, ctrl.heading, ctrl.styles
    moving = jnp.linalg.norm(move) > 1e-6
    turning = jnp.abs(heading_cmd - state.target_heading) > 1e-4
    active = moving | turning | (style_cmd[MOVE] > 0)
    gain = jnp.where(active, s.target_gain, s.target_decay)
    target_heading = state.target_heading + gain * (heading_cmd - state.target_heading)
    target_dir = _heading_direction(target_heading)
    target_vel = _lerp(state.target_vel, _from_local(move, target_dir), gain)
    correction = _lerp(state.correction, jnp.where(moving | turning, 1.0, 0.0), gain)

    w = jnp.arange(1, FUTURE + 1, dtype=jnp.float32) / FUTURE  # future points 61..110
    scale_pos = (1.0 - (1.0 - w) ** s.bias_pos)[:, None]
    scale_dir = (1.0 - (1.0 - w) ** s.bias_dir)[:, None]
    scale_vel = (1.0 - (1.0 - w) ** s.bias_vel)[:, None]
    dt = 1.0 / fps if s.future_step == "fps" else 1.0 / FUTURE
    pos = state.traj_pos
    steps = _lerp(pos[ROOT_POINT + 1:] - pos[ROOT_POINT:-1], target_vel * dt, scale_pos)
    future_pos = pos[ROOT_POINT] + jnp.cumsum(steps, axis=0)
    future_dir = _normalise(_lerp(state.traj_dir[ROOT_POINT + 1:], target_dir, scale_dir))
    future_vel = _lerp(state.traj_vel[ROOT_POINT + 1:], target_vel, scale_vel)

    w_all = jnp.arange(0, FUTURE + 1, dtype=jnp.float32) / FUTURE  # current + future points
    blend = (s.style_transition + w_all * (1.0 - s.style_transition))[:, None]
    styles = _lerp(state.traj_styles[ROOT_POINT:], style_cmd, blend)
    styles = styles / jnp.maximum(styles.sum(-1, keepdims=True), 1e-8)
    speed = _lerp(state.traj_speed[ROOT_POINT:], jnp.linalg.norm(target_vel), gain)

    return state._replace(
        traj_pos=pos.at[ROOT_POINT + 1:].set(future_pos),
        traj_dir=state.traj_dir.at[ROOT_POINT + 1:].set(future_dir),
        traj_vel=state.traj_vel.at[ROOT_POINT + 1:].set(future_vel),
        traj_speed=state.traj_speed.at[ROOT_POINT:].set(speed),
        traj_styles=state.traj_styles.at[ROOT_POINT:].set(styles),
        target_heading=target_heading, target_vel=target_vel, correction=correction,
    )


def _sample_field(samples: Any, field: str) -> Any:
    return samples[..., layout.SAMPLE_FIELDS[field]]


def _replay_trajectory(state: CharacterState, future: Any) -> CharacterState:
    """Step 1 for replay: write the clip's future samples 6..11 onto the current root."""
    w = jnp.asarray(_W_FUTURE)
    root, facing = state.traj_pos[ROOT_POINT], state.traj_dir[ROOT_POINT]
    pos = root + _from_local(w @ _sample_field(future, "pos"), facing)
    direction = _normalise(_from_local(w @ _sample_field(future, "dir"), facing))
    vel = _from_local(w @ _sample_field(future, "vel"), facing)
    speed = (w @ _sample_field(future, "speed"))[:, 0]
    styles = w @ _sample_field(future, "style")
    return state._replace(
        traj_pos=state.traj_pos.at[ROOT_POINT + 1:].set(pos[1:]),
        traj_dir=state.traj_dir.at[ROOT_POINT + 1:].set(direction[1:]),
        traj_vel=state.traj_vel.at[ROOT_POINT + 1:].set(vel[1:]),
        traj_speed=state.traj_speed.at[ROOT_POINT:].set(speed),
        traj_styles=state.traj_styles.at[ROOT_POINT:].set(styles),
    )


def _ordered_fields(fields: dict[str, slice], width: int) -> tuple[str, ...]:
    """Field names in column order, checked to tile ``[0, width)`` exactly (so blocks can be concatenated)."""
    names = tuple(sorted(fields, key=lambda k: fields[k].start))
    stops = [0] + [fields[n].stop for n in names]
    if any(fields[n].start != stops[i] for i, n in enumerate(names)) or stops[-1] != width:
        raise AssertionError(f"fields {fields} do not tile {width} columns")
    return names


_SAMPLE_ORDER = _ordered_fields(layout.SAMPLE_FIELDS, layout.SAMPLE_WIDTH)
_BONE_ORDER = _ordered_fields(layout.BONE_FIELDS, layout.BONE_WIDTH)
assert layout.INPUT_TRAJECTORY.stop == layout.INPUT_BONES.start and layout.INPUT_BONES.stop == layout.INPUT_DIM


def network_input(state: CharacterState) -> Any:
    """Step 2: the ``(480,)`` MANN input of a state (denormalised), in the named column layout.

    The blocks are concatenated in the order of :data:`layout.SAMPLE_FIELDS` /
    :data:`layout.BONE_FIELDS` (checked at import to tile the columns), which compiles faster than
    scattering into the slices.
    """
    root, facing = state.traj_pos[ROOT_POINT], state.traj_dir[ROOT_POINT]
    idx = jnp.asarray(SAMPLE_POINTS)
    sample = {
        "pos": _to_local(state.traj_pos[idx] - root, facing),
        "dir": _to_local(state.traj_dir[idx], facing),
        "vel": _to_local(state.traj_vel[idx], facing),
        "speed": state.traj_speed[idx][:, None],
        "style": state.traj_styles[idx],
    }
    traj = jnp.concatenate([sample[k] for k in _SAMPLE_ORDER], axis=-1)

    prev_root, prev_facing = state.traj_pos[ROOT_POINT - 1], state.traj_dir[ROOT_POINT - 1]
    bone = {
        "pos": _to_local3(state.bone_pos - _floor_point(prev_root), prev_facing),
        "fwd": _to_local3(state.bone_fwd, prev_facing),
        "up": _to_local3(state.bone_up, prev_facing),
        "vel": _to_local3(state.bone_vel, prev_facing),
    }
    bones = jnp.concatenate([bone[k] for k in _BONE_ORDER], axis=-1)
    return jnp.concatenate([traj.reshape(-1), bones.reshape(-1)]).astype(jnp.float32)


def _animate(state: CharacterState, y: Any, s: ControlSettings, fps: float) -> tuple[CharacterState, dict[str, Any]]:
    """Steps 3 and 4: apply a (denormalised) network output ``y`` to the state."""
    root, facing = state.traj_pos[ROOT_POINT], state.traj_dir[ROOT_POINT]
    styles_now = state.traj_styles[ROOT_POINT]

    def shift(a: Any) -> Any:  # past points take the values of their successors
        return a.at[:ROOT_POINT].set(a[1:ROOT_POINT + 1])

    pos, dirs, vel = shift(state.traj_pos), shift(state.traj_dir), shift(state.traj_vel)
    speed, styles = shift(state.traj_speed), shift(state.traj_styles)

    update = y[layout.OUTPUT_ROOT]  # dx, dθ, dz per second
    if s.damp_root_when_idle:
        rest = jnp.clip(styles_now[SIT] + styles_now[STAND] + styles_now[LIE], 0.0, 1.0)
        u = jnp.minimum(jnp.clip(1.0 - styles_now[IDLE], 0.0, 1.0) ** 0.25, (1.0 - rest) ** 0.5)
        update = update * u
    translation = jnp.stack([update[0], update[2]]) / fps  # root-local x, z
    angle = update[1] / fps
    step_world = _from_local(translation, facing)
    next_root = root + step_world
    next_facing = _normalise(_rotate(facing, angle))
    pos = pos.at[ROOT_POINT].set(next_root)
    dirs = dirs.at[ROOT_POINT].set(next_facing)
    vel = vel.at[ROOT_POINT].set(step_world * fps)

    # Future points move with the root (in the next root's frame, as the original), ...
    moved = _from_local(translation, next_facing)
    fpos = pos[ROOT_POINT + 1:] + moved
    fdir = _normalise(_rotate(dirs[ROOT_POINT + 1:], angle))
    fvel = vel[ROOT_POINT + 1:] + moved * fps
    # ... then blend toward the network's future trajectory (relative to the next root).
    out = y[layout.OUTPUT_TRAJECTORY].reshape(layout.NUM_FUTURE_SAMPLES, layout.OUTPUT_SAMPLE_WIDTH)
    of = layout.OUTPUT_SAMPLE_FIELDS
    w = jnp.asarray(_W_FUTURE[1:])
    net_pos = next_root + _from_local(w @ out[:, of["pos"]], next_facing)
    net_dir = _normalise(w @ _from_local(_normalise(out[:, of["dir"]]), next_facing))
    net_vel = _from_local(w @ out[:, of["vel"]], next_facing)
    net_pos = _lerp(fpos + net_vel / fps, net_pos, s.trajectory_blend)
    c = state.correction
    pos = pos.at[ROOT_POINT + 1:].set(_lerp(fpos, net_pos, c))
    dirs = dirs.at[ROOT_POINT + 1:].set(_normalise(_lerp(fdir, net_dir, c)))
    vel = vel.at[ROOT_POINT + 1:].set(_lerp(fvel, net_vel, c))

    # Posture of this frame, predicted relative to the CURRENT root.
    bones = y[layout.OUTPUT_BONES].reshape(layout.NUM_BONES, layout.BONE_WIDTH)
    bf = layout.BONE_FIELDS
    bone_target = _from_local3(bones[:, bf["pos"]], facing) + _floor_point(root)
    bone_vel = _from_local3(bones[:, bf["vel"]], facing)
    bone_pos = _lerp(state.bone_pos + bone_vel / fps, bone_target, s.posture_blend)
    bone_fwd = _from_local3(_normalise(bones[:, bf["fwd"]]), facing)
    bone_up = _from_local3(_normalise(bones[:, bf["up"]]), facing)

    new_state = state._replace(traj_pos=pos, traj_dir=dirs, traj_vel=vel, traj_speed=speed, traj_styles=styles,
                               bone_pos=bone_pos, bone_fwd=bone_fwd, bone_up=bone_up, bone_vel=bone_vel)
    frame = {
        "bones": bone_pos,
        "root_positions": _floor_point(root),
        "root_directions": _floor_point(facing),
        "root_update": update,
        "styles": styles_now,
        "target_velocity": _floor_point(state.target_vel),
    }
    return new_state, frame


Predictor = Callable[[Any, Any], tuple[Any, Any]]


def simulate(
    predict: Predictor,
    normalisation: Normalisation,
    initial: CharacterState,
    control: Control,
    *,
    fps: float = 60.0,
    settings: ControlSettings = ControlSettings(),
) -> Rollout:
    """Roll ONE character out under any predictor (pure; jit/vmap it as you like).

    Args:
      predict: ``(x_normalised (480,), frame index) -> (y_normalised (363,), gating (K,))``.
      normalisation: the dataset's statistics (denormalised features in and out of the runtime).
      initial: the starting :class:`CharacterState` (e.g. :func:`initial_state_from_input`).
      control: per-frame commands ``(T, ...)``; ``future`` set for replay.
      fps: frame rate of the data the network was trained on.
      settings: runtime constants.

    Returns:
      :class:`Rollout` with a leading frame axis ``T``.
    """
    replay = control.future is not None

    def step(state: CharacterState, inputs: tuple[Any, Control]) -> tuple[CharacterState, dict[str, Any]]:
        t, ctrl = inputs
        if replay:
            state = _replay_trajectory(state, ctrl.future)
        else:
            state = _control_trajectory(state, ctrl, settings, fps)
        x = network_input(state)
        y_norm, omega = predict(normalisation.normalise_inputs(x), t)
        y = normalisation.denormalise_outputs(y_norm)
        state, frame = _animate(state, y, settings, fps)
        frame["gating"] = omega
        if settings.record_inputs:
            frame["inputs"] = x
        return state, frame

    num_frames = control.heading.shape[0]
    final, frames = jax.lax.scan(step, initial, (jnp.arange(num_frames), control))
    inputs = frames.pop("inputs", None)
    return Rollout(final_state=final, inputs=inputs, **frames)


# ----------------------------------------------------------------------------- the MANN rollout


def _check_control(control: Control, initial: CharacterState) -> bool:
    """Validate shapes; True when batched over characters."""
    heading = np.shape(control.heading)
    if len(heading) not in (1, 2) or heading[-1] < 1:
        raise ValueError(f"control.heading must be (T,) or (characters, T) with T >= 1, got {heading}")
    batched = len(heading) == 2
    lead = heading
    expect = {"move": lead + (2,), "styles": lead + (layout.NUM_STYLES,)}
    if control.future is not None:
        expect["future"] = lead + (layout.NUM_FUTURE_SAMPLES, layout.SAMPLE_WIDTH)
    for name, shape in expect.items():
        if tuple(np.shape(getattr(control, name))) != shape:
            raise ValueError(f"control.{name} has shape {tuple(np.shape(getattr(control, name)))}, expected {shape}")
    init_shape = tuple(np.shape(initial.traj_pos))
    want = ((heading[0],) if batched else ()) + (NUM_POINTS, 2)
    if init_shape != want:
        raise ValueError(f"initial state traj_pos has shape {init_shape}, expected {want} to match the control")
    return batched


@functools.partial(jax.jit, static_argnames=("graph", "fps", "settings", "models_axis", "batched"))
def _rollout_jit(graph: Any, rest: Any, params: Params, normalisation: Normalisation, initial: CharacterState,
                 control: Control, expert_mask: Any, *, fps: float, settings: ControlSettings, models_axis: bool,
                 batched: bool) -> Rollout:
    def one(p: Params, init: CharacterState, ctrl: Control) -> Rollout:
        def predict(x: Any, t: Any) -> tuple[Any, Any]:
            del t
            return apply(graph, (nnx.State(p), rest), x, expert_mask=expert_mask, return_gating=True)

        return simulate(predict, normalisation, init, ctrl, fps=fps, settings=settings)

    fn = jax.vmap(one, in_axes=(None, 0, 0)) if batched else one
    if models_axis:
        fn = jax.vmap(fn, in_axes=(0, None, None))
    return fn(params, initial, control)


def rollout(
    fns: Any,
    params: Params,
    normalisation: Normalisation,
    initial: CharacterState,
    control: Control,
    *,
    fps: float = 60.0,
    settings: ControlSettings = ControlSettings(),
    expert_mask: Any = None,
    models_axis: bool = False,
) -> Rollout:
    """Autoregressive rollout of a MANN (evaluation mode), jitted and vectorised.

    Args:
      fns: :class:`mann_jax.train.ModelFunctions` of the model config.
      params: the parameters (``TrainResult.state.params``, :func:`load_params`), or with
        ``models_axis`` a stack of them with a leading model axis (:func:`stack_params`).
      normalisation: the dataset's :class:`Normalisation`.
      initial: a :class:`CharacterState`, or a stack with a leading character axis.
      control: a :class:`Control` ``(T, ...)``, or ``(characters, T, ...)`` matching ``initial``.
      fps: frame rate of the training data.
      settings: runtime constants.
      expert_mask: optional ``(K,)`` 0/1 experts switched on (ablation).
      models_axis: ``params`` carries a leading model axis.

    Returns:
      :class:`Rollout` with leading axes ``(models?, characters?, T)``.

    Raises:
      ValueError: params not matching ``fns`` (e.g. a checkpoint of another config) or
        inconsistent control / initial state shapes.
    """
    check_params(params, fns.params, models_axis=models_axis)
    batched = _check_control(control, initial)
    norm = Normalisation(*(jnp.asarray(a, jnp.float32) for a in normalisation))
    as32 = functools.partial(jax.tree.map, lambda a: jnp.asarray(a, jnp.float32))
    mask = None if expert_mask is None else jnp.asarray(expert_mask, jnp.float32)
    return _rollout_jit(fns.eval_graph, fns.rest, params, norm, as32(initial), as32(control), mask,
                        fps=float(fps), settings=settings, models_axis=models_axis, batched=batched)


def stack_params(params_list: list[Params]) -> Params:
    """Stack several models' parameters (same config) along a new leading model axis."""
    if not params_list:
        raise ValueError("stack_params needs at least one parameter tree")
    for p in params_list[1:]:
        check_params(p, params_list[0])
    return jax.tree.map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]), *params_list)


def stack(items: list[Any]) -> Any:
    """Stack initial states or controls (same shapes) along a new leading character axis."""
    if not items:
        raise ValueError("nothing to stack")
    return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *items)


# ----------------------------------------------------------------------------- starting states


def initial_state_from_input(x: Any) -> CharacterState:
    """A character in the situation of one (denormalised) input row, placed at the origin facing +z.

    The row's root (its current frame) becomes the world origin; the 111 per-frame trajectory
    points are linearly interpolated between its 12 samples; the posture is the row's (previous
    frame relative to the previous root, point 59). The target starts at the current heading and
    velocity, the trajectory correction at 1 (as the original).
    """
    x = np.asarray(x, np.float64)
    if x.shape != (layout.INPUT_DIM,):
        raise ValueError(f"expected one input row of {layout.INPUT_DIM} values, got shape {x.shape}")
    samples = x[layout.INPUT_TRAJECTORY].reshape(layout.NUM_TRAJECTORY_SAMPLES, layout.SAMPLE_WIDTH)
    f = layout.SAMPLE_FIELDS

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-8)

    pos = _W_ALL @ samples[:, f["pos"]]
    dirs = unit(_W_ALL @ samples[:, f["dir"]])
    vel = _W_ALL @ samples[:, f["vel"]]
    speed = (_W_ALL @ samples[:, f["speed"]])[:, 0]
    styles = _W_ALL @ samples[:, f["style"]]
    styles = styles / np.maximum(styles.sum(-1, keepdims=True), 1e-8)
    bones = x[layout.INPUT_BONES].reshape(layout.NUM_BONES, layout.BONE_WIDTH)
    b = layout.BONE_FIELDS
    prev_root, prev_facing = pos[ROOT_POINT - 1], dirs[ROOT_POINT - 1]
    to_world = functools.partial(_from_local3, d=jnp.asarray(prev_facing))
    f32 = functools.partial(np.asarray, dtype=np.float32)
    facing = dirs[ROOT_POINT]
    return CharacterState(
        traj_pos=f32(pos), traj_dir=f32(dirs), traj_vel=f32(vel), traj_speed=f32(speed), traj_styles=f32(styles),
        bone_pos=f32(to_world(bones[:, b["pos"]]) + np.array([prev_root[0], 0.0, prev_root[1]])),
        bone_fwd=f32(to_world(bones[:, b["fwd"]])), bone_up=f32(to_world(bones[:, b["up"]])),
        bone_vel=f32(to_world(bones[:, b["vel"]])),
        target_heading=np.float32(np.arctan2(facing[0], facing[1])), target_vel=f32(vel[ROOT_POINT]),
        correction=np.float32(1.0),
    )


def start_row(dataset: Any, *, style: str = "Idle", max_speed: float | None = None, split: str | None = None) -> int:
    """A reproducible starting row for scripted scenarios.

    Among the non-mirrored rows labelled ``style`` (and slower than ``max_speed`` m/s, if given;
    of ``split``, if given), the one whose Hips height is the median: a typical pose of that style,
    not an outlier (a clip's first rows are often a dog still getting up).

    Raises:
      ValueError: unknown style, or no such rows (the message gives the rows per style).
    """
    if style not in layout.STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {layout.STYLES}")
    x = dataset.inputs
    rows = ~np.asarray(dataset.mirrored)
    if split is not None:
        rows &= dataset.split_mask(split)
    rows &= np.asarray(dataset.styles) == layout.STYLES.index(style)
    if max_speed is not None:
        rows &= x[:, layout.input_sample(layout.CURRENT_SAMPLE, "speed")][:, 0] < max_speed
    candidates = np.flatnonzero(rows)
    if len(candidates) == 0:
        counts = np.bincount(np.asarray(dataset.styles)[~np.asarray(dataset.mirrored)].astype(int),
                             minlength=layout.NUM_STYLES)
        raise ValueError(f"no {style} rows to start from (max_speed={max_speed}, split={split}); rows per style: "
                         f"{dict(zip(layout.STYLES, counts.tolist()))}")
    hips = x[candidates, layout.input_bone("Hips", "pos")][:, 1]
    order = np.argsort(hips, kind="stable")
    return int(candidates[order[len(order) // 2]])


# ----------------------------------------------------------------------------- replay of real clips


@dataclasses.dataclass(frozen=True)
class Replay:
    """A real clip as a control source, with its ground truth in the rollout's world frame.

    Attributes:
      name: clip name (``+mirror`` for the mirrored copy).
      initial: the character at the clip's first valid frame (its root at the origin facing +z).
      control: the clip's trajectory, styles and future samples per frame (replay mode).
      reference_bones: ``(T, 27, 3)`` the clip's bones, world (same frame as the rollout).
      reference_root_positions: ``(T, 3)``; ``reference_root_directions``: ``(T, 3)``.
      frames: ``(T,)`` clip frame of each rollout frame.
    """

    name: str
    initial: CharacterState
    control: Control
    reference_bones: np.ndarray
    reference_root_positions: np.ndarray
    reference_root_directions: np.ndarray
    frames: np.ndarray


class ReplayErrors(NamedTuple):
    """Per-frame differences between a replay rollout and its clip (leading batch axes kept).

    Attributes:
      world: ``(..., T)`` mean bone position error in world space, metres (includes root drift).
      local: ``(..., T)`` the same with each pose expressed relative to its own root (posture only).
      root: ``(..., T)`` root position drift, metres.
      heading: ``(..., T)`` absolute facing difference, degrees.
    """

    world: Any
    local: Any
    root: Any
    heading: Any


def _root_local_bones(bones: Any, root_pos: Any, root_dir: Any) -> Any:
    d = np.asarray(root_dir)[..., None, :]
    rel = np.asarray(bones) - np.asarray(root_pos)[..., None, :]
    left = np.stack([d[..., 2], np.zeros_like(d[..., 0]), -d[..., 0]], axis=-1)
    return np.stack([(rel * left).sum(-1), rel[..., 1], (rel * d).sum(-1)], axis=-1)


def replay_errors(result: Rollout, replay: Replay) -> ReplayErrors:
    """Bone, root and heading errors of a replay rollout against the clip (numpy)."""
    bones = np.asarray(result.bones)
    world = np.linalg.norm(bones - replay.reference_bones, axis=-1).mean(-1)
    mine = _root_local_bones(bones, result.root_positions, result.root_directions)
    ref = _root_local_bones(replay.reference_bones, replay.reference_root_positions, replay.reference_root_directions)
    local = np.linalg.norm(mine - ref, axis=-1).mean(-1)
    root = np.linalg.norm(np.asarray(result.root_positions) - replay.reference_root_positions, axis=-1)
    a, b = np.asarray(result.root_directions), replay.reference_root_directions
    cross = a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]
    heading = np.abs(np.degrees(np.arctan2(cross, (a * b).sum(-1))))
    return ReplayErrors(world=world, local=local, root=root, heading=heading)


def integrate_root(root_updates: np.ndarray, *, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Roots ``(T, 3)`` positions and ``(T, 3)`` facings from per-frame updates ``(T, 3)``
    (dx, dθ deg, dz, per second), starting at the origin facing +z (root t → t + 1 by update t)."""
    u = np.asarray(root_updates, np.float64) / fps
    heading = np.concatenate([[0.0], np.cumsum(np.radians(u[:-1, 1]))])
    facing = np.stack([np.sin(heading), np.cos(heading)], axis=-1)
    left = np.stack([facing[:, 1], -facing[:, 0]], axis=-1)
    steps = u[:-1, 0:1] * left[:-1] + u[:-1, 2:3] * facing[:-1]
    pos = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    lift = lambda a: np.stack([a[:, 0], np.zeros(len(a)), a[:, 1]], axis=-1)  # noqa: E731
    return lift(pos), lift(facing)


def replay_from_rows(inputs: np.ndarray, outputs: np.ndarray, *, fps: float, name: str = "clip",
                     frames: np.ndarray | None = None) -> Replay:
    """A :class:`Replay` from a clip's consecutive feature rows (denormalised).

    Raises:
      ValueError: no rows (a clip shorter than the trajectory window) or non-consecutive frames.
    """
    inputs, outputs = np.asarray(inputs, np.float64), np.asarray(outputs, np.float64)
    if len(inputs) == 0:
        from mann_jax.data.features import MIN_CLIP_FRAMES

        raise ValueError(f"{name}: no feature rows to replay; a clip needs at least {MIN_CLIP_FRAMES} frames "
                         f"({layout.PAST_FRAMES} past + 1 + {layout.FUTURE_FRAMES + 1} future)")
    if inputs.shape[1:] != (layout.INPUT_DIM,) or outputs.shape != (len(inputs), layout.OUTPUT_DIM):
        raise ValueError(f"{name}: expected rows (N, {layout.INPUT_DIM}) and (N, {layout.OUTPUT_DIM}), "
                         f"got {inputs.shape} and {outputs.shape}")
    frames = np.arange(len(inputs)) if frames is None else np.asarray(frames)
    if len(frames) != len(inputs) or np.any(np.diff(frames) != 1):
        raise ValueError(f"{name}: replay needs consecutive frames")
    samples = inputs[:, layout.INPUT_TRAJECTORY].reshape(len(inputs), layout.NUM_TRAJECTORY_SAMPLES,
                                                        layout.SAMPLE_WIDTH)
    future = samples[:, layout.CURRENT_SAMPLE:]
    root_pos, root_dir = integrate_root(outputs[:, layout.OUTPUT_ROOT], fps=fps)
    heading = np.unwrap(np.arctan2(root_dir[:, 0], root_dir[:, 2]))
    current = samples[:, layout.CURRENT_SAMPLE]
    f = layout.SAMPLE_FIELDS
    control = Control(
        move=current[:, f["vel"]].astype(np.float32),  # root-local velocity = move in the heading frame
        heading=heading.astype(np.float32),
        styles=current[:, f["style"]].astype(np.float32),
        future=future.astype(np.float32),
    )
    bones = outputs[:, layout.OUTPUT_BONES].reshape(len(inputs), layout.NUM_BONES, layout.BONE_WIDTH)
    local = bones[:, :, layout.BONE_FIELDS["pos"]]
    left = np.stack([root_dir[:, 2], np.zeros(len(root_dir)), -root_dir[:, 0]], axis=-1)
    up = np.array([0.0, 1.0, 0.0])
    world = (local[..., 0:1] * left[:, None] + local[..., 1:2] * up + local[..., 2:3] * root_dir[:, None]
             + root_pos[:, None])
    return Replay(name=name, initial=initial_state_from_input(inputs[0]), control=control,
                  reference_bones=world.astype(np.float32), reference_root_positions=root_pos.astype(np.float32),
                  reference_root_directions=root_dir.astype(np.float32), frames=frames)


def replay_from_dataset(dataset: Any, clip: str, *, mirrored: bool = False, fps: float = 60.0) -> Replay:
    """A :class:`Replay` of one clip of a built :class:`~mann_jax.data.dataset.Dataset`."""
    if clip not in dataset.clip_names:
        raise ValueError(f"clip {clip!r} is not in the dataset; clips: {list(dataset.clip_names)}")
    c = dataset.clip_names.index(clip)
    rows = np.flatnonzero((dataset.clip_index == c) & (np.asarray(dataset.mirrored) == mirrored))
    rows = rows[np.argsort(dataset.frames[rows], kind="stable")]
    return replay_from_rows(dataset.inputs[rows], dataset.outputs[rows], fps=fps,
                            name=clip + ("+mirror" if mirrored else ""), frames=dataset.frames[rows])


def replay_from_motion(motion: Any, data_config: ml_collections.ConfigDict) -> Replay:
    """A :class:`Replay` of a clip (e.g. :func:`mann_jax.data.bvh.load_bvh`) featurised with ``data_config``.

    Raises:
      ValueError: the clip is shorter than the trajectory window.
    """
    from mann_jax.data.checks import FEATURE_FPS
    from mann_jax.data.dataset import clip_rows
    from mann_jax.data.features import MIN_CLIP_FRAMES

    if motion.num_frames < MIN_CLIP_FRAMES:
        raise ValueError(f"{motion.name}: clip has {motion.num_frames} frames; replay needs at least "
                         f"{MIN_CLIP_FRAMES} ({layout.PAST_FRAMES} past + 1 + {layout.FUTURE_FRAMES + 1} future)")
    rows = clip_rows(motion, data_config)
    keep = ~rows.mirrored
    fps = motion.fps if rows.source_fps is None else FEATURE_FPS  # a clip at another rate is resampled first
    return replay_from_rows(rows.inputs[keep], rows.outputs[keep], fps=fps, name=motion.name,
                            frames=rows.frames[keep])


# ----------------------------------------------------------------------------- checkpoints


def load_params(checkpoint: str | os.PathLike, fns: Any, *, step: int | None = None) -> Params:
    """The parameters of a training run's checkpoint, checked against the model of ``fns``.

    Args:
      checkpoint: a run's workdir (holding ``checkpoints/``) or the checkpoints folder itself.
      fns: :class:`mann_jax.train.ModelFunctions` of the config the rollout uses.
      step: checkpoint step; default the latest.

    Raises:
      CheckpointError: no checkpoint there, or its parameters do not match the config.
    """
    path = Path(checkpoint).absolute()
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    # Complete steps only: Orbax writes into a temporary folder and renames it when done.
    steps = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit() and (p / "state").is_dir())
    if not steps:
        raise CheckpointError(f"{path}: no checkpoint to restore")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise CheckpointError(f"{path}: no checkpoint at step {step}; steps: {steps}")
    item = path / str(step) / "state"
    try:
        # Restore onto this process's default device whatever devices wrote it (a GPU, a sweep sharded
        # over several): without a target Orbax refuses a checkpoint saved on another topology.
        saved = ocp.StandardCheckpointHandler().metadata(item).tree
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)
        state = ocp.StandardCheckpointer().restore(item, target)
    except Exception as e:  # orbax raises many types for damaged folders
        raise CheckpointError(f"{path / str(step)}: cannot restore checkpoint ({type(e).__name__}: {e})") from e
    params = state.get("params") if isinstance(state, dict) else getattr(state, "params", None)
    if params is None:
        raise CheckpointError(f"{path / str(step)}: the checkpoint holds no 'params'")
    try:
        check_params(params, fns.params)
    except ValueError as e:
        raise CheckpointError(f"{path / str(step)}: {e}") from None
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
