"""Shared pytest fixtures.

The real dog motion capture (40 BVH clips, CC BY-NC 4.0) is never copied into this repository: it
is read from ``../shared/data/mann_dog_bvh`` next to the repository root, and tests that need it
skip with a reason when it is absent.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from mann_jax.backend import configure_cpu_backend
from mann_jax.metric_writer import open_logdirs

# Before any test starts JAX: the suite compiles the programs the commands run (they all call it first).
configure_cpu_backend()

#: Where a warning attributed to one of these modules comes from JAX/Flax/Optax/Orbax or from the project's calls.
DEPRECATION_SOURCES = "(jax|jaxlib|flax|optax|orbax|chex|mann_jax|experiments|configs|tests|test_|conftest)"


def pytest_configure(config: pytest.Config) -> None:
    """On the newest dependency line (Python >= 3.12: the newest JAX and Flax) a deprecated JAX, Flax,
    Optax or Orbax API fails the test that meets it (docs/dependencies.md); Python 3.11 keeps JAX 0.10.2."""
    if sys.version_info >= (3, 12):
        for category in ("DeprecationWarning", "FutureWarning"):
            config.addinivalue_line("filterwarnings", f"error::{category}:{DEPRECATION_SOURCES}")


@pytest.fixture(autouse=True)
def no_metric_writer_left_open() -> Iterator[None]:
    """Fails a test that leaves a metric writer open: at exit tensorboardX would close it in an atexit
    hook that Python >= 3.12 refuses (a traceback at the end of the session)."""
    before = set(open_logdirs())
    yield
    left = sorted(set(open_logdirs()) - before)
    assert not left, f"metric writers left open (close them on every path out): {left}"


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


@pytest.fixture
def steps_in_a_fresh_interpreter(tmp_path: Path) -> Callable[..., np.ndarray]:
    """``run(model_path, x, preamble="", checks="", timeout=300)``: ``NumpyRuntime(load_compact(model_path)).step`` over
    the rows of ``x`` in a new Python process, returned as an array. ``preamble`` runs before anything is
    imported (e.g. to make a package unimportable), ``checks`` right after ``rt = NumpyRuntime(model)``."""

    def run(model_path: Path, x: np.ndarray, *, preamble: str = "", checks: str = "",
            timeout: int = 300) -> np.ndarray:
        np.save(tmp_path / "fresh_x.npy", x)
        code = (
            f"{preamble}"
            "import numpy as np\n"
            "from mann_jax.export.compact import load_compact\n"
            "from mann_jax.export.runtime import NumpyRuntime\n"
            f"model = load_compact({str(model_path)!r})\n"
            "rt = NumpyRuntime(model)\n"
            f"{checks}"
            f"x = np.load({str(tmp_path / 'fresh_x.npy')!r})\n"
            f"np.save({str(tmp_path / 'fresh_y.npy')!r}, np.stack([rt.step(r) for r in x]))\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stderr
        return np.load(tmp_path / "fresh_y.npy")

    return run
