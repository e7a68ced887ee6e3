"""The study's shared pieces and its trade-off / Table 1 experiments, at toy scale."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import study as study_config
from mann_jax.evaluate import controller
from mann_jax.pruning import accounting
from mann_jax.study import model_size, stats, tradeoff
from mann_jax.study.models import sweep_config, tradeoff_models
from mann_jax.study.results import CONCLUSIONS, read_results, write_results

# The tests of the toy study (toy_study: models trained, then rolled out) and of the commands are slow.

REPO = Path(__file__).resolve().parents[1]


def test_sweep_config_takes_levels_seeds_and_overrides_and_rejects_typos():
    config = study_config.get_config("toy")
    derived = sweep_config(config, levels=(0.0, 0.7), overrides={"pruning.granularity": "neuron"})
    assert "study" not in derived  # evaluation settings never block resuming a sweep
    assert tuple(derived.sweep.levels) == (0.0, 0.7)
    assert tuple(derived.sweep.seeds) == tuple(config.study.seeds)
    assert derived.pruning.granularity == "neuron"
    assert config.pruning.granularity == "unstructured"  # the study config is untouched
    with pytest.raises(KeyError, match="pruning.granularty"):
        sweep_config(config, levels=(0.0,), overrides={"pruning.granularty": "neuron"})


def test_unknown_scale_is_an_error():
    with pytest.raises(ValueError, match="runlocal"):
        study_config.get_config("fast")


@pytest.mark.slow
def test_held_out_windows_come_from_the_test_clips_only(toy_study):
    config, _, dataset = toy_study
    windows = controller.held_out_windows(dataset, split="test", window_frames=30, max_windows=4, fps=60.0)
    test_clips = {n for n, s in zip(dataset.clip_names, dataset.clip_splits) if s == "test"}
    assert test_clips and set(windows.clips) <= test_clips
    assert windows.num_windows == 4
    assert windows.replay.reference_bones.shape[:2] == (4, 30)
    assert windows.styles.shape == (4, 30)
    # Consecutive windows of one clip start a window apart.
    starts = [f for c, f in zip(windows.clips, windows.start_frames)]
    assert len(set(starts)) == len(starts)
    with pytest.raises(ValueError, match="consecutive frames"):
        controller.held_out_windows(dataset, split="test", window_frames=10**6, max_windows=4, fps=60.0)


def test_stats_verdicts():
    assert stats.compare_means([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], claim="less")[0] == "supported"
    assert stats.compare_means([2.0, 2.1, 1.9], [1.0, 1.1, 0.9], claim="less")[0] == "contradicted"
    assert stats.compare_means([1.0, 2.0, 3.0], [1.1, 2.1, 2.9], claim="less")[0] == "inconclusive"
    assert stats.compare_means([1.0], [2.0], claim="less")[0] == "inconclusive"
    x = [0, 0, 0.5, 0.5, 0.9, 0.9]
    assert stats.trend(x, [1, 1.1, 2, 2.1, 3, 3.2], claim="increasing")[0] == "supported"
    assert stats.trend(x, [3, 3.2, 2, 2.1, 1, 1.1], claim="increasing")[0] == "contradicted"
    assert stats.agreement([0.95, 0.97, 0.96], threshold=0.9, what="cos")[0] == "supported"
    assert stats.agreement([0.2, 0.3, 0.25], threshold=0.9, what="cos")[0] == "contradicted"
    s = stats.summary([1.0, 2.0, float("nan")])
    assert s["mean"] == 1.5 and s["n"] == 2


@pytest.mark.slow
def test_tradeoff_writes_consistent_results(toy_study):
    config, workdir, dataset = toy_study
    tradeoff.run(config, workdir, dataset=dataset, progress=False)
    out = workdir / "tradeoff"
    results = read_results(out)
    for fig in results["figures"]:
        assert (out / fig).is_file() and (out / fig).with_suffix(".svg").is_file()
    assert any((out / "tensorboard").iterdir())
    models = tradeoff_models(config, workdir, dataset=dataset, progress=False)
    rows = results["data"]["models"]
    assert [r["name"] for r in rows] == list(models.names)
    n_seeds = len(config.study.seeds)
    assert len(rows) == len(config.study.levels) * n_seeds
    for r, sweep_row in zip(rows, models.rows):
        assert r["val_loss"] == pytest.approx(sweep_row["val_loss"], rel=1e-5)  # the sweep's value
        assert r["actual_sparsity"] == pytest.approx(r["level"], abs=1e-4)
        assert np.isfinite(r["test_loss"]) and r["replay_error_local_m"] > 0
        assert r["walk_skating_cm_per_frame"] >= 0
        assert r["unmasked_params"] == r["nonzero"]  # the sweep's count is the masks' count
    # Non-zeros fall with the level; structured models exist for each structured level and seed.
    nz = {r["level"]: r["nonzero"] for r in rows}
    assert nz[0.0] > nz[0.5] > nz[0.9]
    structured = results["data"]["structured_models"]
    assert sorted({r["level"] for r in structured}) == [0.0] + list(config.study.structured_levels)
    assert len(structured) == n_seeds * (1 + len(config.study.structured_levels))
    summary = results["data"]["summary"]["val_loss"]
    level0 = [r["val_loss"] for r in rows if r["level"] == 0.0]
    assert summary["0.0"]["mean"] == pytest.approx(np.mean(level0))
    for f in results["findings"]:
        assert f["conclusion"] in (None, *CONCLUSIONS)
        assert f["verdict"] in ("supported", "contradicted", "inconclusive")
    json.dumps(results)  # plain JSON, no NaN


def test_model_size_results_match_the_accounting(tmp_path):
    model_size.run(None, tmp_path, sparsities=(0.0, 0.9))
    results = read_results(tmp_path / "model_size")
    rows = results["data"]["rows"]
    expected = accounting.table1([0.0, 0.9])
    assert [r["nonzero"] for r in rows] == [e.nonzero for e in expected]
    assert results["findings"][0]["verdict"] == "supported"  # within 2 % of the study's Table 1
    assert (tmp_path / "model_size" / "size_and_flops.svg").is_file()


def test_unknown_study_scenario_is_an_error():
    config = study_config.get_config("toy")
    with pytest.raises(ValueError, match="unknown study scenario.*moonwalk"):
        controller.study_scenarios(config.study, fps=60.0, names=["walk", "moonwalk"])


def test_results_refuse_missing_figures_and_unknown_conclusions(tmp_path):
    common = dict(experiment="x", title="x", scale={}, tables=[], data={}, seconds=1.0)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        write_results(tmp_path, figures=["missing.png"], findings=[], **common)
    with pytest.raises(ValueError, match="unknown conclusion 'made_up'"):
        write_results(tmp_path, figures=[], findings=[stats.Finding("made_up", "c", "supported", "e")], **common)
    assert not (tmp_path / "results.json").exists()  # nothing half-written


@pytest.mark.slow
def test_study_command_reports_a_bad_setting_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.ablation", "--config", "configs/study.py:toy",
                           "--config.study.sparse_level=0.7", "--workdir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: config.study.sparse_level 0.7")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("override, says", [("--config.study.eval_split=tset", "config study.eval_split must be"),
                                            ("--config.study.levels=(0.0,1.5)", "config study.levels must be")])
def test_study_settings_are_checked_before_any_model_trains(tmp_path, override, says):
    proc = subprocess.run([sys.executable, "-m", "experiments.tradeoff", "--config", "configs/study.py:toy",
                           override, "--workdir", str(tmp_path / "w")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {says}"), proc.stderr[-2000:]
    assert not (tmp_path / "w" / "models").exists()  # refused before training
