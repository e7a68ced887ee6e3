"""Shared pytest fixtures.

The real dog motion capture (40 BVH clips, CC BY-NC 4.0) is never copied into this repository: it
is read from ``../shared/data/mann_dog_bvh`` next to the repository root, and tests that need it
skip with a reason when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: Where the real dog BVH clips live: ``<repo root>/../shared/data/mann_dog_bvh``.
DOG_BVH_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mann_dog_bvh"


@pytest.fixture(scope="session")
def dog_bvh_dir() -> Path:
    """The folder of real dog BVH clips; skips the test when it is not there."""
    if not DOG_BVH_DIR.is_dir():
        pytest.skip(f"real dog BVH data not found at {DOG_BVH_DIR} "
                    "(put MotionCapture.zip's *.bvh files in ../shared/data/mann_dog_bvh)")
    return DOG_BVH_DIR


@pytest.fixture(scope="session")
def dog_clip_paths(dog_bvh_dir: Path) -> list[Path]:
    """The ``*.bvh`` files of the real dog data, sorted by name; skips when there are none."""
    paths = sorted(dog_bvh_dir.glob("*.bvh"))
    if not paths:
        pytest.skip(f"no *.bvh files in {dog_bvh_dir}")
    return paths


@pytest.fixture(scope="session")
def toy_study(tmp_path_factory):
    """``(config, workdir, dataset)`` of the study at toy scale (configs/study.py:toy), with the trade-off
    sweep already trained in ``workdir`` (shared by the study's tests; ~10 s once per session)."""
    from configs import study
    from mann_jax.data.dataset import build_dataset
    from mann_jax.study.models import tradeoff_models

    config = study.get_config("toy")
    config.data.cache_dir = str(tmp_path_factory.mktemp("study_cache"))
    workdir = tmp_path_factory.mktemp("study")
    dataset = build_dataset(config.data, progress=False)
    tradeoff_models(config, workdir, dataset=dataset, progress=False)
    return config, workdir, dataset
