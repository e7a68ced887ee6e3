"""The study's dense reference: the network ``train.init_from`` names, untouched, measured like every level.

At toy scale, without the shared data: a small weights folder is written with the project's own
AI4Animation exporter and the toy study starts from it (as ``configs/study.py:pretrained`` starts
from the authors' dog network).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from configs import study as study_config
from mann_jax.data.dataset import build_dataset
from mann_jax.export.ai4animation import save_ai4animation
from mann_jax.study import report, tradeoff
from mann_jax.study.evaluation import METRICS
from mann_jax.study.models import REFERENCE_LABEL, reference_models, tradeoff_models
from mann_jax.study.results import read_results
from mann_jax.train import ModelFunctions, build_model, make_eval_loss

# Trains two toy sweeps and rolls them out: about a minute.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pretrained_toy(tmp_path_factory: pytest.TempPathFactory):
    """``(config, workdir, dataset, folder)``: the toy study starting from a network written as AI4Animation files."""
    tmp = tmp_path_factory.mktemp("reference")
    config = study_config.get_config("toy")
    config.data.cache_dir = str(tmp / "cache")
    config.study.update(levels=(0.0, 0.9), structured_levels=(0.5,), seeds=(1, 2))
    config.sweep.levels = config.study.levels
    own = build_dataset(config.data, progress=False)
    folder = tmp / "weights"
    model = build_model(config.model, seed=7)
    rng = np.random.default_rng(7)
    for layer in (model.layer0, model.layer1, model.layer2, model.gating.layer0, model.gating.layer1,
                  model.gating.layer2):  # non-zero biases, as a trained network has
        bias = layer.beta if hasattr(layer, "beta") else layer.bias
        bias[...] = rng.normal(0, 0.05, bias.shape).astype(np.float32)
    save_ai4animation(model, own.normalisation, folder)
    config.train.init_from = str(folder)
    assert config.data.normalisation_from == str(folder)  # a pretrained network brings its normalisation
    dataset = build_dataset(config.data, progress=False)
    workdir = tmp / "study"
    tradeoff.run(config, workdir, dataset=dataset, progress=False)
    return config, workdir, dataset, folder


def test_reference_is_measured_like_every_level(pretrained_toy):
    config, workdir, dataset, folder = pretrained_toy
    results = read_results(workdir / "tradeoff")
    ref = results["data"]["reference"]
    assert ref["label"] == REFERENCE_LABEL and ref["folder"] == str(folder) and ref["seed"] is None
    assert set(METRICS) <= set(ref)
    assert ref["actual_sparsity"] == 0.0 and ref["unmasked_params"] == ref["nonzero"]
    dense = [r for r in results["data"]["models"] if r["level"] == 0.0]
    assert all(r["nonzero"] == ref["nonzero"] for r in dense)  # the same network size as the sweep's
    assert ref["test_loss"] > 0 and ref["replay_error_local_m"] > 0 and ref["walk_skating_cm_per_frame"] >= 0
    # Its losses: the folder's network on the dataset's rows, in the dataset's normalisation.
    model = build_model(config.model, seed=0)
    from mann_jax.export.ai4animation import model_from_ai4animation

    authors, _ = model_from_ai4animation(folder, gating_indices=model.gating_indices)
    fns = ModelFunctions.of(authors)
    eval_loss = make_eval_loss(fns, chunk=4096)
    assert ref["val_loss"] == pytest.approx(eval_loss(fns.params, *dataset.arrays("val")), rel=1e-5)
    assert ref["test_loss"] == pytest.approx(eval_loss(fns.params, *dataset.arrays("test")), rel=1e-5)
    # A row of the unstructured table, a line in the figures, a note for the report.
    first = results["tables"][0]
    assert first["rows"][-1][0] == REFERENCE_LABEL and len(first["rows"]) == len(config.study.levels) + 1
    for fig in results["figures"]:
        assert "not fine-tuned" in (workdir / "tradeoff" / fig).with_suffix(".svg").read_text()
    assert any("held out from fine-tuning only" in n for n in results["notes"])
    assert results["data"]["evaluation_settings"] == tradeoff.evaluation_settings(config, dataset)


def test_report_shows_the_reference_and_says_what_held_out_means(pretrained_toy):
    _, workdir, _, _ = pretrained_toy
    text = report.build_report(workdir)
    section = text[text.index("## tradeoff"):]
    assert f"| {REFERENCE_LABEL} |" in section
    assert "trained it on all the dog clips" in section and "held out from fine-tuning only" in section


def test_resumed_tradeoff_measures_only_the_missing_reference(pretrained_toy, monkeypatch):
    """Results written before the reference existed (no reference, no recorded settings) keep every model's
    measurements: a resumed run measures the reference alone and trains nothing."""
    config, workdir, dataset, _ = pretrained_toy
    path = workdir / "tradeoff" / "results.json"
    full = json.loads(path.read_text())
    old = json.loads(path.read_text())
    for key in ("reference", "evaluation_settings"):
        old["data"].pop(key)
    old.pop("notes")
    path.write_text(json.dumps(old))
    checkpoints = sorted(p.name for p in (workdir / "models").rglob("*") if p.is_dir())

    measured: list[int] = []
    real = tradeoff.model_rows

    def counting(models, *args, **kwargs):
        measured.append(len(models.rows))
        return real(models, *args, **kwargs)

    monkeypatch.setattr(tradeoff, "model_rows", counting)
    tradeoff.run(config, workdir, dataset=dataset, progress=False)
    assert measured == [1]  # the reference only
    again = read_results(workdir / "tradeoff")
    assert again["data"]["models"] == full["data"]["models"]
    assert again["data"]["structured_models"] == full["data"]["structured_models"]
    for key in METRICS:
        a, b = again["data"]["reference"][key], full["data"]["reference"][key]
        assert (a is None and b is None) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), key
    assert sorted(p.name for p in (workdir / "models").rglob("*") if p.is_dir()) == checkpoints

    measured.clear()  # everything measured: nothing to compute
    tradeoff.run(config, workdir, dataset=dataset, progress=False)
    assert measured == []

    changed = config.copy_and_resolve_references()  # another evaluation setting: every model measured again
    changed.study.walk_speed = 1.2
    assert tradeoff.previous_data(workdir / "tradeoff", changed, dataset,
                                  tradeoff.replay_window_set(changed, dataset)) is None


def test_no_reference_without_a_starting_network(pretrained_toy):
    config, workdir, dataset, _ = pretrained_toy
    plain = config.copy_and_resolve_references()
    plain.train.init_from = ""
    models = tradeoff_models(config, workdir, dataset=dataset, progress=False)
    assert reference_models(plain, models, dataset=dataset) is None
    ref = reference_models(config, models, dataset=dataset)
    assert ref is not None and ref.names == ("authors",) and np.isnan(ref.rows[0]["train_loss"])
    assert Path(config.train.init_from).is_dir()
