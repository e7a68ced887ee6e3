"""Orbax checkpoints of a training run: the whole train state plus a JSON record of where it was.

A checkpoint holds two items:

* ``state`` — the train state pytree (parameters, optimizer state with any pruning masks, step
  and RNG key), saved with Orbax's ``StandardSave``;
* ``meta`` — JSON: the data position (epoch, batch in epoch), the config the run was started
  with and the dataset's cache key, so a resumed run can refuse a changed setup.

Saves run in the background by default (Orbax's asynchronous checkpointing):
:meth:`Checkpoints.save` returns once the state is copied off the devices, and the files are
written while training goes on (a sweep of thirty 8x512 models writes 2.2 GB per checkpoint, ~4 s
on an H100 machine, during which training used to stop; on the 2-core CPU, ten 8x512 models for 408
steps with a checkpoint every 100 took 134 s instead of 151 s). Orbax writes each step into a
temporary directory and renames it when complete, so a kill mid-write leaves the previous
checkpoints intact and the latest *complete* step is restored: a run killed within a write resumes
from the checkpoint before (training is deterministic, so it ends the same). Every read
(:meth:`Checkpoints.latest_step`, :meth:`Checkpoints.restore`, ...) and :meth:`Checkpoints.close`
first waits for a write in flight. ``background=False`` saves synchronously.

Several processes (:mod:`mann_jax.multihost`): every process makes the same calls with the same
host-side state (a sweep gathers it first); Orbax then writes the files from process 0 and commits
the step once every process has reached it, and every process restores from the shared directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

from mann_jax.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint cannot be restored (corrupt, or from a different setup); names the directory."""


class Checkpoints:
    """Save every ``save_every`` steps (and on request), keep the last ``keep``.

    Args:
      directory: where the step folders live (created).
      save_every: steps between periodic saves (the cadence :func:`mann_jax.loop.run_loop` saves at).
      keep: number of checkpoints kept.
      background: write the files in a background thread (default) or before :meth:`save` returns.
    """

    def __init__(self, directory: str | os.PathLike, *, save_every: int, keep: int, background: bool = True):
        if save_every < 1 or keep < 1:
            raise ValueError(f"save_every ({save_every}) and keep ({keep}) must be >= 1")
        self.directory = Path(directory).absolute()
        self.save_every = int(save_every)
        self.background = bool(background)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(keep), create=True, enable_async_checkpointing=self.background)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def wait(self) -> None:
        """Blocks until a save in flight is on disk (raises what the background write raised)."""
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        self.wait()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        self.wait()
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Save ``state`` and ``meta`` as ``step`` (replaces nothing already saved at that step).

        In the background mode this returns once ``state`` is copied off the devices (the caller may
        then donate its buffers); the previous write, if still running, is finished first.
        """
        if step in self.all_steps():
            return
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        if not self.background:
            self.wait()

    def read_meta(self, step: int | None = None) -> dict[str, Any]:
        """Only the JSON record of ``step`` (default latest): check it before restoring the state."""
        self.wait()
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint to read")
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as e:  # a damaged step folder
            raise CheckpointError(f"{self.directory / str(step)}: cannot read checkpoint metadata "
                                  f"({_short(e)}){self._others(step)}") from e
        return dict(restored["meta"])

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """The state (with the structure and dtypes of ``abstract_state``) and meta of ``step`` (default latest)."""
        self.wait()
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint to restore")
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()),
            )
        except Exception as e:  # orbax raises many types for a damaged or mismatched checkpoint
            raise CheckpointError(f"{self.directory / str(step)}: cannot restore checkpoint "
                                  f"({_short(e)}){self._others(step)}") from e
        return restored["state"], dict(restored["meta"])

    def _others(self, step: int) -> str:
        """``"; other steps here: ..."`` naming the checkpoints besides ``step`` (what a user can fall back to)."""
        others = [s for s in self.all_steps() if s != step]
        return f"; other steps here: {', '.join(map(str, sorted(others)))}" if others else ""

    def close(self) -> None:
        """Finishes a write in flight and releases the manager."""
        try:
            self.wait()
        finally:
            self._manager.close()


def _short(error: Exception, limit: int = 300) -> str:
    """``Type: first line of the message``, at most ``limit`` characters (TensorStore's messages carry a
    whole JSON spec over dozens of lines)."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > limit:
        first = first[:limit] + "..."
    return f"{type(error).__name__}: {first}"
