"""Scripted control scenarios: reproducible per-frame commands for :func:`mann_jax.control.rollout.rollout`.

Every scenario is a pure function of its parameters (no randomness) returning a :class:`Scenario`
whose :class:`~mann_jax.control.rollout.Control` starts with the character's own heading (0: the
start state faces +z) and uses one-hot style commands (the runtime blends them, as the original).
Speeds are m/s, durations seconds, angles degrees (+ = left). Typical speeds on the dog data:
walk ≈ 1 m/s, trot ≈ 2 m/s, run/gallop 3–4.5 m/s.

=========== =================================================================================
name        commands
=========== =================================================================================
walk        Move at ``speed`` (1.0) straight ahead for ``seconds`` (6)
turn90      walk at ``speed`` (1.0) for ``before_seconds`` (2), then the heading jumps by
            ``angle_deg`` (90) at once; ``after_seconds`` (3) more
turn180     the same with ``angle_deg`` = 180
run         Move at ``speed`` (3.5) for ``seconds`` (5)
trot_stop   Move at ``speed`` (2.0) for ``trot_seconds`` (3), then zero velocity and Idle for
            ``stop_seconds`` (3)
sit         Idle, zero velocity for ``idle_seconds`` (1), then Sit for ``hold_seconds`` (4)
lie         Idle for ``idle_seconds`` (1), then Lie for ``hold_seconds`` (5)
jump        Move at ``speed`` (2.0); Jump for ``jump_seconds`` (0.5) from ``jump_at_seconds`` (2);
            ``seconds`` (4) in all
=========== =================================================================================

:data:`SCENARIOS` is the one registry: each :class:`ScenarioSpec` gives the builder, how the study
sizes the scenario, which action check proves it happened and whether the expert ablation measures
it. Adding a scenario = its builder here plus one entry there.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from mann_jax.control.rollout import Control
from mann_jax.data import layout


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A scripted control sequence.

    Attributes:
      name: scenario name.
      control: per-frame commands ``(T, ...)`` (numpy).
      commanded_speed: ``(T,)`` m/s (for speed-tracking metrics).
      params: the parameters it was built with (fps included).
      events: frames of notable changes, e.g. ``{"turn": 120}``.
    """

    name: str
    control: Control
    commanded_speed: np.ndarray
    params: dict[str, Any]
    events: dict[str, int]

    @property
    def num_frames(self) -> int:
        return int(self.control.heading.shape[0])


def _frames(seconds: float, fps: float, what: str) -> int:
    n = int(round(seconds * fps))
    if n < 1:
        raise ValueError(f"{what} must last at least one frame, got {seconds} s at {fps} fps")
    return n


def _style(name: str, n: int) -> np.ndarray:
    s = np.zeros((n, layout.NUM_STYLES), np.float32)
    s[:, layout.STYLES.index(name)] = 1.0
    return s


def _build(name: str, segments: list[tuple[int, float, float, str]], params: dict[str, Any],
           events: dict[str, int]) -> Scenario:
    """Scenario from ``(frames, forward speed, heading degrees, style)`` segments."""
    move = np.concatenate([np.tile(np.array([[0.0, v]], np.float32), (n, 1)) for n, v, _, _ in segments])
    heading = np.concatenate([np.full(n, np.radians(h), np.float32) for n, _, h, _ in segments])
    styles = np.concatenate([_style(s, n) for n, _, _, s in segments])
    speed = np.concatenate([np.full(n, abs(v), np.float32) for n, v, _, _ in segments])
    return Scenario(name=name, control=Control(move=move, heading=heading, styles=styles), commanded_speed=speed,
                    params=params, events=events)


def walk(*, speed: float = 1.0, seconds: float = 6.0, heading_deg: float = 0.0, fps: float = 60.0) -> Scenario:
    """Walk straight at ``speed`` toward ``heading_deg``."""
    n = _frames(seconds, fps, "the walk")
    return _build("walk", [(n, speed, heading_deg, "Move")], dict(speed=speed, seconds=seconds,
                  heading_deg=heading_deg, fps=fps), {})


def turn(*, angle_deg: float = 90.0, speed: float = 1.0, before_seconds: float = 2.0, after_seconds: float = 3.0,
         fps: float = 60.0, name: str | None = None) -> Scenario:
    """Walk, then an abrupt change of the commanded heading by ``angle_deg`` (+ = left)."""
    a = _frames(before_seconds, fps, "the walk before the turn")
    b = _frames(after_seconds, fps, "the walk after the turn")
    return _build(name or f"turn{int(round(angle_deg))}", [(a, speed, 0.0, "Move"), (b, speed, angle_deg, "Move")],
                  dict(angle_deg=angle_deg, speed=speed, before_seconds=before_seconds,
                       after_seconds=after_seconds, fps=fps), {"turn": a})


def turn90(*, angle_deg: float = 90.0, speed: float = 1.0, before_seconds: float = 2.0, after_seconds: float = 3.0,
           fps: float = 60.0) -> Scenario:
    """:func:`turn` by 90° (left)."""
    return turn(angle_deg=angle_deg, speed=speed, before_seconds=before_seconds, after_seconds=after_seconds, fps=fps,
                name="turn90")


def turn180(*, angle_deg: float = 180.0, speed: float = 1.0, before_seconds: float = 2.0, after_seconds: float = 3.0,
            fps: float = 60.0) -> Scenario:
    """:func:`turn` by 180° (left)."""
    return turn(angle_deg=angle_deg, speed=speed, before_seconds=before_seconds, after_seconds=after_seconds, fps=fps,
                name="turn180")


def run(*, speed: float = 3.5, seconds: float = 5.0, fps: float = 60.0) -> Scenario:
    """Run straight at ``speed``."""
    n = _frames(seconds, fps, "the run")
    return _build("run", [(n, speed, 0.0, "Move")], dict(speed=speed, seconds=seconds, fps=fps), {})


def trot_stop(*, speed: float = 2.0, trot_seconds: float = 3.0, stop_seconds: float = 3.0,
              fps: float = 60.0) -> Scenario:
    """Trot at ``speed``, then stop (zero velocity, Idle)."""
    a = _frames(trot_seconds, fps, "the trot")
    b = _frames(stop_seconds, fps, "the stop")
    return _build("trot_stop", [(a, speed, 0.0, "Move"), (b, 0.0, 0.0, "Idle")],
                  dict(speed=speed, trot_seconds=trot_seconds, stop_seconds=stop_seconds, fps=fps), {"stop": a})


def _hold(name: str, style: str, idle_seconds: float, hold_seconds: float, fps: float) -> Scenario:
    a = _frames(idle_seconds, fps, "the idle lead-in")
    b = _frames(hold_seconds, fps, f"the {style} hold")
    return _build(name, [(a, 0.0, 0.0, "Idle"), (b, 0.0, 0.0, style)],
                  dict(idle_seconds=idle_seconds, hold_seconds=hold_seconds, fps=fps), {style.lower(): a})


def sit(*, idle_seconds: float = 1.0, hold_seconds: float = 4.0, fps: float = 60.0) -> Scenario:
    """Stand idle, then sit."""
    return _hold("sit", "Sit", idle_seconds, hold_seconds, fps)


def lie(*, idle_seconds: float = 1.0, hold_seconds: float = 5.0, fps: float = 60.0) -> Scenario:
    """Stand idle, then lie down."""
    return _hold("lie", "Lie", idle_seconds, hold_seconds, fps)


def jump(*, speed: float = 2.0, seconds: float = 4.0, jump_at_seconds: float = 2.0, jump_seconds: float = 0.5,
         fps: float = 60.0) -> Scenario:
    """Move at ``speed`` with a Jump command of ``jump_seconds`` at ``jump_at_seconds``."""
    total = _frames(seconds, fps, "the jump scenario")
    a = _frames(jump_at_seconds, fps, "the run-up")
    b = _frames(jump_seconds, fps, "the jump")
    if a + b >= total:
        raise ValueError(f"the jump ({jump_at_seconds} + {jump_seconds} s) must end before {seconds} s")
    return _build("jump", [(a, speed, 0.0, "Move"), (b, speed, 0.0, "Jump"), (total - a - b, speed, 0.0, "Move")],
                  dict(speed=speed, seconds=seconds, jump_at_seconds=jump_at_seconds, jump_seconds=jump_seconds,
                       fps=fps), {"jump": a})


class StudySizing(NamedTuple):
    """What the study's evaluations size their scenarios by (``config.study``)."""

    seconds: float  # study.scenario_seconds
    walk_speed: float  # study.walk_speed, m/s
    run_speed: float  # study.run_speed, m/s


def _study_turn(z: StudySizing) -> dict[str, float]:
    before = round(0.4 * z.seconds, 3)
    return dict(speed=z.walk_speed, before_seconds=before, after_seconds=z.seconds - before)


def _study_hold(z: StudySizing) -> dict[str, float]:
    return dict(idle_seconds=0.2 * z.seconds, hold_seconds=0.8 * z.seconds)


class ScenarioSpec(NamedTuple):
    """One registered scenario: how to build it and how each consumer uses it.

    Attributes:
      build: the builder, a pure function of keyword parameters (``fps`` included) -> :class:`Scenario`;
        its signature is the list of parameters ``make_scenario`` and ``--param`` accept.
      study: its parameters in the study's evaluations, from :class:`StudySizing`; None: the study
        does not use it.
      action: the check that the commanded action happened (a key of
        :data:`mann_jax.evaluate.ablation.ACTION_CHECKS`); None: none.
      ablation: whether the expert ablation (study Table 2) measures it.
    """

    build: Callable[..., Scenario]
    study: Callable[[StudySizing], dict[str, float]] | None = None
    action: str | None = None
    ablation: bool = False


#: Every scenario, in table order: the one list that ``make_scenario`` (and ``experiments.rollout``),
#: the study's evaluations (:func:`mann_jax.evaluate.controller.study_scenarios`) and the expert
#: ablation read.
SCENARIOS: dict[str, ScenarioSpec] = {
    "walk": ScenarioSpec(walk, study=lambda z: dict(speed=z.walk_speed, seconds=z.seconds), action="speed",
                         ablation=True),
    "run": ScenarioSpec(run, study=lambda z: dict(speed=z.run_speed, seconds=z.seconds), action="speed",
                        ablation=True),
    "turn90": ScenarioSpec(turn90, study=_study_turn, action="heading", ablation=True),
    "turn180": ScenarioSpec(turn180, study=_study_turn, action="heading"),
    "trot_stop": ScenarioSpec(trot_stop),
    "sit": ScenarioSpec(sit, study=_study_hold, action="rest", ablation=True),
    "lie": ScenarioSpec(lie, study=_study_hold, action="rest", ablation=True),
    "jump": ScenarioSpec(jump, study=lambda z: dict(speed=2.0, seconds=z.seconds, jump_at_seconds=0.5 * z.seconds,
                                                    jump_seconds=min(0.5, 0.2 * z.seconds)),
                         action="airborne", ablation=True),
}


def make_scenario(name: str, **params: Any) -> Scenario:
    """The scenario ``name`` with parameter overrides (e.g. ``speed=1.5``, ``fps=60``).

    Raises:
      ValueError: unknown name (the message lists the names) or unknown parameter.
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)}")
    build = SCENARIOS[name].build
    accepted = list(inspect.signature(build).parameters)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"scenario {name!r} has no parameter(s) {unknown}; accepted: {accepted}")
    return build(**params)


def study_scenario(name: str, sizing: StudySizing, *, fps: float) -> Scenario:
    """Scenario ``name`` as the study's evaluations size it.

    Raises:
      ValueError: ``name`` is not registered or the study does not use it.
    """
    spec = SCENARIOS.get(name)
    if spec is None or spec.study is None:
        raise ValueError(f"unknown study scenario {name!r}; expected one of {list(study_scenario_names())}")
    return spec.build(**spec.study(sizing), fps=fps)


def study_scenario_names() -> tuple[str, ...]:
    """The scenarios the study sizes (:attr:`ScenarioSpec.study`), in table order."""
    return tuple(n for n, s in SCENARIOS.items() if s.study is not None)


def ablation_scenario_names() -> tuple[str, ...]:
    """The scenarios the expert ablation measures (:attr:`ScenarioSpec.ablation`), in table order."""
    return tuple(n for n, s in SCENARIOS.items() if s.ablation)


def pad(scenario: Scenario, num_frames: int) -> Scenario:
    """Extend a scenario to ``num_frames`` by holding its last command."""
    n = scenario.num_frames
    if num_frames < n:
        raise ValueError(f"cannot pad {scenario.name!r} ({n} frames) to fewer frames ({num_frames})")
    extra = num_frames - n

    def hold(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]) if extra else a

    c = scenario.control
    control = Control(move=hold(c.move), heading=hold(c.heading), styles=hold(c.styles))
    return dataclasses.replace(scenario, control=control, commanded_speed=hold(scenario.commanded_speed))


def stack_scenarios(scenarios: list[Scenario]) -> tuple[Control, np.ndarray]:
    """Batched control ``(S, T, ...)`` and commanded speeds ``(S, T)``, shorter scenarios padded."""
    if not scenarios:
        raise ValueError("no scenarios to stack")
    t = max(s.num_frames for s in scenarios)
    padded = [pad(s, t) for s in scenarios]
    control = Control(move=np.stack([s.control.move for s in padded]),
                      heading=np.stack([s.control.heading for s in padded]),
                      styles=np.stack([s.control.styles for s in padded]))
    return control, np.stack([s.commanded_speed for s in padded])
