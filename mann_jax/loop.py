"""The training loop shared by :func:`mann_jax.train.train` (one model) and :mod:`mann_jax.sweep` (many).

The loop knows steps, epochs and cadences, not models: a caller hands it a multi-step function
(``steps(state, rows_seq, update_masks_seq) -> (state, summed loss)``) and callbacks for what is
written at a log line and an epoch end. Each cadence ("is it due after step ``n``?") is a
:class:`Periodic`, a pure function of the step, so the loop can look ahead and hand every step up to
the next due one to a single ``steps`` call (a sweep runs them model by model, each state staying in
cache). Losses stay on device between two log lines. A non-finite loss, or non-finite weights about
to be checkpointed, end the run with :class:`~mann_jax.errors.TrainingError`; a bad state is never
written over the good checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mann_jax.checkpoint import Checkpoints
from mann_jax.errors import TrainingError
from mann_jax.multihost import to_host


@dataclasses.dataclass(frozen=True)
class Periodic:
    """Whether an action is due after ``step`` steps: every ``every_steps`` steps (0: never) and on ``on_steps``.

    In the manner of ``clu.periodic_actions``, hand-written because clu's module imports TensorFlow (through
    ``clu.metric_writers``). Step-based only and stateless, so that the loop can ask ahead of time.
    """

    every_steps: int = 0
    on_steps: tuple[int, ...] = ()

    def __call__(self, step: int) -> bool:
        return (self.every_steps > 0 and step % self.every_steps == 0) or step in self.on_steps

    @classmethod
    def every_epochs(cls, epochs: int, *, n_batches: int, last_step: int) -> Periodic:
        """Due at the end of every ``epochs``-th epoch and after the last step."""
        return cls(every_steps=epochs * n_batches, on_steps=(last_step,))


def steps_one_after_another(step: Callable[..., tuple[Any, dict[str, jax.Array]]]) -> Callable[..., tuple[Any, Any]]:
    """The multi-step function :func:`run_loop` calls, from a one-step ``step(state, rows, update_masks=...)``.

    ``steps(state, rows_seq, update_masks_seq)`` runs the steps in order and returns the new state
    and the sum of their losses (on device).
    """

    def steps(state: Any, rows_seq: Sequence[Any], update_masks: Sequence[bool]) -> tuple[Any, Any]:
        total: Any = 0.0
        for rows, update in zip(rows_seq, update_masks, strict=True):
            state, metrics = step(state, rows, update_masks=update)
            total = total + metrics["loss"]
        return state, total

    return steps


def run_loop(
    state: Any,
    steps: Callable[[Any, Sequence[Any], Sequence[bool]], tuple[Any, Any]],
    *,
    start_step: int,
    total_steps: int,
    n_batches: int,
    log_every: int,
    samples_per_step: int,
    rows_for_epoch: Callable[[int], Any],
    checkpoints: Checkpoints,
    meta_at: Callable[[int], dict[str, Any]],
    on_log: Callable[[int, int, np.ndarray, float, Any], dict[str, str]],
    on_epoch_end: Callable[[int, int, Any], None],
    bar: Any,
    checkpoint_state: Callable[[Any], Any] = lambda s: s,
    stop_after: int | None = None,
    model_names: Sequence[str] | None = None,
    update_masks_at: Callable[[int], bool] | None = None,
) -> tuple[Any, np.ndarray | None]:
    """Runs steps ``start_step .. total_steps - 1`` (see the module docstring).

    ``rows_for_epoch(e)[b]`` are the rows of batch ``b`` of epoch ``e`` (fetched once per epoch).
    ``steps`` returns the new state and the sum of the steps' losses (a scalar, or one value per
    model of a sweep). Every ``log_every`` steps, at each epoch end and at the end, the window's mean
    loss goes to ``on_log(done, step, mean_loss, samples_per_second, state)``, which writes it and
    returns the progress-bar postfix; a non-finite one raises (naming the models, with
    ``model_names``). After each epoch ``on_epoch_end(done, epoch, state)`` runs; checkpoints
    (``checkpoint_state(state)``, with ``meta_at(done)``) are saved every ``checkpoints.save_every``
    steps and after the last step.

    Args:
        stop_after: Stop (after saving a checkpoint) once this many steps ran in this call, e.g. to
            fit a time slot; the run then resumes from its workdir.
        update_masks_at: For pruned training (:func:`mann_jax.train.mask_update_steps`): which steps
            are due for a mask update (``update_masks_seq``; all True without it), so that ``steps``
            can run a step compiled without the update on all others.

    Returns:
        The final state and the mean loss of the last logging window (None when no step ran).
    """
    log_due = Periodic(every_steps=log_every, on_steps=(total_steps,))
    epoch_end = Periodic(every_steps=n_batches)
    save_due = Periodic(every_steps=checkpoints.save_every, on_steps=(total_steps,))

    def stop_due(done: int) -> bool:
        return stop_after is not None and done - start_step >= stop_after

    def anything_due(done: int) -> bool:
        return log_due(done) or epoch_end(done) or save_due(done) or stop_due(done)

    order: Any = None  # rows_for_epoch(order_epoch), read on the first pass
    order_epoch = -1
    window_loss: Any = 0.0
    window_steps, window_start = 0, time.perf_counter()
    last_loss: np.ndarray | None = None
    first = start_step
    while first < total_steps:
        epoch = first // n_batches
        if epoch != order_epoch:
            order, order_epoch = rows_for_epoch(epoch), epoch
        last = first  # the last step of this call (an epoch end is always due, so one epoch at most)
        while not anything_due(last + 1):
            last += 1
        chunk = range(first, last + 1)
        state, loss_sum = steps(state, [order[i - epoch * n_batches] for i in chunk],
                                [update_masks_at(i) if update_masks_at else True for i in chunk])
        window_loss = window_loss + loss_sum
        window_steps += len(chunk)
        done = first = last + 1
        bar.update(len(chunk))
        stopping = stop_due(done)
        if log_due(done) or epoch_end(done) or stopping:
            mean = _window_mean(window_loss, window_steps, done, checkpoints, model_names)
            rate = window_steps * samples_per_step / max(time.perf_counter() - window_start, 1e-9)
            bar.set_postfix(on_log(done, last, mean, rate, state))
            last_loss = mean
            window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
        if epoch_end(done):
            on_epoch_end(done, epoch, state)
        if save_due(done) or stopping:
            _save(checkpoints, done, checkpoint_state(state), meta_at(done))
        if stopping:
            break
    return state, last_loss


def _window_mean(window_loss: Any, window_steps: int, done: int, checkpoints: Checkpoints,
                 model_names: Sequence[str] | None) -> np.ndarray:
    """The window's mean loss on the host; raises when it is not finite."""
    # A sweep over several processes holds the losses sharded: every process reads them together.
    mean = np.asarray(to_host(window_loss), np.float64) / window_steps
    if not np.all(np.isfinite(mean)):
        bad = "" if mean.ndim == 0 else " of " + ", ".join(
            (model_names[int(i)] if model_names else str(i)) for i in np.flatnonzero(~np.isfinite(mean)))
        raise TrainingError(f"training diverged at step {done}: loss {mean.tolist()}{bad}; "
                            f"{_kept_checkpoints(checkpoints)}")
    return mean


def _save(checkpoints: Checkpoints, done: int, state: Any, meta: dict[str, Any]) -> None:
    # A step can turn the weights non-finite while its own loss (computed before the update) is
    # still finite: never write such a state over the good ones.
    if not all_finite(state):
        raise TrainingError(f"training diverged by step {done}: non-finite weights or optimizer state; "
                            f"{_kept_checkpoints(checkpoints)}")
    checkpoints.save(done, state, meta)


def all_finite(tree: Any) -> bool:
    """Whether every floating-point entry of ``tree`` is finite (one device reduction per leaf)."""
    finite = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)]
    return bool(jnp.all(jnp.stack(finite))) if finite else True


def _kept_checkpoints(checkpoints: Checkpoints) -> str:
    latest = checkpoints.latest_step()
    if latest is None:
        return "no checkpoint was written"
    return f"the checkpoints up to step {latest} in {checkpoints.directory} are intact (resume from them)"


@contextlib.contextmanager
def closing_outputs(bar: Any, writers: Iterable[Any]) -> Iterator[None]:
    """Around :func:`run_loop`: closes the progress bar, and flushes the metric writers (closes them
    on an error, when the caller will not reach its own close)."""
    writers = list(writers)
    try:
        yield
    except BaseException:
        for w in writers:
            w.close()
        raise
    finally:
        bar.close()
        for w in writers:
            w.flush()
