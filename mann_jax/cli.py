"""Conventions shared by the experiment entry points: user errors as one clear line, no traceback.

Bad input (a malformed clip, a missing folder, a checkpoint from another setup, a diverged run, a
config value out of range, a workdir another process writes into) is the user's to fix, so the
commands print ``error: <file>: <problem>`` and exit with status 2. Only the project's own error
types count as such (:data:`USER_ERRORS`, led by :class:`mann_jax.errors.UserError`); anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import sysconfig
import textwrap
from collections.abc import Callable
from types import TracebackType

from mann_jax.backend import configure_cpu_backend
from mann_jax.errors import UserError

#: The errors a user can fix: the project's own error types all derive from ``UserError``.
USER_ERRORS: tuple[type[Exception], ...] = (UserError,)

# Errors ml_collections raises while applying a ``--config.<key>=`` override (a key typo: KeyError or
# AttributeError; a value of the wrong type: TypeError or ValueError).
_OVERRIDE_ERRORS = (AttributeError, KeyError, TypeError, ValueError)


def clear_errors(main: Callable[[list[str]], object], *, also: tuple[type[Exception], ...] = ()
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


def _library_dirs() -> tuple[str, ...]:
    """Folders of the flag-parsing libraries and the standard library (a frame there is not the project's
    or a config file's)."""
    import absl
    import ml_collections

    libraries = [os.path.dirname(os.path.abspath(m.__file__)) for m in (absl, ml_collections) if m.__file__]
    return tuple(d + os.sep for d in (*libraries, os.path.abspath(sysconfig.get_paths()["stdlib"])))


def _raised_by_flag_libraries(tb: TracebackType | None) -> bool:
    """Whether every frame below the first (the parser's caller) lies in absl or ml_collections: an override
    that ml_collections rejected, not a bug in a config's ``get_config`` or in the project."""
    dirs = _library_dirs()
    frames = []
    while tb is not None:
        frames.append(os.path.abspath(tb.tb_frame.f_code.co_filename))
        tb = tb.tb_next
    return len(frames) > 1 and all(f.startswith(dirs) for f in frames[1:])


def _config_override_message(error: Exception, argv: list[str]) -> str:
    """One line for an exception ml_collections raised while applying a ``--config.<key>=`` override."""
    text = str(error.args[0]) if error.args else str(error)
    for _ in range(3):  # KeyError/AttributeError messages arrive repr'd, sometimes twice
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1].encode().decode("unicode_escape")
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    overrides = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
    return f"bad --config override ({', '.join(overrides) or 'none given'}): {text}"


def _innermost_user_error(error: BaseException) -> BaseException | None:
    """The deepest :data:`USER_ERRORS` instance in ``error``'s cause/context chain (absl and ml_collections
    re-raise a config's error wrapped, with its traceback pasted into the message)."""
    found = None
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, USER_ERRORS):
            found = e
        e = e.__cause__ or e.__context__
    return found


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a config's user error (e.g. an unknown ``:arg``) and a rejected
    ``--config.<key>=`` override as one line and status 2; other flag errors as absl reports them."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        user = _innermost_user_error(e)
        if user is not None:
            flag = re.match(r"flag (--\S+?): ", str(e))
            print(f"error: {flag.group(1) + ': ' if flag else ''}{user}", file=sys.stderr)
            sys.exit(2)
        message = str(e)  # as absl's own parser reports it
        message = f":\n{textwrap.indent(message, '  ')}" if "\n" in message else f": {message}"
        sys.stderr.write(f"FATAL Flags parsing error{message}\nPass --helpshort or --helpfull to see help on flags.\n")
        sys.exit(1)
    except _OVERRIDE_ERRORS as e:
        if not _raised_by_flag_libraries(e.__traceback__):
            raise  # a bug in a config file or in the project: keep the traceback
        print(f"error: {_config_override_message(e, argv)}", file=sys.stderr)
        sys.exit(2)


def run(main: Callable[[list[str]], None], *, also: tuple[type[Exception], ...] = ()) -> None:
    """``absl.app.run(clear_errors(main, also=also))``; a config's user error while the flags are parsed
    and a ``--config.<key>=`` override that names no key of the config (a typo) or cannot be applied also
    end in one line and status 2 (ml_collections raises them while absl parses the flags, before ``main``
    starts). Adds the CPU compiler options every command trains with
    (:func:`mann_jax.backend.configure_cpu_backend`) before anything starts JAX."""
    from absl import app

    clear_errors(lambda _argv: configure_cpu_backend())(sys.argv)  # a bad opt-out value: one line, status 2
    app.run(clear_errors(main, also=also), flags_parser=_parse_flags)
