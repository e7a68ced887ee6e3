"""Metric writers: every one the code opens is closed, also when a run fails, so no process ends in
tensorboardX's atexit traceback (Python >= 3.12 refuses the thread its hook starts at shutdown)."""

import subprocess
import sys
from pathlib import Path

import pytest

from configs import default
from configs import sweep as sweep_config
from mann_jax import sweep
from mann_jax.errors import TrainingError
from mann_jax.metric_writer import MetricWriter, open_logdirs
from mann_jax.train import train

REPO = Path(__file__).resolve().parents[1]
# Tiny models that diverge at once (learning rate 1e6) before their first logged event: the case in
# which an unclosed writer has never started its queue's thread, so closing it at exit fails.
TINY_DIVERGING = [
    "--config.data.synthetic_clips=3", "--config.data.synthetic_seconds=6",
    "--config.model.hidden_sizes=(16,16)", "--config.model.n_experts=2",
    "--config.train.batch_size=16", "--config.train.epochs=2", "--config.train.log_every_steps=1000",
    "--config.train.learning_rate=1e6",
]


def diverging(config, cache_dir):
    config.data.update(synthetic_clips=3, synthetic_seconds=6.0, cache_dir=str(cache_dir))
    config.model.update(hidden_sizes=(16, 16), n_experts=2)
    config.train.update(batch_size=16, epochs=2, log_every_steps=1000, learning_rate=1e6)
    return config


def test_open_logdirs_lists_a_writer_until_it_is_closed(tmp_path):
    writer = MetricWriter(tmp_path / "a")
    with MetricWriter(tmp_path / "b") as other:
        assert open_logdirs() == [str(tmp_path / "a"), str(tmp_path / "b")]
        other.write_scalars(0, {"x": 1.0})
    assert open_logdirs() == [str(tmp_path / "a")]
    writer.close()
    writer.close()  # closing twice is harmless
    assert open_logdirs() == []


@pytest.mark.slow
def test_a_diverging_training_run_closes_its_writer(tmp_path):
    with pytest.raises(TrainingError, match="diverged"):
        train(diverging(default.get_config(), tmp_path / "cache"), tmp_path / "run", progress=False)
    assert open_logdirs() == []


@pytest.mark.slow
def test_a_diverging_sweep_closes_its_writers(tmp_path):
    config = diverging(sweep_config.get_config(), tmp_path / "cache")
    config.sweep.update(levels=(0.0, 0.5), strategy="vmap")
    with pytest.raises(TrainingError, match="diverged"):
        sweep.run_sweep(config, tmp_path / "sweep", progress=False)
    assert open_logdirs() == []


@pytest.mark.slow
def test_a_failing_command_ends_without_an_atexit_traceback(tmp_path):
    # Python 3.11 still starts the hook's thread at shutdown, so only Python >= 3.12 shows the traceback;
    # the tests above catch an unclosed writer on any version.
    cmd = [sys.executable, "-m", "experiments.train", "--config", "configs/default.py",
           f"--workdir={tmp_path / 'run'}", f"--config.data.cache_dir={tmp_path / 'cache'}", *TINY_DIVERGING]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: " in done.stderr and "diverged" in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr[-2000:]
