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
