"""mann_jax.checkpoint: background (asynchronous) saves keep the saved state, and reads wait for them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mann_jax.checkpoint import CheckpointError, Checkpoints


def _state(seed: int) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=(64, 256, 256)), jnp.float32), "step": jnp.int32(seed)}


@pytest.mark.parametrize("background", [True, False])
def test_a_save_keeps_the_state_of_its_step_while_training_donates_the_buffers(tmp_path, background):
    checkpoints = Checkpoints(tmp_path, save_every=1, keep=3, background=background)
    update = jax.jit(lambda s: {"w": s["w"] * 2.0 + 1.0, "step": s["step"] + 1}, donate_argnums=0)
    state = _state(1)
    saved = {}
    for step in (1, 2):
        saved[step] = jax.tree.map(np.array, state)
        checkpoints.save(step, state, {"step": step})
        for _ in range(3):  # reuses the saved buffers while a background write may still run
            state = update(state)
        jax.block_until_ready(state)
    assert checkpoints.latest_step() == 2 and checkpoints.all_steps() == [1, 2]
    for step in (1, 2):
        restored, meta = checkpoints.restore(jax.tree.map(np.asarray, saved[step]), step=step)
        assert meta == {"step": step}
        np.testing.assert_array_equal(np.asarray(restored["w"]), saved[step]["w"])
    checkpoints.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["1", "2"]


def test_saving_a_step_twice_keeps_the_first(tmp_path):
    checkpoints = Checkpoints(tmp_path, save_every=1, keep=2)
    first = _state(1)
    checkpoints.save(5, first, {"n": 1})
    checkpoints.save(5, _state(2), {"n": 2})
    restored, meta = checkpoints.restore(jax.tree.map(np.asarray, first))
    assert meta == {"n": 1}
    np.testing.assert_array_equal(np.asarray(restored["w"]), np.asarray(first["w"]))
    checkpoints.close()


def test_restoring_from_an_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to restore"):
        Checkpoints(tmp_path / "empty", save_every=1, keep=1).restore({"w": np.zeros(1)})
