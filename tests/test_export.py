"""Export of trained (pruned) controllers: compact .npz, ONNX, AI4Animation .bin, and the export command.

Every exported model must reproduce the masked dense JAX model (normalise -> MANN -> denormalise)
within 1e-5 relative (max-norm over the outputs); damaged files must be clear errors naming them.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mann_jax.checkpoint import CheckpointError, Checkpoints
from mann_jax.data.normalisation import Normalisation
from mann_jax.export.ai4animation import WeightsFormatError, model_from_ai4animation, save_ai4animation
from mann_jax.export.compact import (
    ExportFormatError,
    compact_from_params,
    dead_units,
    load_compact,
    save_compact,
    write_atomically,
)
from mann_jax.export.onnx import export_onnx, load_onnx
from mann_jax.export.runtime import NumpyRuntime
from mann_jax.model import MANN, expert_weight_bound
from mann_jax.pruning.accounting import global_magnitude_masks
from mann_jax.pruning.structured import leaf_masks_from_units
from mann_jax.train import ModelFunctions

REPO = Path(__file__).resolve().parents[1]
HIDDEN, EXPERTS = (64, 48), 4
KEEP = (8, 6)  # hidden units kept by the structured variant


def rel_err(got: Any, want: Any) -> float:
    """max |got - want| / max |want|."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def _numpy_tree(tree: Any) -> Any:
    return jax.tree.map(lambda a: np.array(a, np.float32), tree)


def _masked(params: Any, masks: Any) -> Any:
    return jax.tree.map(lambda p, m: np.where(np.asarray(m, bool), p, np.float32(0)), params, masks)


def make_setup(seed: int = 0) -> dict[str, Any]:
    """A small MANN with non-trivial weights, biases and normalisation, and its pruned variants."""
    rng = np.random.default_rng(seed)
    model = MANN(hidden_sizes=HIDDEN, n_experts=EXPERTS, rngs=nnx.Rngs(seed))
    fns = ModelFunctions.of(model)
    params = _numpy_tree(fns.params)
    for l in range(3):  # expert weights of one scale (so global pruning leaves ~10 % in every layer), biases != 0
        a = params[f"layer{l}"]["alpha"]
        a *= np.float32(0.05 / expert_weight_bound(a.shape[1], a.shape[2]))
        params[f"layer{l}"]["beta"] = rng.normal(0, 0.2, params[f"layer{l}"]["beta"].shape).astype(np.float32)
    for l in range(3):
        params["gating"][f"layer{l}"]["bias"] = rng.normal(0, 0.1, params["gating"][f"layer{l}"]["bias"].shape
                                                           ).astype(np.float32)
    norm = Normalisation(rng.normal(0, 1, 480).astype(np.float32), rng.uniform(0.5, 2, 480).astype(np.float32),
                         rng.normal(0, 1, 363).astype(np.float32), rng.uniform(0.5, 2, 363).astype(np.float32))
    u0 = np.zeros(HIDDEN[0], bool)
    u0[rng.choice(HIDDEN[0], KEEP[0], replace=False)] = True
    u1 = np.zeros(HIDDEN[1], bool)
    u1[rng.choice(HIDDEN[1], KEEP[1], replace=False)] = True
    unit_masks = jax.tree.map(lambda a: np.ones(a.shape, bool), params)
    for (layer, name), m in leaf_masks_from_units(params, jnp.asarray(u0), jnp.asarray(u1)).items():
        unit_masks[layer][name] = np.asarray(m)
    variants = {
        "dense": params,
        "unstructured": _masked(params, global_magnitude_masks(params, [0.9])[0]),
        "structured": _masked(params, unit_masks),
    }
    x = (rng.normal(0, 1, (24, 480)) * norm.x_std + norm.x_mean).astype(np.float32)
    return {"model": model, "fns": fns, "norm": norm, "variants": variants, "x": x}


def reference(setup: dict[str, Any], params: Any, x: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The masked dense JAX model on raw inputs: ``(y_raw, omega)``."""
    x = setup["x"] if x is None else x
    norm = setup["norm"]
    y, omega = setup["fns"].predict(jax.tree.map(jnp.asarray, params), jnp.asarray(norm.normalise_inputs(x)),
                                    return_gating=True)
    return np.asarray(norm.denormalise_outputs(y)), np.asarray(omega)


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    return make_setup()


@pytest.fixture(scope="module")
def compact_files(setup: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("compact")
    gi = setup["model"].gating_indices
    return {name: save_compact(compact_from_params(p, setup["norm"], gating_indices=gi, metadata={"variant": name}),
                               tmp / f"{name}.npz")
            for name, p in setup["variants"].items()}


# ----------------------------------------------------------------------------- compact


@pytest.mark.parametrize("variant", ["dense", "unstructured", "structured"])
def test_compact_reproduces_the_jax_model(setup, compact_files, variant):
    want, omega = reference(setup, setup["variants"][variant])
    compact = load_compact(compact_files[variant])
    assert compact.metadata == {"variant": variant}
    y, om = NumpyRuntime(compact).batch(setup["x"], return_gating=True)
    assert rel_err(y, want) <= 1e-5
    np.testing.assert_allclose(om, omega, atol=1e-6)
    # The stored parameters, loaded into a (shrunk) MANN, give the same outputs in JAX.
    small = MANN(hidden_sizes=compact.hidden_sizes, n_experts=EXPERTS, rngs=nnx.Rngs(0))
    fns = ModelFunctions.of(small)
    norm = setup["norm"]
    y_small = fns.predict(jax.tree.map(jnp.asarray, compact.params()), jnp.asarray(norm.normalise_inputs(setup["x"])))
    assert rel_err(norm.denormalise_outputs(np.asarray(y_small)), want) <= 1e-5


def test_compact_shrinks_structured_and_stores_unstructured_sparsely(setup, compact_files):
    dense, unstructured, structured = (load_compact(compact_files[v]) for v in ("dense", "unstructured", "structured"))
    assert dense.hidden_sizes == HIDDEN and [l.storage for l in dense.layers] == ["dense"] * 3
    assert structured.hidden_sizes == KEEP and structured.original_hidden_sizes == HIDDEN
    assert [len(k) for k in structured.kept_units] == list(KEEP)
    assert unstructured.hidden_sizes == HIDDEN
    assert [l.storage for l in unstructured.layers] == ["csr"] * 3
    assert all(0.03 < l.density < 0.2 for l in unstructured.layers)
    assert unstructured.summary()["sparsity_vs_original"] == pytest.approx(0.9, abs=0.01)
    size = {v: compact_files[v].stat().st_size for v in compact_files}
    assert size["unstructured"] < 0.3 * size["dense"] and size["structured"] < 0.2 * size["dense"]
    # Dead-unit detection is exact: the kept units are those of the unit masks.
    d0, d1 = dead_units(setup["variants"]["structured"])
    assert list(np.flatnonzero(~d0)) == list(structured.kept_units[0])
    assert list(np.flatnonzero(~d1)) == list(structured.kept_units[1])


@pytest.mark.slow
def test_compact_loads_without_the_training_stack(setup, compact_files, steps_in_a_fresh_interpreter):
    """numpy alone: jax, flax, optax and orbax are made unimportable in a fresh interpreter."""
    y = steps_in_a_fresh_interpreter(
        compact_files["unstructured"], setup["x"],
        preamble=("import sys\n"
                  "for m in ('jax', 'jaxlib', 'flax', 'optax', 'orbax', 'orbax.checkpoint', 'chex'):\n"
                  "    sys.modules[m] = None\n"),
        timeout=120)
    want, _ = reference(setup, setup["variants"]["unstructured"])
    assert rel_err(y, want) <= 1e-5


def test_damaged_compact_files_are_clear_errors(compact_files, tmp_path):
    good = compact_files["unstructured"]
    blob = good.read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ExportFormatError, match="truncated.npz.*(truncated|corrupt)"):
        load_compact(truncated)

    # One flipped byte in the middle of the sparse values of the first layer.
    data = load_compact(good).layers[0].csr[2].tobytes()
    at = blob.find(data[:64])
    assert len(data) > 1000 and at > 0
    at += len(data) // 2
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1:])
    with pytest.raises(ExportFormatError, match="corrupt.npz.*(corrupt|CRC|checksum)"):
        load_compact(corrupt)

    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ExportFormatError, match="other.npz.*not a mann_jax.compact file"):
        load_compact(other)

    with np.load(good) as z:
        arrays = dict(z)
    header = json.loads(bytes(arrays["header"]).decode())
    header["version"] = 99
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    newer = tmp_path / "newer.npz"
    np.savez(newer, **arrays)
    with pytest.raises(ExportFormatError, match="newer.npz.*version 99"):
        load_compact(newer)

    with pytest.raises(ExportFormatError, match="missing.npz: file not found"):
        load_compact(tmp_path / "missing.npz")


def test_files_that_are_not_npz_archives_are_named_as_such(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00\xff" * 1000)  # numpy would say "pickled (object) data ... load it unsafely"
    with pytest.raises(ExportFormatError, match="garbage.npz: not a .npz archive"):
        load_compact(garbage)
    text = tmp_path / "notes.npz"
    text.write_text("not an archive\n")
    with pytest.raises(ExportFormatError, match="notes.npz: not a .npz archive"):
        load_compact(text)
    array = tmp_path / "array.npz"
    with open(array, "wb") as f:
        np.save(f, np.zeros(3))  # a .npy array, not an archive
    with pytest.raises(ExportFormatError, match="array.npz: not a .npz archive"):
        load_compact(array)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ExportFormatError, match="empty.npz: empty file"):
        load_compact(empty)


def test_unwritable_export_paths_are_clear_errors_and_leave_nothing_behind(compact_files, tmp_path):
    model = load_compact(compact_files["structured"])
    folder = tmp_path / "folder"
    folder.mkdir()
    for write in (save_compact, export_onnx):
        with pytest.raises(ExportFormatError, match="folder: cannot write: it is a folder"):
            write(model, folder)
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for name in ("m.npz", "m.onnx"):
        write = save_compact if name.endswith(".npz") else export_onnx
        with pytest.raises(ExportFormatError, match=f"afile/{name}: cannot write: .*afile is not a folder"):
            write(model, afile / name)
    if Path("/proc/self").is_dir():  # a place nothing can be created in, even as root
        with pytest.raises(ExportFormatError, match="/proc/m.npz: cannot write"):
            save_compact(model, "/proc/m.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder"] and not any(folder.iterdir())
    assert afile.read_text() == "keep me"


def test_a_failed_write_keeps_the_earlier_file_and_leaves_no_temporary(compact_files, tmp_path):
    good = tmp_path / "m.npz"
    save_compact(load_compact(compact_files["structured"]), good)
    before = good.read_bytes()

    def disk_full(f: Any) -> None:
        f.write(b"half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(ExportFormatError, match="m.npz: cannot write: No space left on device"):
        write_atomically(good, disk_full)
    assert good.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_exported_files_follow_the_umask(compact_files, tmp_path):
    model = load_compact(compact_files["structured"])
    old = os.umask(0o027)
    try:
        npz = save_compact(model, tmp_path / "m.npz")  # not mkstemp's 0600
        onnx_file = export_onnx(model, tmp_path / "m.onnx")
    finally:
        os.umask(old)
    assert npz.stat().st_mode & 0o777 == 0o640
    assert onnx_file.stat().st_mode & 0o777 == 0o640


# ----------------------------------------------------------------------------- ONNX


@pytest.mark.parametrize("formulation", ["mix", "blend"])
@pytest.mark.parametrize("variant", ["dense", "unstructured", "structured"])
def test_onnx_reproduces_the_jax_model(setup, compact_files, tmp_path, variant, formulation):
    want, omega = reference(setup, setup["variants"][variant])
    path = export_onnx(load_compact(compact_files[variant]), tmp_path / "m.onnx", formulation=formulation)
    rt = load_onnx(path, threads=1)
    assert rt.metadata["formulation"] == formulation
    y, om = rt.batch(setup["x"], return_gating=True)
    assert rel_err(y, want) <= 1e-5
    np.testing.assert_allclose(om, omega, atol=1e-6)
    assert rel_err(np.stack([rt.step(r) for r in setup["x"][:4]]), want[:4]) <= 1e-5


def test_onnx_stores_sparse_layers_sparsely(compact_files, tmp_path):
    sizes = {v: export_onnx(load_compact(compact_files[v]), tmp_path / f"{v}.onnx").stat().st_size
             for v in ("dense", "unstructured")}
    assert sizes["unstructured"] < 0.5 * sizes["dense"]


def test_damaged_onnx_files_are_clear_errors(compact_files, tmp_path):
    good = export_onnx(load_compact(compact_files["structured"]), tmp_path / "good.onnx")
    blob = good.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ExportFormatError, match="truncated.onnx"):
        load_onnx(truncated)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xff" * 1000)
    with pytest.raises(ExportFormatError, match="garbage.onnx"):
        load_onnx(garbage)
    with pytest.raises(ExportFormatError, match="missing.onnx: file not found"):
        load_onnx(tmp_path / "missing.onnx")


# ----------------------------------------------------------------------------- AI4Animation


def test_ai4animation_round_trip_of_a_pruned_model_is_exact(setup, tmp_path):
    params = setup["variants"]["unstructured"]
    fns = setup["fns"]
    model = nnx.merge(fns.eval_graph, nnx.State(jax.tree.map(jnp.asarray, params)), fns.rest)
    written = save_ai4animation(model, setup["norm"], tmp_path / "a")
    back, norm = model_from_ai4animation(tmp_path / "a", gating_indices=setup["model"].gating_indices)
    got = nnx.to_pure_dict(nnx.state(back, nnx.Param))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(params)):
        assert np.array_equal(np.asarray(a), b)
    for a, b in zip(norm, setup["norm"]):
        assert np.array_equal(a, b)
    again = save_ai4animation(back, norm, tmp_path / "b")
    assert [p.read_bytes() for p in written] == [p.read_bytes() for p in again]


def test_ai4animation_unwritable_folder_is_a_clear_error(setup, tmp_path):
    fns = setup["fns"]
    model = nnx.merge(fns.eval_graph, nnx.State(jax.tree.map(jnp.asarray, setup["variants"]["dense"])), fns.rest)
    afile = tmp_path / "weights"
    afile.write_text("keep me")
    with pytest.raises(WeightsFormatError, match="weights: cannot write: it is a file, not a folder"):
        save_ai4animation(model, setup["norm"], afile)
    assert afile.read_text() == "keep me"
    with pytest.raises(WeightsFormatError, match="weights/deeper: cannot write: .*weights is not a folder"):
        save_ai4animation(model, setup["norm"], afile / "deeper")
    folder = tmp_path / "bin"
    (folder / "wc1_w.bin").mkdir(parents=True)  # a file that cannot be replaced, half way through the writing
    with pytest.raises(WeightsFormatError, match="bin/wc1_w.bin: cannot write: Is a directory"):
        save_ai4animation(model, setup["norm"], folder)
    assert not list(folder.glob("*.tmp"))


# ----------------------------------------------------------------------------- the export command


@pytest.fixture(scope="module")
def workdir(setup, tmp_path_factory) -> tuple[Path, Any]:
    """A training workdir (config.json + one Orbax checkpoint) of a neuron-pruned small model."""
    from configs import default

    tmp = tmp_path_factory.mktemp("run")
    config = default.get_config()
    config.data.update(synthetic_clips=2, synthetic_seconds=3.0, cache_dir=str(tmp / "cache"))
    config.model.update(hidden_sizes=HIDDEN, n_experts=EXPERTS)
    run = tmp / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config.to_dict(), indent=2, default=str))
    params = setup["variants"]["structured"]
    checkpoints = Checkpoints(run / "checkpoints", save_every=1, keep=1)
    checkpoints.save(7, {"params": params, "step": np.int32(7)}, {"note": "test"})
    checkpoints.close()
    return run, config


def test_export_function_writes_all_formats(setup, workdir, tmp_path):
    from experiments.export import export
    from mann_jax.data.dataset import build_dataset

    run, config = workdir
    norm = build_dataset(config.data, progress=False).normalisation
    setup_run = dict(setup, norm=norm)
    want, _ = reference(setup_run, setup["variants"]["structured"])

    s = export(run, "compact", tmp_path / "m.npz")
    assert s["step"] == 7 and s["hidden_sizes"] == list(KEEP)
    assert rel_err(NumpyRuntime(load_compact(tmp_path / "m.npz")).batch(setup["x"]), want) <= 1e-5

    s = export(run, "onnx", tmp_path / "m.onnx", formulation="blend")
    assert s["formulation"] == "blend"
    assert rel_err(load_onnx(tmp_path / "m.onnx").batch(setup["x"]), want) <= 1e-5

    export(run, "ai4animation", tmp_path / "bin")
    back, _ = model_from_ai4animation(tmp_path / "bin", gating_indices=setup["model"].gating_indices)
    got = nnx.to_pure_dict(nnx.state(back, nnx.Param))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(setup["variants"]["structured"])):
        assert np.array_equal(np.asarray(a), b)

    with pytest.raises(CheckpointError, match="no such training workdir"):
        export(tmp_path / "nowhere", "compact", tmp_path / "x.npz")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: unreadable run config"):
        export(broken, "compact", tmp_path / "x.npz")
    (broken / "config.json").write_text((run / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no such checkpoint folder|no checkpoint"):
        export(broken, "compact", tmp_path / "x.npz")


@pytest.mark.slow
def test_export_command_line(workdir, tmp_path):
    run, _ = workdir
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "experiments.export", f"--checkpoint={run}", "--format=compact",
           f"--out={tmp_path / 'm.npz'}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["format"] == "compact" and summary["hidden_sizes"] == list(KEEP)
    assert load_compact(tmp_path / "m.npz").hidden_sizes == KEEP
    folder = tmp_path / "folder"
    folder.mkdir()
    proc = subprocess.run(cmd[:-1] + [f"--out={folder}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and f"error: {folder}: cannot write" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not any(folder.iterdir())
    cmd[3] = f"--checkpoint={tmp_path / 'nowhere'}"
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "error:" in proc.stderr and "nowhere" in proc.stderr
    assert "Traceback" not in proc.stderr
