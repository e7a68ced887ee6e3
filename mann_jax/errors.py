"""The project's error base class: a problem the user can fix, reported as one line.

Every command (:func:`mann_jax.cli.run`) turns a :class:`UserError` into ``error: <message>`` and
exit status 2; any other exception is a bug and keeps its traceback. So a subclass's message must
name what to fix (the file and line, or the config key as the user writes it) and stand alone.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, settings or files: the message names what to fix (the file, line or config key)."""


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (diverged, no data, a workdir it cannot use); earlier checkpoints are left untouched."""
