"""Several processes, one run: JAX's multi-controller runtime (``jax.distributed``) for sweeps.

Every process runs the same program on its own devices; ``jax.devices()`` lists the devices of all
of them, and an array sharded over that global mesh is only partly held by each process. So:

* host-side reads of sharded arrays (losses, statistics, checkpoints, the table) go through
  :func:`to_host`, a collective (``process_allgather``): EVERY process must make the same reads in
  the same order, or the others wait for it (until the distributed runtime's timeout);
* only process 0 (:func:`is_main`) writes files that are not checkpoints (table, plot,
  TensorBoard); Orbax checkpoints are written by all processes together (Orbax's multi-process
  protocol: each takes part, process 0 commits);
* :func:`check_same_run` refuses, on every process at once, a start where processes were given
  different configs or data, or do not see the same workdir (a shared filesystem).

On CPU the processes exchange arrays through gloo (:func:`initialize` selects it).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mann_jax.config_errors import ConfigError


class MultihostError(ConfigError):
    """The processes of a multi-process run cannot work together (bad settings, disagreeing setups)."""


#: Seconds a process waits at :func:`barrier` for the others (set by :func:`initialize`).
_barrier_timeout_s = 300
#: Numbers the barriers: every process passes the same ones in the same order.
_barrier_ids = itertools.count()


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, initialization_timeout: int = 300,
               heartbeat_timeout: int = 100) -> None:
    """``jax.distributed.initialize`` with gloo collectives on CPU; call before anything starts JAX.

    ``initialization_timeout``: seconds to wait for every process to connect (and at each
    :func:`barrier`); past it JAX's runtime ends the process with its own message (a fatal log, no
    exception). ``heartbeat_timeout``: seconds after which a silent process counts as dead and the
    others are stopped, so that none waits forever.

    Raises:
        MultihostError: no coordinator found, an id outside ``[0, num_processes)``, or the processes
            connected but could not start their devices together (one left in between).
    """
    global _barrier_timeout_s
    _barrier_timeout_s = int(initialization_timeout)
    # CPU processes exchange arrays through gloo (accelerators use their own collectives).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # JAX ends a process whose peers do not connect in time with its own (fatal) log: say first what it waits for.
    print(f"--multihost: process {'?' if process_id is None else process_id} of "
          f"{'?' if num_processes is None else num_processes} connecting to the coordinator "
          f"{coordinator_address or '(from the environment)'}; waiting up to {initialization_timeout} s for every "
          "process", file=sys.stderr, flush=True)
    try:
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=int(initialization_timeout),
                                   heartbeat_timeout_seconds=int(heartbeat_timeout))
        # Start the backend now: the processes exchange their device lists, so that a process that
        # fails later (a bad config) finds the others past this point and they notice it gone.
        jax.devices()
    except ValueError as e:  # no coordinator found, or an id outside [0, num_processes)
        raise MultihostError(f"--multihost: {e}") from None
    except Exception as e:  # noqa: BLE001 -- JaxRuntimeError: no device lists exchanged (a process left)
        first = (str(e).strip().splitlines() or [""])[0]
        raise MultihostError(
            f"--multihost: the processes could not start their devices together ({type(e).__name__}: "
            f"{first[:300]}); start every process with the same --coordinator_address and --num_processes and "
            "distinct --process_id") from None


def is_main() -> bool:
    """Whether this process writes the run's files (process 0; always true in a single process)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Every process waits here for the others (the distributed runtime's barrier, no device collective).

    Before each exchange of arrays: gloo gives a process only 30 s (fixed in jaxlib 0.10.2) to find
    its peers when it first exchanges with them, so a process still compiling what another already
    runs would fail it; this barrier waits up to the ``initialization_timeout`` instead.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed  # the client JAX's own multihost code and Orbax use

    client = distributed.global_state.client
    assert client is not None  # more than one process: jax.distributed.initialize has connected the client
    client.wait_at_barrier(f"mann_jax/{name}/{next(_barrier_ids)}", timeout_in_ms=_barrier_timeout_s * 1000)


def to_host(tree: Any) -> Any:
    """Host numpy copy of a pytree whose arrays may be sharded over the devices of several processes.

    A collective when some array spans other processes' devices: every process must call it with
    the same structure at the same point of the program. Arrays this process holds whole (and
    numpy or Python values) are read locally.
    """
    def spans_processes(x: Any) -> bool:
        return isinstance(x, jax.Array) and not x.is_fully_addressable

    leaves, treedef = jax.tree.flatten(tree)
    spanning = [i for i, x in enumerate(leaves) if spans_processes(x)]
    if spanning:  # only the spanning leaves: process_allgather would also stack the local ones per process
        from jax.experimental import multihost_utils

        barrier("to_host")
        gathered = multihost_utils.process_allgather([leaves[i] for i in spanning], tiled=True)
        for i, value in zip(spanning, gathered, strict=True):
            leaves[i] = value
    return jax.tree.unflatten(treedef, [np.asarray(x) for x in jax.device_get(leaves)])


def gather_rows(values: np.ndarray) -> np.ndarray:
    """``(process_count, *values.shape)``: every process's ``values`` (the same shape on all), in process order."""
    values = np.asarray(values)
    if jax.process_count() == 1:
        return values[None]
    from jax.experimental import multihost_utils

    barrier("gather_rows")
    return np.asarray(multihost_utils.process_allgather(values, tiled=False))


def _digest(value: Any) -> np.ndarray:
    """Four int32 words of the SHA-256 of ``value`` as canonical JSON."""
    text = json.dumps(value, sort_keys=True, default=str).encode()
    return np.frombuffer(hashlib.sha256(text).digest()[:16], np.int32).copy()


def check_same_run(setup: Any, workdir: Path) -> None:
    """Refuses (on every process alike) a multi-process start whose processes disagree.

    ``setup`` (JSON-able: the config and the data's cache key) must hash the same on every process,
    and every process must see, in ``workdir``, the token file process 0 writes there (the same
    directory on a shared filesystem). A collective; nothing to do in a single process.

    Raises:
        MultihostError: naming the processes that differ and what to fix.
    """
    if jax.process_count() == 1:
        return
    token_file = workdir / ".multihost_token"
    token = np.frombuffer(os.urandom(16), np.int32).copy()
    if is_main():
        token_file.write_bytes(token.tobytes())
    barrier("workdir_token_written")
    try:
        seen = np.frombuffer(token_file.read_bytes(), np.int32)
        seen = seen.copy() if seen.shape == (4,) else np.zeros(4, np.int32)
    except OSError:
        seen = np.zeros(4, np.int32)
    rows = gather_rows(np.concatenate([_digest(setup), seen]))
    if is_main():
        token_file.unlink(missing_ok=True)  # every process has read it: the gather came after
    other_setup = [p for p in range(len(rows)) if not np.array_equal(rows[p, :4], rows[0, :4])]
    other_dir = [p for p in range(len(rows)) if not np.array_equal(rows[p, 4:], rows[0, 4:])]
    if other_setup:
        raise MultihostError(
            f"process(es) {', '.join(map(str, other_setup))} run a different config or data than process 0 "
            "(every process needs the same --config, overrides and dataset); start all with the same command")
    if other_dir:
        raise MultihostError(
            f"process(es) {', '.join(map(str, other_dir))} do not see the --workdir of process 0 ({workdir}): every "
            "process needs the same directory, on a filesystem all hosts share")


#: Words of the errors JAX raises when another process died or cannot be reached (gloo's collectives,
#: the distributed runtime's barriers and heartbeats).
_PEER_FAILURE_MARKS: tuple[str, ...] = ("Gloo", "Connection closed by peer", "Connection reset by peer",
                                        "heartbeat", "coordination service", "Barrier", "DEADLINE_EXCEEDED")


def is_peer_failure(error: BaseException) -> bool:
    """Whether ``error`` says that another process of the run stopped or cannot be reached."""
    text = str(error)
    return jax.process_count() > 1 and any(mark in text for mark in _PEER_FAILURE_MARKS)


def latest_checkpoint_note(workdir: str | os.PathLike) -> str:
    """``"the checkpoints up to step N in DIR are intact"`` (what a restart resumes from), or that none was written."""
    directory = Path(workdir) / "checkpoints"
    steps = sorted(int(p.name) for p in directory.glob("*") if p.is_dir() and p.name.isdigit()) \
        if directory.is_dir() else []
    if not steps:
        return "no checkpoint was written"
    return f"the checkpoints up to step {steps[-1]} in {directory} are intact"


def peer_failure_message(error: BaseException, workdir: str | os.PathLike) -> str:
    """One line for :func:`is_peer_failure` errors: what happened, what survived, how to go on."""
    first = (str(error).strip().splitlines() or [""])[0][:300]
    note = latest_checkpoint_note(workdir)
    return (f"another process of this {jax.process_count()}-process run stopped or cannot be reached "
            f"({type(error).__name__}: {first}); {note}: restart every process with the same command"
            + ("" if note.startswith("no ") else " to resume"))


def started() -> bool:
    """Whether ``jax.distributed`` runs in this process (after :func:`initialize`)."""
    from jax._src import distributed  # no public query

    return distributed.global_state.client is not None
