"""Training from the authors' trained network (``train.init_from``): its weights, its normalisation."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from configs import default
from mann_jax.config_errors import ConfigError
from mann_jax.data.dataset import build_dataset
from mann_jax.export.ai4animation import load_ai4animation_weights, normalisation_from_weights
from mann_jax.train import initial_model, train

PRETRAINED = Path(__file__).resolve().parents[1].parent / "shared/data/mann_pretrained"

pytestmark = pytest.mark.skipif(not (PRETRAINED / "wc0_w.bin").is_file(),
                                reason=f"original MANN weights not found at {PRETRAINED}")


def _config(tmp_path: Path):
    config = default.get_config()
    config.data.update(synthetic_clips=3, synthetic_seconds=6.0, cache_dir=str(tmp_path / "cache"))
    config.train.update(init_from=str(PRETRAINED), epochs=1, batch_size=32, log_every_steps=5,
                        checkpoint_every_steps=1000)
    return config


def test_initial_parameters_and_normalisation_are_the_folders(tmp_path):
    config = _config(tmp_path)
    weights = load_ai4animation_weights(PRETRAINED)
    params = initial_model(config, seed=0).params
    np.testing.assert_array_equal(np.asarray(params["layer1"]["alpha"][3]), weights["cp1_a3"].T)
    np.testing.assert_array_equal(np.asarray(params["gating"]["layer0"]["kernel"]), weights["wc0_w"].T)
    # The data config follows train.init_from by reference: the dataset normalises as the network expects.
    assert config.data.normalisation_from == str(PRETRAINED)
    dataset = build_dataset(config.data, progress=False)
    want = normalisation_from_weights(weights)
    for got, expected in zip(dataset.normalisation, want):
        np.testing.assert_array_equal(got, expected)


def test_a_network_of_other_sizes_is_a_clear_error(tmp_path):
    config = _config(tmp_path)
    config.model.hidden_sizes = (256, 256)
    with pytest.raises(ConfigError, match=r"train.init_from .*mann_pretrained: parameters do not match .*"
                                          r"\(8, 480, 512\) != \(8, 480, 256\)"):
        initial_model(config, seed=0)


@pytest.mark.slow
def test_fine_tuning_starts_from_the_folder_and_resumes(tmp_path):
    config = _config(tmp_path)
    config.train.update(learning_rate=1e-6, weight_decay=0.0)  # a step barely moves a trained network
    result = train(config, tmp_path / "run", progress=False)
    start = initial_model(config, seed=0).params
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(jax.tree.leaves(result.state.params), jax.tree.leaves(start)))
    assert 0 < moved < 1e-3
    config.train.epochs = 2  # resume: continues from the checkpoint, not from the folder again
    resumed = train(config, tmp_path / "run", progress=False)
    assert resumed.steps == 2 * result.steps


def test_a_missing_or_broken_folder_is_a_clear_error(tmp_path):
    from mann_jax.export.ai4animation import WeightsFormatError

    config = _config(tmp_path)
    config.train.init_from = str(tmp_path / "nowhere")
    with pytest.raises(WeightsFormatError, match=r"nowhere: weights folder not found"):
        initial_model(config, seed=0)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("Xmean", "Ymean", "Ystd"):
        (broken / f"{name}.bin").write_bytes((PRETRAINED / f"{name}.bin").read_bytes())
    (broken / "Xstd.bin").write_bytes((PRETRAINED / "Xstd.bin").read_bytes()[:-4])
    config.data.normalisation_from = str(broken)
    with pytest.raises(WeightsFormatError, match=r"Xstd.bin: wrong size for a 480 float32 array"):
        build_dataset(config.data, progress=False)
