"""mann_jax.cli in the test process: a user error ends a command with one line and status 2, a bug keeps
its traceback. (The commands' own end-to-end checks start a Python process each and are marked slow.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from absl import flags
from ml_collections import config_flags

from mann_jax import cli
from mann_jax.backend import OPT_OUT_ENV, configure_cpu_backend
from mann_jax.config_errors import ConfigError

DEFAULT_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "default.py")


def _exit_status_and_stderr(capsys, call) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as info:
        call()
    return info.value.code, capsys.readouterr().err.strip().splitlines()


def test_a_user_error_is_one_line_and_a_bug_keeps_its_traceback(capsys):
    def user_error(argv):
        raise ConfigError("config train.epochs must be >= 1, got 0")

    def bug(argv):
        raise ZeroDivisionError("a bug")

    assert _exit_status_and_stderr(capsys, lambda: cli.clear_errors(user_error)(["prog"])) == (
        2, ["error: config train.epochs must be >= 1, got 0"])
    with pytest.raises(ZeroDivisionError, match="a bug"):
        cli.clear_errors(bug)(["prog"])


def test_a_bad_opt_out_value_is_one_line(monkeypatch, capsys):
    # What cli.run does first, before absl starts (the command-line check is slow: a process).
    monkeypatch.setenv(OPT_OUT_ENV, "Maybe")
    status, err = _exit_status_and_stderr(capsys, lambda: cli.clear_errors(lambda _: configure_cpu_backend())([]))
    assert (status, err) == (2, [f"error: environment variable {OPT_OUT_ENV} must be 'on' or 'off', got 'Maybe'"])


@pytest.fixture
def parse(monkeypatch):
    """``parse(*args)``: :func:`mann_jax.cli._parse_flags` of ``["prog", *args]`` with a fresh absl flag
    registry holding only ``--config`` (as the commands define it) as ``flags.FLAGS``, and the arguments as
    ``sys.argv`` (where ml_collections looks for the ``--config.<key>=`` overrides); returns the registry."""

    def parse(*args: str) -> flags.FlagValues:
        argv = ["prog", *args]
        monkeypatch.setattr(sys, "argv", argv)
        registry = flags.FlagValues()
        config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Experiment config.", flag_values=registry,
                                        lock_config=True)
        monkeypatch.setattr(flags, "FLAGS", registry)
        assert cli._parse_flags(argv) == ["prog"]
        return registry

    return parse


def test_a_config_override_typo_and_a_bad_config_argument_are_one_line(parse, capsys):
    status, err = _exit_status_and_stderr(capsys, lambda: parse("--config", DEFAULT_CONFIG, "--config.train.epocs=3"))
    assert status == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert "--config.train.epocs" in err[0] and "epochs" in err[0]  # ml_collections' suggestion
    status, err = _exit_status_and_stderr(capsys, lambda: parse(f"--config={DEFAULT_CONFIG}:fast"))
    assert (status, err) == (2, [f"error: --config={DEFAULT_CONFIG}:fast: unknown config argument 'fast'; "
                                 "expected nothing or 'runlocal'"])


def test_a_good_command_line_parses(parse):
    assert parse("--config", DEFAULT_CONFIG, "--config.train.epochs=3").config.train.epochs == 3
