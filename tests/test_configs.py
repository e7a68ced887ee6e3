"""Configs and the prepare_data command."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from configs import default, dog

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", [default, dog])
@pytest.mark.parametrize("arg", [None, "runlocal"])
def test_configs_build(module, arg):
    config = module.get_config(arg)
    assert set(config) == {"data", "model", "train", "pruning"}
    assert config.train.batch_size == 32 and config.train.learning_rate == 1e-4
    if arg == "runlocal":
        assert config.train.epochs < 150
    else:
        assert config.train.epochs == 150 and tuple(config.model.hidden_sizes) == (512, 512)


@pytest.mark.parametrize("module", [default, dog])
def test_unknown_config_argument(module):
    with pytest.raises(ValueError, match="unknown config argument 'fast'"):
        module.get_config("fast")


@pytest.mark.slow
def test_prepare_data_command(tmp_path):
    out_json = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "experiments.prepare_data", "--config", "configs/default.py",
           "--config.data.synthetic_clips=3", "--config.data.synthetic_seconds=5",
           f"--config.data.cache_dir={tmp_path}", f"--json={out_json}"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "dims        input 480, output 363" in run.stdout
    assert "style rows  Idle" in run.stdout
    summary = json.loads(out_json.read_text())
    assert summary["clips"] == 3 and summary["input_dim"] == 480
    # A missing folder is one clear line, not a traceback dump.
    cmd = [sys.executable, "-m", "experiments.prepare_data", "--config", "configs/dog.py",
           f"--config.data.path={tmp_path / 'nowhere'}"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert run.stderr.strip() == f"error: {tmp_path / 'nowhere'}: folder does not exist"


@pytest.mark.slow
def test_only_user_errors_become_one_line(tmp_path):
    """A config's own ConfigError is one line (status 2); a bug in a config keeps its traceback."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", "experiments.train", *args, f"--workdir={tmp_path / 'w'}"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)

    bad_arg = run("--config", "configs/default.py:fast")
    assert bad_arg.returncode == 2, bad_arg.stderr[-2000:]
    assert bad_arg.stderr.strip() == ("error: --config=configs/default.py:fast: unknown config argument 'fast'; "
                                      "expected nothing or 'runlocal'")
    buggy = tmp_path / "buggy.py"
    buggy.write_text("from configs import default\n\n\ndef get_config(arg=None):\n"
                     "    return default.get_config().no_such_section\n")
    bug = run("--config", str(buggy))
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "no_such_section" in bug.stderr, bug.stderr[-2000:]
    assert not (tmp_path / "w").exists()


def test_pretrained_study_config_prunes_the_authors_network_and_trains_dense_ones_from_scratch(tmp_path):
    from configs import study
    from mann_jax.study.command import remaining_work
    from mann_jax.study.models import sweep_config
    from mann_jax.study.same_size import _dense_overrides

    config = study.get_config("pretrained")
    assert config.train.init_from.endswith("mann_pretrained")
    assert config.data.normalisation_from == config.train.init_from  # the network's own normalisation
    assert tuple(config.model.hidden_sizes) == (512, 512) and config.train.epochs == 2
    assert len(config.study.levels) == 10 and len(config.study.seeds) == 3
    dense = sweep_config(config, levels=(0.0,), overrides=_dense_overrides(config, 128, 2))
    assert dense.train.init_from == "" and dense.train.epochs == 20 and tuple(dense.model.hidden_sizes) == (128, 128)
    assert dense.data.normalisation_from == config.train.init_from  # every model of the study reads the same rows
    (tmp_path / "tradeoff").mkdir()
    (tmp_path / "tradeoff" / "results.json").write_text("{}")
    assert remaining_work(["tradeoff", "same_size"], str(tmp_path)).endswith(
        "1 of 2 experiments done (tradeoff); remaining: same_size")
