"""Conventions shared by the experiment entry points: user errors as one clear line, no traceback.

Bad input (a malformed clip, a missing folder, a checkpoint from another setup, a diverged run) is
the user's to fix, so the commands print ``error: <file>: <problem>`` and exit with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

from mann_jax.checkpoint import CheckpointError
from mann_jax.data.errors import MotionDataError
from mann_jax.export.ai4animation import WeightsFormatError
from mann_jax.train import TrainingError

USER_ERRORS: tuple[type[Exception], ...] = (MotionDataError, CheckpointError, TrainingError, WeightsFormatError)


def clear_errors(main: Callable[[list[str]], None], *, also: tuple[type[Exception], ...] = ()
                 ) -> Callable[[list[str]], None]:
    """Wrap an absl ``main`` so user errors (:data:`USER_ERRORS` and ``also``) end the command with one
    line on stderr and status 2."""

    @functools.wraps(main)
    def wrapped(argv: list[str]) -> None:
        try:
            main(argv)
        except USER_ERRORS + also as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapped
