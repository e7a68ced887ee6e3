"""One writer per workdir: an advisory lock that names its holder.

Every command that writes into a workdir (train, sweep, the study experiments, an export whose
output lies inside the run it reads) holds :func:`hold` on it for its whole run; readers (rollout,
report, TensorBoard) take no lock. A second writer gets :class:`WorkdirLocked`, whose message names
the holder's pid, host and command, and the commands print it as one ``error:`` line, status 2.

Design: the lock is ``fcntl.flock`` on ``<workdir>/.lock``, whose content is the holder's pid, host
and command, rewritten by each new holder and emptied on release. The file stays, except that a
workdir the lock created is removed again when the command wrote nothing into it (a refusal leaves
no trace). The kernel drops a flock when its
process dies, however it dies, so a lock left by a killed process is never an obstacle: the next
writer takes it over and logs the previous holder named in the file. ``flock`` is only advisory
and is as reliable as the filesystem's locking (local disks, NFSv4); a multi-host run takes the
lock in process 0 only.
"""

# Hand-written: ``filelock``'s FileLock (flock as here) records no holder, so a refused writer could
# not say who holds the workdir; the few lines below add that without a new dependency.

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from mann_jax.errors import UserError

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class WorkdirError(UserError, RuntimeError):
    """The workdir cannot be locked (not a folder, not writable)."""


class WorkdirLocked(WorkdirError):
    """Another live process holds the workdir's lock; the message names it."""


def _holder_text(path: Path) -> str:
    """``pid N on host H (command)`` from a lock file, or what is missing."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "a process that has not recorded itself yet"
    text = f"pid {info['pid']} on host {info.get('host', '?')}"
    return text + (f" ({info['command']})" if info.get("command") else "")


def _missing_folders(folder: Path) -> list[Path]:
    """The folders ``folder.mkdir(parents=True)`` will create, deepest first."""
    missing, p = [], folder.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    return missing


def _locked_descriptor(folder: Path, path: Path) -> int:
    """An open descriptor of ``path`` holding its flock.

    Retries when the file was removed or replaced between opening and locking it (a holder that
    created the workdir removes it again when its command wrote nothing), so two processes never
    hold locks on two different files of one path.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WorkdirError(f"{folder}: cannot lock the workdir: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):  # no flock on this filesystem
                raise WorkdirError(f"{folder}: cannot lock the workdir: {e.strerror or e}") from None
            raise WorkdirLocked(f"{folder}: another process writes into this workdir: {_holder_text(path)}; "
                                "wait for it to end or use another --workdir") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def hold(workdir: str | os.PathLike, *, enabled: bool = True) -> Iterator[Path | None]:
    """Holds ``<workdir>/.lock`` for the ``with`` block, creating the workdir; yields the lock path.

    A workdir this call created and the command left empty (refused before writing anything) is
    removed again, so a refused command leaves no trace.

    Args:
      workdir: the folder the command writes into.
      enabled: ``False`` holds nothing (yields ``None``): the non-zero processes of a multi-host run.

    Raises:
      WorkdirLocked: a live process holds the lock (its pid, host and command are in the message).
      WorkdirError: the workdir cannot be created, written or locked.
    """
    if not enabled:
        yield None
        return
    folder = Path(workdir)
    path = folder / LOCK_NAME
    if folder.exists() and not folder.is_dir():
        raise WorkdirError(f"{folder}: the workdir is a file, not a folder")
    created = _missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"{folder}: cannot create the workdir: {e.strerror or e}") from None
    fd = _locked_descriptor(folder, path)
    try:
        previous = os.read(fd, 4096).decode(errors="replace").strip()
        if previous:  # the last holder did not release it: it was killed (a flock dies with its process)
            log.warning("%s: taking over a lock left by %s, which is no longer running", path, _holder_text(path))
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # an empty file: released cleanly, nobody to take over from
            if created and os.listdir(folder) == [LOCK_NAME]:  # still holding it, so nobody else is inside
                os.unlink(path)
                for d in created:
                    try:
                        d.rmdir()
                    except OSError:  # another process put something there meanwhile
                        break
    finally:
        os.close(fd)  # closing the descriptor releases the flock
