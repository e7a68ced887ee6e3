"""The training dataset: clips → MANN features (+ mirrored copies) → split → normalisation → cache.

Sources (``config.source``):

* ``"synthetic"`` — the embedded procedural quadruped (:mod:`mann_jax.data.synthetic`), so every
  command runs on a fresh machine with no download; its style labels are the generator's own.
* ``"bvh"`` — a folder of BVH clips (e.g. the MANN dog ``MotionCapture`` folder); style labels
  are derived (:mod:`mann_jax.data.styles`) unless a label file ``<labels_dir>/<clip>.txt`` exists.
* ``"ai4animation"`` — a folder holding the original exporter's ``Input.txt`` / ``Output.txt``
  (:mod:`mann_jax.data.ai4animation`); rows only, so no per-clip split: the split is by
  contiguous row blocks.

Split: whole clips (with their mirrored copies) go to train / validation / test, chosen by
ranking the clip names by a hash of ``(split_seed, name)`` — reproducible and independent of the
file order. Normalisation is the original's (per-column mean and population std, ddof = 0, a
constant column gets std 1), computed on the TRAINING rows and stored with the dataset.

Cache: the built dataset is saved as ``<cache_dir>/<key>.npz`` where the key hashes the content
of every input file (clips and label files) and every setting that changes the features, plus
:data:`FEATURE_VERSION`; a changed file or setting gives a new key, so stale data is never served.
Writes are atomic (temporary file + rename); an unreadable cache file is rebuilt, not trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
from tqdm.auto import tqdm

from mann_jax.config_errors import ConfigError
from mann_jax.data import layout
from mann_jax.data.checks import FEATURE_FPS, PreparedClip, limits_from, prepare_clip, source_frames
from mann_jax.data.contacts import detect_contacts, estimate_support_height
from mann_jax.data.errors import MotionDataError
from mann_jax.data.features import MIN_CLIP_FRAMES, clip_features
from mann_jax.data.normalisation import Normalisation
from mann_jax.data.skeleton import Motion, Pose, forward_kinematics, mirror_pose
from mann_jax.data.styles import StyleRules, apply_label_file, label_frames, majority_smooth, soft_styles
from mann_jax.data.trajectory import Root, compute_root

log = logging.getLogger(__name__)

# Bump when the feature computation changes, so old caches are never served.
FEATURE_VERSION = 2
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Feature rows of every clip, with their provenance, split and normalisation.

    Attributes:
      inputs, outputs: ``(N, 480)`` / ``(N, 363)`` float32, NOT normalised.
      clip_index: ``(N,)`` index into ``clip_names``.
      frames: ``(N,)`` centre frame of the row in its clip.
      mirrored: ``(N,)`` True for the left/right mirrored copy.
      styles: ``(N,)`` style label of the centre frame (index into :data:`layout.STYLES`).
      clip_names: one name per clip.
      clip_splits: ``"train"``, ``"val"`` or ``"test"`` per clip.
      clip_frames: number of frames per clip.
      normalisation: statistics of the training rows.
      skipped: ``{clip: reason}`` for clips that were reported and left out.
      resampled: ``{clip: recorded fps}`` for clips resampled to the features' 60 fps
        (:mod:`mann_jax.data.checks`); their ``frames`` count 60 fps frames.
      cache_key: :func:`cache_key` of the data config the dataset was built from, set by
        :func:`build_dataset` when it used the cache (computed once there, so that training can
        reuse it as the checkpoint's data key without hashing the input files again); ``None`` for
        a dataset built with ``use_cache=False`` or assembled directly. Not stored in the cache
        file (the file's name holds it).
    """

    inputs: np.ndarray
    outputs: np.ndarray
    clip_index: np.ndarray
    frames: np.ndarray
    mirrored: np.ndarray
    styles: np.ndarray
    clip_names: tuple[str, ...]
    clip_splits: tuple[str, ...]
    clip_frames: tuple[int, ...]
    normalisation: Normalisation
    skipped: Mapping[str, str] = dataclasses.field(default_factory=dict)
    resampled: Mapping[str, float] = dataclasses.field(default_factory=dict)
    cache_key: str | None = None

    @property
    def num_rows(self) -> int:
        return len(self.inputs)

    def split_mask(self, split: str) -> np.ndarray:
        """``(N,)`` bool rows of a split."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        in_split = np.array([s == split for s in self.clip_splits], dtype=bool)
        return in_split[self.clip_index] if len(in_split) else np.zeros(0, bool)

    def arrays(self, split: str, *, normalised: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs, outputs)`` of one split, normalised by default."""
        m = self.split_mask(split)
        x, y = self.inputs[m], self.outputs[m]
        if normalised:
            x, y = self.normalisation.normalise_inputs(x), self.normalisation.normalise_outputs(y)
        return x, y

    def summary(self) -> dict[str, Any]:
        """Clips, frames, dims and per-style frame counts (original, not mirrored, frames)."""
        original = ~self.mirrored
        counts = np.bincount(self.styles[original], minlength=layout.NUM_STYLES)
        per_split = {s: int(self.split_mask(s).sum()) for s in SPLITS}
        return {
            "clips": len(self.clip_names),
            "clips_per_split": {s: sum(1 for c in self.clip_splits if c == s) for s in SPLITS},
            "frames": int(sum(self.clip_frames)),
            "rows": self.num_rows,
            "rows_per_split": per_split,
            "mirrored_rows": int(self.mirrored.sum()),
            "input_dim": int(self.inputs.shape[1]),
            "output_dim": int(self.outputs.shape[1]),
            "style_rows": {name: int(c) for name, c in zip(layout.STYLES, counts)},
            "style_rows_per_clip": self.style_rows_per_clip(),
            "skipped": dict(self.skipped),
            "resampled": dict(self.resampled),
        }

    def style_rows_per_clip(self) -> dict[str, dict[str, int]]:
        """Per clip: rows (original, not mirrored) of each style, by style name."""
        original = ~self.mirrored
        table = np.zeros((len(self.clip_names), layout.NUM_STYLES), np.int64)
        np.add.at(table, (self.clip_index[original], self.styles[original].astype(np.int64)), 1)
        return {name: dict(zip(layout.STYLES, map(int, row))) for name, row in zip(self.clip_names, table)}


# ----------------------------------------------------------------------------- clips → rows


@dataclasses.dataclass(frozen=True)
class ClipRows:
    """Feature rows of one clip (and its mirror), before splitting."""

    name: str
    num_frames: int
    inputs: np.ndarray
    outputs: np.ndarray
    frames: np.ndarray
    mirrored: np.ndarray
    styles: np.ndarray
    source_fps: float | None = None  # the recorded rate of a clip resampled to 60 fps


def style_rules_from(config: ml_collections.ConfigDict) -> StyleRules:
    """:class:`StyleRules` from ``config.styles`` (a mapping of overrides; unknown keys rejected)."""
    overrides = dict(config.get("styles", {}) or {})
    known = {f.name for f in dataclasses.fields(StyleRules)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown style rule(s) {unknown}; known: {sorted(known)}")
    return StyleRules(**overrides)


def clip_rows(
    motion: Motion,
    config: ml_collections.ConfigDict,
    *,
    labels: np.ndarray | None = None,
    label_file: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
) -> ClipRows:
    """Features of one clip (and its mirrored copy when ``config.mirror``).

    The clip first passes :func:`mann_jax.data.checks.prepare_clip` (skeleton, plausibility, and
    resampling to 60 fps); ``labels`` and a label file index the clip's recorded frames.

    Args:
      motion: the clip.
      config: the data config (floor_height, root_smoothing_frames, contact thresholds, styles, mirror,
        joint_map, checks).
      labels: ``(T,)`` ground-truth style labels (the synthetic generator's); derived otherwise.
      label_file: optional label file overriding the derived labels on its ranges.
      source: the file the clip came from, for error messages.
    """
    where = source if source is not None else motion.name
    prepared = _prepared_clip(motion, config, where)
    motion = prepared.motion
    recorded = None if prepared.source_fps is None else source_frames(prepared.original, motion.num_frames)
    if labels is not None and recorded is not None:
        labels = np.asarray(labels)[recorded]
    pose = prepared.pose if prepared.pose is not None else forward_kinematics(motion)
    root = _root(pose, motion, config)
    rules = style_rules_from(config)
    if labels is None:
        labels = _derived_labels(pose, motion, root, config, rules)
    if label_file is not None:
        labels = _with_label_file(labels, label_file, prepared, recorded)
    styles = soft_styles(labels, rules.blend_sigma_frames)
    inputs, outputs, frames, mirrored = _features(pose, motion, root, styles, config)
    return ClipRows(
        name=motion.name,
        num_frames=motion.num_frames,
        inputs=inputs,
        outputs=outputs,
        frames=frames,
        mirrored=mirrored,
        styles=labels[frames].astype(np.int8),
        source_fps=prepared.source_fps,
    )


def _root(pose: Pose, motion: Motion, config: ml_collections.ConfigDict) -> Root:
    """The root trajectory of ``pose`` (the clip's, or its mirror's) with the config's floor and smoothing."""
    return compute_root(pose, motion.skeleton, fps=motion.fps, floor_height=float(config.floor_height),
                        smoothing_frames=int(config.root_smoothing_frames))


def _prepared_clip(motion: Motion, config: ml_collections.ConfigDict, where: str | os.PathLike) -> PreparedClip:
    """The clip checked and at 60 fps (:func:`mann_jax.data.checks.prepare_clip`), long enough for the window."""
    prepared = prepare_clip(motion, config, source=where)
    if prepared.motion.num_frames < MIN_CLIP_FRAMES:
        resampled = "" if prepared.source_fps is None else (
            f" at {FEATURE_FPS:g} fps (resampled from {prepared.original.num_frames} at {prepared.source_fps:.4g} fps)")
        raise MotionDataError(where, f"clip has {prepared.motion.num_frames} frames{resampled}; the trajectory window "
                                     f"needs at least {MIN_CLIP_FRAMES}")
    return prepared


def _derived_labels(pose: Pose, motion: Motion, root: Root, config: ml_collections.ConfigDict,
                    rules: StyleRules) -> np.ndarray:
    """Style labels derived from the motion: contacts above the support, speeds, posture; majority-smoothed."""
    support: float | np.ndarray = float(config.floor_height)
    if config.support_window_seconds > 0:
        support = estimate_support_height(pose.positions, motion.skeleton, fps=motion.fps,
                                          window_seconds=float(config.support_window_seconds))
    contacts = detect_contacts(pose.positions, motion.skeleton, fps=motion.fps, floor_height=support,
                               max_height=float(config.contact_max_height), max_speed=float(config.contact_max_speed))
    labels = label_frames(pose, motion.skeleton, speeds=root.speeds, contacts=contacts, floor_height=support,
                          rules=rules)
    return majority_smooth(labels, rules.majority_frames)


def _with_label_file(labels: np.ndarray, label_file: str | os.PathLike, prepared: PreparedClip,
                     recorded: np.ndarray | None) -> np.ndarray:
    """``labels`` overridden on the label file's ranges (which count the clip's recorded frames)."""
    if recorded is None:
        return apply_label_file(labels, label_file)
    given = apply_label_file(np.full(prepared.original.num_frames, -1, dtype=np.int64), label_file)[recorded]
    return np.where(given >= 0, given, labels).astype(labels.dtype)


def _features(pose: Pose, motion: Motion, root: Root, styles: np.ndarray,
              config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, outputs, frame indices and mirrored flags of the clip's rows, then its mirror's (``config.mirror``)."""
    feats = clip_features(pose, motion.skeleton, root, styles, fps=motion.fps)
    parts = [(feats.inputs, feats.outputs, feats.frames, np.zeros(len(feats.frames), bool))]
    if config.mirror:
        mirrored_pose = mirror_pose(pose, motion.skeleton)
        m = clip_features(mirrored_pose, motion.skeleton, _root(mirrored_pose, motion, config), styles,
                          fps=motion.fps, mirrored=True)
        parts.append((m.inputs, m.outputs, m.frames, np.ones(len(m.frames), bool)))
    inputs, outputs, frames, mirrored = (np.concatenate(column) for column in zip(*parts))
    return inputs, outputs, frames, mirrored


def assign_splits(names: Sequence[str], *, val_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """Split per clip name: rank names by a hash of (seed, name); the first go to val, then test.

    Each non-zero fraction gets at least one clip when there are at least three clips, so a small
    dataset still has a validation set.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(f"config data.val_fraction {val_fraction} and data.test_fraction {test_fraction} must be "
                          "in [0, 1) with a sum < 1")
    n = len(names)

    def count(fraction: float) -> int:
        k = int(round(fraction * n))
        return max(k, 1) if fraction > 0 and n >= 3 else k

    order = sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}:{names[i]}".encode()).hexdigest())
    n_val, n_test = count(val_fraction), count(test_fraction)
    splits = ["train"] * n
    for rank, i in enumerate(order):
        if rank < n_val:
            splits[i] = "val"
        elif rank < n_val + n_test:
            splits[i] = "test"
    return splits


def assemble(rows: Sequence[ClipRows], config: ml_collections.ConfigDict, *,
             skipped: Mapping[str, str] | None = None) -> Dataset:
    """Stack clip rows, split by clip and fit the normalisation on the training rows."""
    if not rows:
        raise MotionDataError(None, "no usable clips: every clip was skipped " + json.dumps(dict(skipped or {})))
    names = tuple(r.name for r in rows)
    if len(set(names)) != len(names):
        raise MotionDataError(None, f"duplicate clip names: {sorted({n for n in names if names.count(n) > 1})}")
    splits = assign_splits(
        names, val_fraction=float(config.val_fraction), test_fraction=float(config.test_fraction),
        seed=int(config.split_seed))
    clip_index = np.concatenate([np.full(len(r.frames), i, np.int32) for i, r in enumerate(rows)])
    inputs = np.concatenate([r.inputs for r in rows])
    outputs = np.concatenate([r.outputs for r in rows])
    train = np.array([s == "train" for s in splits])[clip_index]
    return Dataset(
        inputs=inputs,
        outputs=outputs,
        clip_index=clip_index,
        frames=np.concatenate([r.frames for r in rows]).astype(np.int32),
        mirrored=np.concatenate([r.mirrored for r in rows]),
        styles=np.concatenate([r.styles for r in rows]),
        clip_names=names,
        clip_splits=tuple(splits),
        clip_frames=tuple(r.num_frames for r in rows),
        normalisation=Normalisation.fit(inputs[train], outputs[train]),
        skipped=dict(skipped or {}),
        resampled={r.name: r.source_fps for r in rows if r.source_fps is not None},
    )


# ----------------------------------------------------------------------------- sources


def _bvh_files(folder: Path) -> list[Path]:
    if not folder.exists():
        raise MotionDataError(folder, "folder does not exist")
    if not folder.is_dir():
        raise MotionDataError(folder, "is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".bvh" and p.is_file())
    if not files:
        raise MotionDataError(folder, "folder contains no .bvh files")
    return files


def _label_file(config: ml_collections.ConfigDict, name: str) -> Path | None:
    if not config.labels_dir:
        return None
    folder = Path(config.labels_dir)
    if not folder.is_dir():
        raise MotionDataError(folder, "labels_dir does not exist or is not a folder")
    path = folder / f"{name}.txt"
    return path if path.is_file() else None


def _rows_from_bvh(config: ml_collections.ConfigDict, progress: bool) -> tuple[list[ClipRows], dict[str, str]]:
    from mann_jax.data.bvh import load_bvh

    rows, skipped = [], {}
    files = _bvh_files(Path(config.path))
    for path in tqdm(files, desc="clips", unit="clip", disable=not progress):
        try:
            motion = load_bvh(path)
            rows.append(clip_rows(motion, config, label_file=_label_file(config, path.stem), source=path))
            if rows[-1].source_fps is not None:
                log.warning("%s: recorded at %.4g fps, resampled to %g fps (rotations by slerp, positions linearly)",
                            path, rows[-1].source_fps, FEATURE_FPS)
        except MotionDataError as e:
            if config.on_bad_clip == "raise":
                raise
            log.warning("skipping bad clip: %s", e)
            skipped[path.name] = str(e)
    return rows, skipped


def _rows_from_synthetic(config: ml_collections.ConfigDict, progress: bool) -> list[ClipRows]:
    from mann_jax.data.synthetic import generate_default_clips

    clips = generate_default_clips(
        seed=int(config.synthetic_seed), num_clips=int(config.synthetic_clips),
        seconds_per_clip=float(config.synthetic_seconds))
    bar = tqdm(clips, desc="clips", unit="clip", disable=not progress)
    return [clip_rows(c.motion, config, labels=c.styles) for c in bar]


# ----------------------------------------------------------------------------- cache


def _settings_for_key(config: ml_collections.ConfigDict) -> dict[str, Any]:
    settings = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    for k in ("cache_dir", "on_bad_clip", "normalisation_from"):  # the rows do not depend on them
        settings.pop(k, None)
    return settings


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(config: ml_collections.ConfigDict) -> str:
    """Hash of the input files' content, every feature setting, :data:`FEATURE_VERSION` and the source
    of the modules that make rows (:func:`mann_jax.data.synthetic.code_fingerprint`)."""
    from mann_jax.data.synthetic import code_fingerprint

    h = hashlib.sha256()
    h.update(json.dumps({"version": FEATURE_VERSION, "code": code_fingerprint(),
                         "settings": _settings_for_key(config)}, sort_keys=True,
                        default=str).encode())
    if config.source == "bvh":
        for p in _bvh_files(Path(config.path)):
            h.update(f"{p.name}:{_file_digest(p)}".encode())
            label = _label_file(config, p.stem)
            if label is not None:
                h.update(f"label:{label.name}:{_file_digest(label)}".encode())
    elif config.source == "ai4animation":
        from mann_jax.data.ai4animation import export_files

        for p in export_files(Path(config.path)):
            h.update(f"{p.name}:{_file_digest(p)}".encode())
    return h.hexdigest()[:32]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mann_jax"


def _to_npz(dataset: Dataset, path: Path) -> None:
    meta = {
        "clip_names": list(dataset.clip_names),
        "clip_splits": list(dataset.clip_splits),
        "clip_frames": list(dataset.clip_frames),
        "skipped": dict(dataset.skipped),
        "resampled": dict(dataset.resampled),
    }
    n = dataset.normalisation
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f, inputs=dataset.inputs, outputs=dataset.outputs, clip_index=dataset.clip_index,
                frames=dataset.frames, mirrored=dataset.mirrored, styles=dataset.styles,
                x_mean=n.x_mean, x_std=n.x_std, y_mean=n.y_mean, y_std=n.y_std, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _from_npz(path: Path) -> Dataset:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return Dataset(
            inputs=z["inputs"], outputs=z["outputs"], clip_index=z["clip_index"], frames=z["frames"],
            mirrored=z["mirrored"], styles=z["styles"],
            clip_names=tuple(meta["clip_names"]), clip_splits=tuple(meta["clip_splits"]),
            clip_frames=tuple(meta["clip_frames"]),
            normalisation=Normalisation(x_mean=z["x_mean"], x_std=z["x_std"], y_mean=z["y_mean"], y_std=z["y_std"]),
            skipped=meta["skipped"], resampled=meta.get("resampled", {}),
        )


# ----------------------------------------------------------------------------- entry point

SOURCES = ("synthetic", "bvh", "ai4animation")


def build_dataset(config: ml_collections.ConfigDict, *, progress: bool = True, use_cache: bool = True) -> Dataset:
    """Build (or load from cache) the dataset described by a data config.

    Args:
      config: the ``data`` part of a config (see ``configs/default.py``).
      progress: show a progress bar over clips.
      use_cache: read and write the cache (``config.cache_dir``, default ``~/.cache/mann_jax``);
        the returned dataset then carries its :func:`cache_key` (``Dataset.cache_key``).
    """
    if config.source not in SOURCES:
        raise ConfigError(f"config data.source must be one of {SOURCES}, got {config.source!r}")
    if config.on_bad_clip not in ("skip", "raise"):
        raise ConfigError(f"config data.on_bad_clip must be 'skip' or 'raise', got {config.on_bad_clip!r}")
    if config.source != "synthetic" and not config.path:
        raise ConfigError(f"config data.path must name a folder for data.source {config.source!r}")
    limits_from(config)  # a bad threshold is one error before any clip is read
    path = key = None
    if use_cache:
        key = cache_key(config)  # the only hashing of the input files (the Dataset carries the key)
        path = cache_path(config, key)
        cached = _read_cache(path, "rebuilding")
        if cached is not None:
            # The cache key leaves on_bad_clip out (the rows do not depend on it), so a dataset
            # cached by a "skip" run answers a "raise" run too: raise for what it skipped.
            if config.on_bad_clip == "raise" and cached.skipped:
                name, reason = next(iter(sorted(cached.skipped.items())))
                raise MotionDataError(None, f"{reason} (clip {name}, skipped when the dataset cache was built; "
                                            "data.on_bad_clip='raise')")
            return _normalised_as_configured(dataclasses.replace(cached, cache_key=key), config)
    start = time.perf_counter()
    if config.source == "bvh":
        rows, skipped = _rows_from_bvh(config, progress)
        dataset = assemble(rows, config, skipped=skipped)
    elif config.source == "synthetic":
        dataset = assemble(_rows_from_synthetic(config, progress), config)
    else:
        from mann_jax.data.ai4animation import dataset_from_export

        dataset = dataset_from_export(Path(config.path), config)
    log.info("built dataset in %.1f s", time.perf_counter() - start)
    if path is not None:
        _to_npz(dataset, path)
    return _normalised_as_configured(dataclasses.replace(dataset, cache_key=key), config)


def cache_path(config: ml_collections.ConfigDict, key: str) -> Path:
    """The cache file of the dataset with cache key ``key`` (``data.cache_dir``, default ~/.cache/mann_jax)."""
    return Path(config.cache_dir or default_cache_dir()) / f"{config.source}-{key}.npz"


def cached_dataset(config: ml_collections.ConfigDict, key: str) -> Dataset | None:
    """The dataset cached under ``key`` (e.g. one an earlier version of the row code built), normalised as
    ``config`` says; None when that file is gone or unreadable."""
    dataset = _read_cache(cache_path(config, key), "nothing to compare with")
    if dataset is None:
        return None
    return _normalised_as_configured(dataclasses.replace(dataset, cache_key=key), config)


def _read_cache(path: Path, fallback: str) -> Dataset | None:
    """The dataset in cache file ``path``; None when absent, or unreadable (warning that it does ``fallback``)."""
    if not path.exists():
        return None
    try:
        return _from_npz(path)
    except Exception as e:  # a truncated or foreign file: never trust it
        log.warning("ignoring unreadable dataset cache %s (%s); %s", path, e, fallback)
        return None


def _normalised_as_configured(dataset: Dataset, config: ml_collections.ConfigDict) -> Dataset:
    """``dataset`` with the normalisation of ``config.normalisation_from`` (a weights folder), if set."""
    folder = config.get("normalisation_from", "")
    if not folder:
        return dataset
    from mann_jax.export.ai4animation import load_normalisation

    norm = load_normalisation(folder)
    if norm.x_mean.shape != (dataset.inputs.shape[1],) or norm.y_mean.shape != (dataset.outputs.shape[1],):
        raise ConfigError(f"data.normalisation_from {folder}: statistics for {norm.x_mean.shape[0]} inputs and "
                          f"{norm.y_mean.shape[0]} outputs, the data has {dataset.inputs.shape[1]} and "
                          f"{dataset.outputs.shape[1]}")
    return dataclasses.replace(dataset, normalisation=norm)
