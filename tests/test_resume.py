"""A workdir resumes on the same rows, whatever the dataset's cache key says (mann_jax.resume)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from configs import default
from mann_jax.checkpoint import CheckpointError
from mann_jax.data.dataset import build_dataset
from mann_jax.resume import check_checkpoint_setup, rows_digest
from mann_jax.train import train


class _Saved:
    """A checkpoint folder reduced to its latest meta."""

    def __init__(self, meta):
        self.meta = meta

    def read_meta(self):
        return self.meta


def test_rows_digest_changes_with_values_shape_and_dtype():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert rows_digest(a, a[:1]) == rows_digest(a.copy(), a[:1].copy())
    b = a.copy()
    b[2, 3] = np.nextafter(b[2, 3], np.float32(100))  # one ulp
    others = [rows_digest(b, a[:1]), rows_digest(a.reshape(4, 3), a[:1]), rows_digest(a.astype(np.float64), a[:1]),
              rows_digest(a[:1], a)]
    assert len({rows_digest(a, a[:1]), *others}) == 5
    assert rows_digest(a[:0]) != rows_digest(a[:, :0])  # empty splits count by shape


def test_the_rows_decide_when_the_checkpoint_has_a_digest(tmp_path):
    config = default.get_config().to_dict()
    saved = json.loads(json.dumps(config, default=str))  # as config.json and the checkpoint meta hold it
    new = _Saved({"config": saved, "data_key": "old-code", "data_digest": "rows"})
    # The row code changed (new cache key) but the rows did not: the run resumes.
    assert check_checkpoint_setup(new, config, "new-code", tmp_path, data_digest="rows") is new.meta
    with pytest.raises(CheckpointError, match="different rows"):
        check_checkpoint_setup(new, config, "old-code", tmp_path, data_digest="other rows")
    # A checkpoint written before digests existed is matched by its cache key.
    old = _Saved({"config": saved, "data_key": "old-code"})
    assert check_checkpoint_setup(old, config, "old-code", tmp_path, data_digest="rows") is old.meta
    with pytest.raises(CheckpointError, match="cache key"):
        check_checkpoint_setup(old, config, "new-code", tmp_path, data_digest="rows")
    # ... or by the rows of the dataset still cached under its key.
    cached = {"old-code": "rows", "gone": None}.get
    assert check_checkpoint_setup(old, config, "new-code", tmp_path, data_digest="rows", digest_of_key=cached)
    for digest, key in (("other rows", "old-code"), ("rows", "gone")):
        with pytest.raises(CheckpointError, match="cache key"):
            check_checkpoint_setup(_Saved({"config": saved, "data_key": key}), config, "new-code", tmp_path,
                                   data_digest=digest, digest_of_key=cached)


@pytest.mark.slow
def test_a_run_resumes_after_a_cache_key_change_but_not_on_other_rows(tmp_path):
    config = default.get_config()
    config.data.update(synthetic_clips=3, synthetic_seconds=6.0, cache_dir=str(tmp_path / "cache"))
    config.model.update(hidden_sizes=(16, 16), n_experts=2)
    config.train.update(batch_size=16, epochs=1, log_every_steps=10, checkpoint_every_steps=20)
    dataset = build_dataset(config.data, progress=False)
    first = train(config, tmp_path / "run", dataset=dataset, progress=False)
    config.train.epochs = 2
    # An edit of the row code that leaves the rows alone: a new cache key, the same rows.
    resumed = train(config, tmp_path / "run", dataset=dataclasses.replace(dataset, cache_key="edited"),
                    progress=False)
    assert int(resumed.state.step) == 2 * int(first.state.step) > 0
    config.train.epochs = 3
    shifted = dataclasses.replace(dataset, inputs=dataset.inputs + np.float32(1e-3))
    with pytest.raises(CheckpointError, match="different rows"):
        train(config, tmp_path / "run", dataset=shifted, progress=False)
