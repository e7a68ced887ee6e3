"""Conventions shared by the experiment entry points: user errors as one clear line, no traceback.

Bad input (a malformed clip, a missing folder, a checkpoint from another setup, a diverged run, a
workdir another process writes into) is the user's to fix, so the commands print ``error: <file>: <problem>`` and exit with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

from mann_jax.checkpoint import CheckpointError
from mann_jax.config_errors import ConfigError
from mann_jax.data.errors import MotionDataError
from mann_jax.export.ai4animation import WeightsFormatError
from mann_jax.train import TrainingError, configure_cpu_backend
from mann_jax.workdir_lock import WorkdirError

USER_ERRORS: tuple[type[Exception], ...] = (MotionDataError, CheckpointError, TrainingError, WeightsFormatError,
                                             ConfigError, WorkdirError)


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


def _config_override_message(error: Exception, argv: list[str]) -> str:
    """One line for an exception ml_collections raised while applying a ``--config.<key>=`` override."""
    text = str(error.args[0]) if error.args else str(error)
    for _ in range(3):  # KeyError/AttributeError messages arrive repr'd, sometimes twice
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1].encode().decode("unicode_escape")
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    overrides = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
    return f"bad --config override ({', '.join(overrides) or 'none given'}): {text}"


def run(main: Callable[[list[str]], None], *, also: tuple[type[Exception], ...] = ()) -> None:
    """``absl.app.run(clear_errors(main, also=also))``, and a ``--config.<key>=`` override that names no
    key of the config (a typo) or cannot be applied also ends in one line and status 2 (ml_collections
    raises it while absl parses the flags, before ``main`` starts: a traceback otherwise). Adds the
    CPU compiler options every command trains with (:func:`mann_jax.train.configure_cpu_backend`)
    before anything starts JAX."""
    from absl import app

    clear_errors(lambda _argv: configure_cpu_backend())(sys.argv)  # a bad opt-out value: one line, status 2

    started = False

    def tracked(argv: list[str]) -> None:
        nonlocal started
        started = True
        clear_errors(main, also=also)(argv)

    try:
        app.run(tracked)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        if started:
            raise
        print(f"error: {_config_override_message(e, sys.argv)}", file=sys.stderr)
        sys.exit(2)
