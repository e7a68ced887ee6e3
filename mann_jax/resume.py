"""A run's workdir and resumption: the checks made before a run touches a workdir's checkpoints.

A workdir resumes only the run it was started with: the latest checkpoint's meta records the config
and the data, and a resumed run must match both, except for the settings that only steer the loop
(:data:`_RESUMABLE_CHANGES`, and a caller's ``allowed`` ones, e.g. a sweep's strategy). The data is
matched by the digest of the rows the run trains on (:func:`rows_digest`), not by the cache key: the
key also changes with any edit of the row code, and a long run must survive an edit that leaves the
rows as they were (a checkpoint written before the digest existed is matched by key, or by the rows
of the dataset still cached under its key). Every refusal
comes before anything in the workdir is rewritten, so a refused run leaves it as it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mann_jax.checkpoint import CheckpointError, Checkpoints
from mann_jax.errors import TrainingError
from mann_jax.metric_writer import flatten_config

# Settings that may change between a run and its resumption.
_RESUMABLE_CHANGES = {"train.epochs", "train.log_every_steps", "train.checkpoint_every_steps",
                      "train.keep_checkpoints", "train.histograms_every_epochs", "data.cache_dir",
                      "data.on_bad_clip"}


# Keys added to the config after runs existed, with the value that matches how those runs ran
# (so their workdirs still resume): every run before model.matmul_precision had float32 products
# on CPU, where all of them ran.
_ADDED_KEYS = {"model.matmul_precision": "highest"}


def check_resumable(saved: dict[str, Any], current: dict[str, Any], where: Path,
                    allowed: frozenset[str] | set[str] = frozenset()) -> None:
    """Raises :class:`CheckpointError` when ``current`` differs from the ``saved`` config in a key that matters.

    Keys in :data:`_RESUMABLE_CHANGES` or ``allowed`` (flattened, ``"train.epochs"``) may change.
    """
    current = json.loads(json.dumps(current, default=str))  # as saved: tuples become lists
    a, b = {**_ADDED_KEYS, **flatten_config(saved)}, flatten_config(current)
    free = _RESUMABLE_CHANGES | set(allowed)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in free)
    if changed:
        detail = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed[:8])
        raise CheckpointError(f"{where}: the run there was started with a different config ({detail}); "
                              "use a new --workdir or the original settings")


def prepare_workdir(workdir: Path) -> None:
    """Creates ``workdir`` (and its parents) for a run.

    Raises:
        TrainingError: ``workdir`` (or a parent) is a file, or cannot be created.
    """
    if workdir.exists() and not workdir.is_dir():
        raise TrainingError(f"{workdir}: --workdir is a file, not a folder")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainingError(f"{workdir}: cannot create the run folder ({e.strerror or e})") from e


def check_resume_step(start_step: int, total_steps: int, n_batches: int, workdir: Path) -> None:
    """Refuses to resume a run that is already past this config's last step (fewer epochs than it
    ran), before anything in ``workdir`` is rewritten.

    Raises:
        TrainingError: ``start_step > total_steps``.
    """
    if start_step > total_steps:
        raise TrainingError(
            f"{workdir}: the run there is at step {start_step} ({start_step / n_batches:g} epochs), past the "
            f"{total_steps} steps of this config (train.epochs = {total_steps // n_batches}); set train.epochs >= "
            f"{-(-start_step // n_batches)} to go on, or use a new --workdir")


def rows_digest(*arrays: np.ndarray) -> str:
    """SHA-256 (32 hex digits) of arrays' dtypes, shapes and bytes, in order: which rows a run trains on."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        if a.size:  # (a view of no bytes cannot be cast)
            h.update(a.data.cast("B"))
    return h.hexdigest()[:32]


def check_checkpoint_setup(checkpoints: Checkpoints, config_dict: dict[str, Any], data_key: str, workdir: Path,
                           allowed: frozenset[str] | set[str] = frozenset(), *, data_digest: str | None = None,
                           digest_of_key: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """The latest checkpoint's meta, after checking it was made with this config and data.

    The data matches when the meta's ``data_digest`` equals ``data_digest`` (:func:`rows_digest`), or,
    for a checkpoint without one, when its ``data_key`` equals ``data_key`` or names a dataset whose
    rows have that digest (``digest_of_key(key)``: None when that dataset is gone).

    Raises:
        CheckpointError: a different config (outside ``allowed`` changes) or different data.
    """
    meta = checkpoints.read_meta()
    check_resumable(meta["config"], config_dict, workdir, allowed)
    if meta.get("data_digest") is not None and data_digest is not None:
        if meta["data_digest"] != data_digest:
            raise CheckpointError(f"{workdir}: the run there was trained on different rows (digest "
                                  f"{meta['data_digest']} != {data_digest}); use a new --workdir")
    elif meta.get("data_key") != data_key and not (
            digest_of_key is not None and data_digest is not None and meta.get("data_key") is not None
            and digest_of_key(meta["data_key"]) == data_digest):
        raise CheckpointError(f"{workdir}: the run there was trained on different data (cache key "
                              f"{meta.get('data_key')} != {data_key}); use a new --workdir")
    return meta
