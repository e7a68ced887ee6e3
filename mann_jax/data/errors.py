"""The one exception type of the motion data pipeline.

Every problem with user data (a malformed BVH, a missing folder, a NaN, a clip too short for the
trajectory window) raises :class:`MotionDataError`, whose message names the file and, where it
applies, the line, so a user can open the file and fix it.
"""

from __future__ import annotations

import os

from mann_jax.errors import UserError


class MotionDataError(UserError, ValueError):
    """Bad motion data: names the file (and line) and the problem."""

    def __init__(self, path: str | os.PathLike | None, problem: str, *, line: int | None = None):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        self.line = line
        where = self.path or "<data>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {problem}")
