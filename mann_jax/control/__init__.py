"""Controllers that drive a trained MANN: autoregressive rollouts (:mod:`.rollout`) under scripted
scenarios (:mod:`.scenarios`) or replayed real clips, and their rendering (:mod:`.render`)."""

from mann_jax.control.rollout import (
    CharacterState,
    Control,
    ControlSettings,
    Replay,
    ReplayErrors,
    Rollout,
    initial_state_from_input,
    integrate_root,
    load_params,
    network_input,
    replay_errors,
    replay_from_dataset,
    replay_from_motion,
    replay_from_rows,
    rollout,
    simulate,
    stack,
    stack_params,
    start_row,
)
from mann_jax.control.scenarios import SCENARIOS, Scenario, make_scenario, pad, stack_scenarios
from mann_jax.model import check_params

__all__ = [
    "SCENARIOS", "CharacterState", "Control", "ControlSettings", "Replay", "ReplayErrors", "Rollout", "Scenario",
    "check_params",
    "initial_state_from_input", "integrate_root", "load_params", "make_scenario", "network_input", "pad",
    "replay_errors", "replay_from_dataset", "replay_from_motion", "replay_from_rows", "rollout", "simulate", "stack",
    "stack_params", "stack_scenarios", "start_row",
]
