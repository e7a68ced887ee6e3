"""Export a trained (pruned) MANN controller from a training workdir.

  python -m experiments.export --checkpoint runs/dog --format compact --out out/dog.npz
  python -m experiments.export --checkpoint runs/dog90 --format onnx --out out/dog90.onnx
  python -m experiments.export --checkpoint runs/dog --format ai4animation --out out/dog_weights/

  python -m experiments.export --checkpoint ../shared/data/mann_pretrained --format compact --out out/authors.npz

The workdir's ``config.json`` (written by ``experiments.train``) rebuilds the model; the latest
checkpoint (or ``--step``) gives the weights — pruned weights are exactly zero there. The
normalisation comes from the run's dataset (``config.data``, usually a cache hit), or from
``--normalisation``: an ``.npz`` with ``x_mean x_std y_mean y_std`` (the dataset cache file works).

``--checkpoint`` also takes an AI4Animation weights folder (e.g. the authors' trained dog): its
``.bin`` files give the network (sizes read from the files, the dog's gating indices) and its own
``Xmean Xstd Ymean Ystd`` the normalisation, so ``--step`` and ``--normalisation`` do not apply
there (an error). A file of the folder missing or of the wrong size is one ``error:`` line naming it.

Formats:

* ``compact`` — one ``.npz`` (:mod:`mann_jax.export.compact`): hidden units that cannot affect the
  output (neuron pruning) physically removed, sparse layers as CSR; loads with numpy alone and
  runs in :mod:`mann_jax.export.runtime`.
* ``onnx`` — the whole controller (normalisation, gating, experts, denormalisation) as an ONNX
  graph (:mod:`mann_jax.export.onnx`), from the compact model (so shrunk too).
* ``ai4animation`` — the original Unity runtime's ``.bin`` files (:mod:`mann_jax.export.ai4animation`)
  at the TRAINED size (pruned weights as zeros), since that runtime fixes its layer sizes.

A missing or corrupt checkpoint or config is one ``error:`` line and exit status 2, and so is an
``--out`` inside the run's workdir while another process writes there (docs/data_checks.md). The
last line printed is JSON.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
from absl import app, flags, logging

from mann_jax import workdir_lock
from mann_jax.checkpoint import CheckpointError
from mann_jax.cli import USER_ERRORS
from mann_jax.data.normalisation import Normalisation
from mann_jax.export.compact import ExportFormatError, compact_from_params, save_compact

FORMATS = ("compact", "onnx", "ai4animation")

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Training workdir (holding config.json and checkpoints/), "
                                  "or an AI4Animation weights folder.", required=True)
_FORMAT = flags.DEFINE_enum("format", "compact", list(FORMATS), "Export format.")
_OUT = flags.DEFINE_string("out", None, "Output file (compact, onnx) or folder (ai4animation).", required=True)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_FORMULATION = flags.DEFINE_enum("formulation", "mix", ["mix", "blend"], "ONNX expert-layer formulation.")
_STORAGE = flags.DEFINE_enum("storage", "auto", ["auto", "dense", "csr"], "Compact: expert-layer storage.")
_SHRINK = flags.DEFINE_bool("shrink", True, "Compact/ONNX: remove hidden units that cannot affect the output.")
_NORMALISATION = flags.DEFINE_string("normalisation", None, "Optional .npz with x_mean, x_std, y_mean, y_std.")


def read_config(workdir: Path) -> ml_collections.ConfigDict:
    """The config a run was started with (``<workdir>/config.json``).

    Raises:
        CheckpointError: missing, unreadable or without model settings.
    """
    path = workdir / "config.json"
    if not workdir.is_dir():
        raise CheckpointError(f"{workdir}: no such training workdir")
    if not path.is_file():
        raise CheckpointError(f"{path}: not found (is {workdir} a training workdir?)")
    try:
        config = ml_collections.ConfigDict(json.loads(path.read_text()))
        config.model.hidden_sizes, config.train.seed  # noqa: B018 - the keys the export needs
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable run config ({type(e).__name__}: {e})") from None
    return config


def read_normalisation(path: Path) -> Normalisation:
    """Normalisation statistics from an ``.npz`` holding ``x_mean x_std y_mean y_std``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return Normalisation(*(np.asarray(z[k], np.float32) for k in ("x_mean", "x_std", "y_mean", "y_std")))
    except (OSError, KeyError, ValueError, EOFError) as e:
        raise ExportFormatError(path, f"cannot read normalisation statistics ({type(e).__name__}: {e})") from None


def latest_step(workdir: Path) -> int | None:
    """The latest complete checkpoint step of a workdir (None when there is none)."""
    folder = workdir / "checkpoints" if (workdir / "checkpoints").is_dir() else workdir
    steps = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "state").is_dir()) \
        if folder.is_dir() else []
    return steps[-1] if steps else None


def export(checkpoint: str | Path, fmt: str, out: str | Path, *, step: int | None = None, formulation: str = "mix",
           storage: str = "auto", shrink: bool = True, normalisation: str | Path | None = None) -> dict[str, Any]:
    """Exports the run (or AI4Animation weights folder) in ``checkpoint`` as ``fmt`` to ``out``; returns a
    JSON-able summary.

    Raises:
        CheckpointError: missing / corrupt workdir, config or checkpoint; ``step`` or ``normalisation``
            given with a weights folder.
        WeightsFormatError: a file of a weights folder is missing or has the wrong size.
        ExportFormatError: an unreadable ``normalisation`` file.
        ValueError: an unknown format.
    """
    from flax import nnx

    from mann_jax.control.rollout import load_params
    from mann_jax.export.ai4animation import is_weights_folder, model_from_ai4animation
    from mann_jax.train import ModelFunctions, build_model

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    workdir, out = Path(checkpoint), Path(out)
    if is_weights_folder(workdir):
        given = [f for f, v in (("--step", step), ("--normalisation", normalisation)) if v is not None]
        if given:
            raise CheckpointError(f"{workdir}: an AI4Animation weights folder holds one network and its own "
                                  f"normalisation: {' and '.join(given)} do{'es' if len(given) == 1 else ''} "
                                  "not apply")
        model, norm = model_from_ai4animation(workdir)
        fns = ModelFunctions.of(model)
        params, used_step = fns.params, None
        model_config: dict[str, Any] = {"source": "ai4animation", "input_size": model.input_size,
                                        "output_size": model.output_size, "hidden_sizes": list(model.hidden_sizes),
                                        "n_experts": model.n_experts, "gating_indices": list(model.gating_indices)}
    else:
        config = read_config(workdir)
        model = build_model(config.model, seed=int(config.train.seed))
        fns = ModelFunctions.of(model)
        params = load_params(workdir, fns, step=step)
        used_step = step if step is not None else latest_step(workdir)
        model_config = config.model.to_dict()
        if normalisation is not None:
            norm = read_normalisation(Path(normalisation))
        else:
            from mann_jax.data.dataset import build_dataset

            norm = build_dataset(config.data, progress=False).normalisation
    summary: dict[str, Any] = {"checkpoint": str(workdir), "step": used_step, "format": fmt, "out": str(out)}
    if fmt == "ai4animation":
        from mann_jax.export.ai4animation import save_ai4animation

        trained = nnx.merge(fns.eval_graph, nnx.State(params), fns.rest)
        written = save_ai4animation(trained, norm, out)
        summary.update(files=len(written), bytes=sum(p.stat().st_size for p in written),
                       hidden_sizes=list(model.hidden_sizes))
        return summary
    meta = {"checkpoint": str(workdir.absolute()), "step": used_step, "model_config": model_config}
    compact = compact_from_params(jax_to_numpy(params), norm, gating_indices=model.gating_indices,
                                  shrink=shrink, storage=storage, metadata=meta)
    if fmt == "compact":
        save_compact(compact, out)
    else:
        from mann_jax.export.onnx import export_onnx

        export_onnx(compact, out, formulation=formulation)
        summary["formulation"] = formulation
    summary.update(bytes=out.stat().st_size, **{k: v for k, v in compact.summary().items() if k != "layers"},
                   storage=[l.storage for l in compact.layers])
    return summary


def jax_to_numpy(tree: Any) -> Any:
    """A nested dict of arrays as numpy float32."""
    if isinstance(tree, dict):
        return {k: jax_to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree, np.float32)


def user_errors(main: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
    """User errors (bad checkpoint, config, file) as one ``error:`` line and exit status 2."""

    @functools.wraps(main)
    def wrapped(argv: list[str]) -> None:
        try:
            main(argv)
        except (*USER_ERRORS, ExportFormatError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapped


@user_errors
def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    # Writing into the run's own folder makes the export one of its writers; elsewhere it only reads the run.
    run_dir = Path(_CHECKPOINT.value)
    writes_into_run = run_dir.is_dir() and Path(_OUT.value).absolute().is_relative_to(run_dir.absolute())
    with workdir_lock.hold(run_dir, enabled=writes_into_run):
        summary = export(_CHECKPOINT.value, _FORMAT.value, _OUT.value, step=_STEP.value,
                         formulation=_FORMULATION.value, storage=_STORAGE.value, shrink=_SHRINK.value,
                         normalisation=_NORMALISATION.value)
    step = "" if summary["step"] is None else f" step {summary['step']}"
    print(f"wrote {summary['out']} ({summary['format']}, {summary['bytes']} bytes) from {summary['checkpoint']}{step}")
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
