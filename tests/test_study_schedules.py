"""Pruning schedules compared on the same budget (mann_jax.study.schedules_experiment)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from configs import study
from mann_jax.pruning.scoring import pruned_count
from mann_jax.study import schedules_experiment as schedules
from mann_jax.study.models import trained_models

# The tests of the toy study (toy_study: models trained, then rolled out) and of the commands are slow.


def test_one_shot_prunes_once_at_one_shot_at():
    config = study.get_config("toy")
    assert schedules.schedule_overrides(config, "agp") == {"pruning.schedule": "agp"}
    over = schedules.schedule_overrides(config, "one_shot")
    assert over == {"pruning.schedule": "one_shot", "pruning.start": 0.5, "pruning.end": 0.5}
    pc = config.pruning.copy_and_resolve_references()
    pc.update({k.split(".")[1]: v for k, v in over.items()})
    curve = schedules.sparsity_curve(pc, level=0.9, total_steps=101)
    on = curve["in_force"] > 0
    assert not on[:50].any() and on[50:].all()  # dense for half the budget, then the full level at once
    np.testing.assert_allclose(curve["in_force"][50:], np.float32(0.9))
    config.study.one_shot_at = 1.5
    with pytest.raises(ValueError, match="one_shot_at"):
        schedules.schedule_overrides(config, "one_shot")


def test_gradual_curve_follows_mask_updates():
    config = study.get_config("toy")  # window [0, 0.8], masks every 4 steps
    curve = schedules.sparsity_curve(config.pruning, level=0.9, total_steps=101)
    v = curve["in_force"]
    changes = np.flatnonzero(np.diff(v) != 0) + 1
    assert np.all(changes % 4 == 0) and changes.max() <= 80  # only on update steps, inside the window
    assert np.all(np.diff(v) >= 0) and v[-1] == pytest.approx(0.9) and v[80] == pytest.approx(0.9)


@pytest.mark.slow
def test_toy_run_reaches_target_and_writes_outputs(toy_study):
    config, workdir, dataset = toy_study
    res = schedules.run(config, workdir, dataset=dataset, progress=False)
    out = workdir / "schedules"
    assert json.loads((out / "results.json").read_text()) == res
    assert set(res["figures"]) == {"sparsity_over_training.png", "metrics_by_schedule.png"}
    for f in res["figures"]:
        for suffix in (".png", ".svg"):
            assert (out / f).with_suffix(suffix).stat().st_size > 1000
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))

    level = config.study.schedule_level
    per = res["data"]["schedules"]
    assert list(per) == list(config.study.schedules) == ["one_cycle", "agp", "one_shot"]
    for name, entry in per.items():
        # recount on the trained sweep: exactly round(level * N) pruned weights in every model
        models = trained_models(config, workdir, f"schedule_{name}", levels=(level,),
                                overrides=schedules.schedule_overrides(config, name), dataset=dataset, progress=False)
        assert models.config.pruning.schedule == name
        full = [np.asarray(m) for m in jax.tree.leaves(models.masks) if np.ndim(m) > 1]
        n = sum(int(np.prod(m.shape[1:])) for m in full)
        zeros = [sum(int(np.size(m[i]) - np.count_nonzero(m[i])) for m in full) for i in range(len(models.levels))]
        assert zeros == [pruned_count(level, n)] * 3 == entry["zeros"]
        assert entry["reaches_target"] == [True] * 3
        np.testing.assert_allclose(entry["metrics"]["actual_sparsity"]["values"], level, atol=1 / n)
        for key in schedules.SHOWN:
            assert entry["metrics"][key]["n"] == 3 and np.all(np.isfinite(entry["metrics"][key]["values"])), key
    assert per["one_shot"]["window"]["start_step"] == per["one_shot"]["window"]["end_step"] > 0
    assert per["one_shot"]["sparsity_curve"]["changes"] == 1
    assert res["data"]["all_reach_target"] is True
    assert res["data"]["budget"]["total_steps"] > 0
    assert [f["conclusion"] for f in res["findings"]] == [None, None]
    assert [f["claim"].rsplit(" ", 2)[-2] for f in res["findings"]] == ["agp", "one_shot"]


@pytest.mark.parametrize("setting, value, message", [
    ("schedules", (), "empty"),
    ("schedules", ("agp", "agp"), "duplicates"),
    ("schedule_level", 0.0, r"\(0, 1\)"),
    ("schedule_level", 1.0, r"\(0, 1\)"),
])
def test_bad_schedule_settings_are_refused_before_training(tmp_path, setting, value, message):
    config = study.get_config("toy")
    config.study[setting] = value
    with pytest.raises(ValueError, match=message):
        schedules.run(config, tmp_path, progress=False)
    assert not (tmp_path / "models").exists()
