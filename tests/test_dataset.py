"""Dataset assembly: split, normalisation, AI4Animation export reader, cache."""

import numpy as np
import pytest

from configs import default
from mann_jax.data import dataset as ds
from mann_jax.data import layout
from mann_jax.data.ai4animation import BLOCK_ROWS, read_rows
from mann_jax.data.errors import MotionDataError


def _data_config(**overrides):
    c = default.get_config().data
    c.update(overrides)
    return c


def test_split_is_reproducible_and_order_independent():
    names = [f"clip_{i:02d}" for i in range(40)]
    a = ds.assign_splits(names, val_fraction=0.1, test_fraction=0.1, seed=0)
    b = ds.assign_splits(names[::-1], val_fraction=0.1, test_fraction=0.1, seed=0)
    assert dict(zip(names, a)) == dict(zip(names[::-1], b))
    assert a.count("val") == 4 and a.count("test") == 4 and a.count("train") == 32
    c = ds.assign_splits(names, val_fraction=0.1, test_fraction=0.1, seed=1)
    assert c != a
    # Small sets still get a validation and a test clip.
    small = ds.assign_splits(["a", "b", "c", "d"], val_fraction=0.1, test_fraction=0.1, seed=0)
    assert sorted(small) == ["test", "train", "train", "val"]
    with pytest.raises(ValueError, match="sum < 1"):
        ds.assign_splits(names, val_fraction=0.6, test_fraction=0.5, seed=0)


def test_normalisation_population_std_and_constant_columns():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(1000, 4)).astype(np.float32)
    x[:, 2] = 5.0
    y = rng.normal(size=(1000, 2)).astype(np.float32)
    n = ds.Normalisation.fit(x, y)
    np.testing.assert_allclose(n.x_std[[0, 1, 3]], x[:, [0, 1, 3]].std(axis=0, ddof=0), rtol=1e-5)
    assert n.x_std[2] == 1.0 and n.x_mean[2] == 5.0
    np.testing.assert_allclose(n.denormalise_outputs(n.normalise_outputs(y)), y, atol=1e-5)


def _write_export(folder, rows, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    x = rng.normal(size=(rows, layout.INPUT_DIM))
    y = rng.normal(size=(rows, layout.OUTPUT_DIM))
    np.savetxt(folder / "Input.txt", x, fmt="%.5f")
    np.savetxt(folder / "Output.txt", y, fmt="%.5f")
    return x, y


def test_ai4animation_export_dataset(tmp_path):
    x, y = _write_export(tmp_path / "export", 3 * BLOCK_ROWS + 10)
    config = _data_config(source="ai4animation", path=str(tmp_path / "export"), cache_dir=str(tmp_path / "cache"))
    d = ds.build_dataset(config, progress=False)
    assert d.inputs.shape == (len(x), 480) and d.outputs.shape == (len(y), 363)
    np.testing.assert_allclose(d.inputs, x, atol=1e-5)
    assert len(d.clip_names) == 4 and set(d.clip_splits) == {"train", "val", "test"}
    xt, yt = d.arrays("train")
    assert len(xt) == d.split_mask("train").sum()


@pytest.mark.parametrize(
    "content, message, line",
    [
        ("", "file is empty", None),
        ("1 2 3\n1 2\n", "expected 3 values per row, found 2", 2),
        ("1 2 3\n1 x 3\n", "non-numeric value", 2),
        ("1 2 3\n1 nan 3\n", "NaN or infinite", 2),
    ],
)
def test_export_rows_errors_name_file_and_line(tmp_path, content, message, line):
    f = tmp_path / "Input.txt"
    f.write_text(content)
    with pytest.raises(MotionDataError, match=message) as e:
        read_rows(f, 3)
    assert "Input.txt" in str(e.value) and e.value.line == line


def test_export_folder_errors(tmp_path):
    with pytest.raises(MotionDataError, match="does not exist"):
        ds.build_dataset(_data_config(source="ai4animation", path=str(tmp_path / "nope")), use_cache=False)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "Input.txt").write_text("1\n")
    with pytest.raises(MotionDataError, match="Output.txt: missing"):
        ds.build_dataset(_data_config(source="ai4animation", path=str(tmp_path / "half")), use_cache=False)


def test_cache_hit_changed_file_and_corrupt_cache(tmp_path):
    export = tmp_path / "export"
    _write_export(export, 300, seed=0)
    config = _data_config(source="ai4animation", path=str(export), cache_dir=str(tmp_path / "cache"))
    first = ds.build_dataset(config, progress=False)
    files = list((tmp_path / "cache").glob("*.npz"))
    assert len(files) == 1
    again = ds.build_dataset(config, progress=False)
    np.testing.assert_array_equal(again.inputs, first.inputs)
    assert again.clip_splits == first.clip_splits
    np.testing.assert_array_equal(again.normalisation.x_std, first.normalisation.x_std)
    # A changed input file gets a new key: never stale data.
    x2, _ = _write_export(export, 300, seed=1)
    changed = ds.build_dataset(config, progress=False)
    np.testing.assert_allclose(changed.inputs, x2, atol=1e-5)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    # A changed setting gets a new key too.
    config.val_fraction = 0.2
    assert ds.cache_key(config) != ds.cache_key(_data_config(source="ai4animation", path=str(export)))
    # A corrupt cache file is rebuilt, not trusted.
    key_file = (tmp_path / "cache") / f"ai4animation-{ds.cache_key(config)}.npz"
    ds.build_dataset(config, progress=False)
    key_file.write_bytes(b"not a zip file")
    rebuilt = ds.build_dataset(config, progress=False)
    np.testing.assert_allclose(rebuilt.inputs, x2, atol=1e-5)


def test_cached_dataset_reads_a_key_and_never_trusts_a_bad_file(tmp_path, caplog):
    export = tmp_path / "export"
    _write_export(export, 300, seed=0)
    config = _data_config(source="ai4animation", path=str(export), cache_dir=str(tmp_path / "cache"))
    built = ds.build_dataset(config, progress=False)
    old = ds.cached_dataset(config, built.cache_key)  # e.g. the key of an earlier version of the row code
    assert old is not None and old.cache_key == built.cache_key
    np.testing.assert_array_equal(old.inputs, built.inputs)
    assert ds.cached_dataset(config, "no-such-key") is None
    ds.cache_path(config, built.cache_key).write_bytes(b"not a zip file")
    assert ds.cached_dataset(config, built.cache_key) is None
    assert "ignoring unreadable dataset cache" in caplog.text


def test_config_errors():
    with pytest.raises(ValueError, match="data.source must be one of"):
        ds.build_dataset(_data_config(source="mocap"), use_cache=False)
    with pytest.raises(ValueError, match="on_bad_clip"):
        ds.build_dataset(_data_config(on_bad_clip="ignore"), use_cache=False)
    with pytest.raises(ValueError, match="data.path must name a folder"):
        ds.build_dataset(_data_config(source="bvh"), use_cache=False)
    c = _data_config()
    c.styles.move_sped = 1.0
    with pytest.raises(ValueError, match="unknown style rule"):
        ds.style_rules_from(c)


def test_training_data_hashes_each_input_file_once(tmp_path, monkeypatch):
    """train()/run_sweep's start-up (training_data) digests every input file once: the checkpoint's
    data key is the key build_dataset computed for the cache, not a second hash of the files."""
    from collections import Counter

    from mann_jax.data.bvh import save_bvh
    from mann_jax.data.synthetic import generate_clip
    from mann_jax.train import training_data

    clips, labels = tmp_path / "clips", tmp_path / "labels"
    clips.mkdir()
    labels.mkdir()
    for seed in (1, 2):
        save_bvh(generate_clip(seed=seed, num_frames=140, name=f"clip{seed}").motion, clips / f"clip{seed}.bvh")
    (labels / "clip1.txt").write_text("0 40 Sit\n")
    config = default.get_config()
    config.data.update(source="bvh", path=str(clips), labels_dir=str(labels), cache_dir=str(tmp_path / "cache"))
    config.train.batch_size = 8
    files = sorted([*clips.glob("*.bvh"), labels / "clip1.txt"])
    want_key = ds.cache_key(config.data)  # before counting: the key's value must not change

    digested = Counter()
    real_digest = ds._file_digest

    def counting_digest(path):
        digested[path.name] += 1
        return real_digest(path)

    monkeypatch.setattr(ds, "_file_digest", counting_digest)
    data = training_data(config, progress=False)  # builds and writes the cache
    assert digested == Counter({p.name: 1 for p in files})
    assert data.data_key == want_key
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"bvh-{want_key}.npz"]

    # Second start-up: the existing cache file is found (nothing rebuilt), still one digest per file.
    digested.clear()

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cache file was not found")

    monkeypatch.setattr(ds, "_rows_from_bvh", no_rebuild)
    again = training_data(config, progress=False)
    assert digested == Counter({p.name: 1 for p in files}) and again.data_key == want_key

    # A dataset handed in (run_sweep, the study) carries its key: no hashing at all.
    dataset = ds.build_dataset(config.data, progress=False)
    assert dataset.cache_key == want_key
    digested.clear()
    assert training_data(config, dataset, progress=False).data_key == want_key and not digested
    # Without the cache the dataset carries no key and training_data computes it (once).
    monkeypatch.undo()
    uncached = ds.build_dataset(config.data, progress=False, use_cache=False)
    assert uncached.cache_key is None
    monkeypatch.setattr(ds, "_file_digest", counting_digest)
    assert training_data(config, uncached, progress=False).data_key == want_key
    assert digested == Counter({p.name: 1 for p in files})
