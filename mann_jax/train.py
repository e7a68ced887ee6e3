"""Training a MANN: one pure, jitted train step for ONE model, the run setup, and :func:`train`.

The step (:func:`make_train_step`) is a pure function ``(state, x_all, y_all, batch_rows) ->
(state, metrics)`` over a :class:`TrainState` pytree (parameters as a plain nested dict, optimizer
state, step, RNG key). It closes over nothing that changes, so the sparsity sweep maps exactly this
function over a leading "level" axis (``jax.vmap`` with ``in_axes=(0, None, None, None)``) instead
of keeping a second implementation.

Data order is a function of the step alone: epoch ``e = step // n_batches`` uses the permutation of
:func:`batch_order` (shuffled once before epoch 0 and reused, as the original, or reshuffled per
epoch), and dropout draws from ``fold_in(key, step)``. A run resumed from a checkpoint therefore
continues with exactly the batches and dropout masks the uninterrupted run would have used.

:func:`train` and :func:`mann_jax.sweep.run_sweep` share one setup, :func:`start_run` (workdir,
checkpoints and resume, the config record, the evaluation and logging helpers of a :class:`Run`),
and one loop, :func:`mann_jax.loop.run_loop`; they differ only in the step they hand it (one model,
or many) and in what they write at a log line and an epoch end. Compiler options of the step:
:mod:`mann_jax.backend`; resume checks: :mod:`mann_jax.resume`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from mann_jax import config_errors, multihost, optim, pruning
from mann_jax.backend import jit_train_step
from mann_jax.checkpoint import Checkpoints
from mann_jax.data import layout
from mann_jax.data.dataset import Dataset, build_dataset, cache_key, cached_dataset
from mann_jax.errors import TrainingError
from mann_jax.loop import Periodic, closing_outputs, run_loop, steps_one_after_another
from mann_jax.metric_writer import MetricWriter, flatten_config, json_safe
from mann_jax.model import MANN, apply, check_params
from mann_jax.resume import check_checkpoint_setup, check_resume_step, prepare_workdir, rows_digest

Params = dict[str, Any]

#: Training rows a run that ran no step (resumed when finished) evaluates, for want of a training loss.
TRAIN_EVAL_ROWS = 8192
#: Rows the gating statistics are measured on.
GATING_ROWS = 2048


class TrainState(flax.struct.PyTreeNode):  # a frozen flax.struct.dataclass that declares .replace
    """Everything a step changes, as one pytree (checkpointed whole)."""

    step: jax.Array
    params: Params
    opt_state: Any
    key: jax.Array


def gating_indices(model_config: ml_collections.ConfigDict) -> tuple[int, ...]:
    """The input columns of the gating network: the config's, or the original 19."""
    return tuple(model_config.gating_indices) if model_config.gating_indices else layout.GATING_INDICES


def build_model(model_config: ml_collections.ConfigDict, *, seed: int) -> MANN:
    """A MANN from the ``model`` config section (weights drawn from ``seed``, as the original's 23456)."""
    gating = gating_indices(model_config)
    return MANN(
        input_size=layout.INPUT_DIM,
        output_size=layout.OUTPUT_DIM,
        hidden_sizes=tuple(model_config.hidden_sizes),
        n_experts=int(model_config.n_experts),
        gating_indices=gating,
        gating_hidden=int(model_config.gating_hidden),
        keep_prob=float(model_config.keep_prob),
        formulation=model_config.formulation,
        matmul_precision=model_config.get("matmul_precision", "highest"),  # configs from before it existed
        rngs=nnx.Rngs(seed),
    )


@dataclasses.dataclass(frozen=True)
class ModelFunctions:
    """A model split into its static parts and initial parameters (a plain nested dict)."""

    train_graph: Any
    eval_graph: Any
    rest: Any
    params: Params

    @classmethod
    def of(cls, model: MANN) -> ModelFunctions:
        model.train()
        # Ignored for mypy: nnx.split's stub types a two-filter split as (graphdef, state, *states), not 3 items.
        train_graph, params, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]
        model.eval()
        eval_graph = nnx.split(model, nnx.Param, ...)[0]
        model.train()
        return cls(train_graph=train_graph, eval_graph=eval_graph, rest=rest, params=nnx.to_pure_dict(params))

    def predict(self, params: Params, x: jax.Array, *, key: jax.Array | None = None, **kwargs: Any) -> Any:
        """Forward pass: training mode (dropout) when ``key`` is given, evaluation mode otherwise."""
        graph = self.eval_graph if key is None else self.train_graph
        return apply(graph, (nnx.State(params), self.rest), x, key, **kwargs)


def initial_model(config: ml_collections.ConfigDict, *, seed: int) -> ModelFunctions:
    """The model of ``config.model`` with its initial parameters.

    They are drawn from ``seed``, or, with ``config.train.init_from`` (an AI4Animation weights
    folder such as the authors' trained dog), read from that folder: fine-tuning, or pruning while
    fine-tuning. The folder's network must have the config's sizes.

    Raises:
      ConfigError: the folder's network does not have the sizes of ``config.model``.
      WeightsFormatError: a file of the folder is missing or malformed.
    """
    fns = ModelFunctions.of(build_model(config.model, seed=seed))
    folder = config.train.get("init_from", "")
    if not folder:
        return fns
    from mann_jax.export.ai4animation import model_from_ai4animation

    model, _ = model_from_ai4animation(folder, gating_indices=gating_indices(config.model))
    pretrained = ModelFunctions.of(model).params
    try:
        check_params(pretrained, fns.params)
    except ValueError as e:
        raise config_errors.ConfigError(f"train.init_from {folder}: {e}") from None
    return dataclasses.replace(fns, params=jax.tree.map(jnp.asarray, pretrained))


def adamwr_settings(train_config: ml_collections.ConfigDict, *, n_batches: int) -> dict[str, Any]:
    """The AdamWR settings of the ``train`` config section (the optimizer's and the logged schedule's)."""
    return dict(learning_rate=float(train_config.learning_rate), weight_decay=float(train_config.weight_decay),
                n_batches=n_batches, te=int(train_config.te), tmult=int(train_config.tmult),
                decay_mode=train_config.decay_mode)


def make_optimizer(train_config: ml_collections.ConfigDict, *, n_batches: int) -> optax.GradientTransformation:
    """AdamWR from the ``train`` config section."""
    return optim.adamwr(**adamwr_settings(train_config, n_batches=n_batches))


def make_pruning_schedule(pruning_config: ml_collections.ConfigDict, *, total_steps: int) -> pruning.Schedule:
    """The sparsity schedule of the ``pruning`` config section over ``total_steps``."""
    return pruning.schedule_from_config(pruning_config, total_steps=total_steps)


def make_training_optimizer(
    config: ml_collections.ConfigDict, *, n_batches: int, total_steps: int, force_pruning: bool = False,
    axis_name: str | None = None, mask_updates: bool = True,
) -> optax.GradientTransformation:
    """AdamWR, wrapped with magnitude pruning when ``config.pruning.target_sparsity > 0``.

    ``force_pruning`` wraps even at target 0 (a sweep runs every level, 0 % included, through one
    compiled step; each level's target is then set in its state with
    :func:`mann_jax.pruning.with_target_sparsity`). ``axis_name`` is the vmap axis of such a sweep.
    ``mask_updates=False``: the same optimizer (same state) without the mask update, for the steps
    :func:`mask_update_steps` rejects (see :func:`mann_jax.loop.run_loop`).
    """
    tx = make_optimizer(config.train, n_batches=n_batches)
    pc = config.pruning
    if float(pc.target_sparsity) <= 0.0 and not force_pruning:
        return tx
    prunable = None
    if pc.granularity != "neuron":
        prunable = pruning.EXPERTS_AND_GATING if pc.include_gating else pruning.EXPERTS
    return pruning.prune(
        tx,
        target_sparsity=float(pc.target_sparsity),
        schedule=make_pruning_schedule(pc, total_steps=total_steps),
        scope=pc.scope,
        criterion=pc.criterion,
        granularity=pc.granularity,
        n_m=tuple(pc.n_m),
        prunable=prunable,
        update_every=int(pc.update_every),
        seed=int(config.train.seed),
        axis_name=axis_name,
        mask_updates=mask_updates,
    )


def mask_update_steps(config: ml_collections.ConfigDict, *, total_steps: int) -> Callable[[int], bool]:
    """Host-side ``step -> whether the pruning masks are due for an update`` for the pruning of ``config``."""
    schedule = make_pruning_schedule(config.pruning, total_steps=total_steps)
    every = int(config.pruning.update_every)
    return lambda step: schedule.mask_update_due(step, every)


def init_state(fns: ModelFunctions, tx: optax.GradientTransformation, *, seed: int) -> TrainState:
    return TrainState(
        step=jnp.zeros([], jnp.int32),
        params=fns.params,
        opt_state=tx.init(fns.params),
        key=jax.random.key_data(jax.random.key(seed)),
    )


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error on normalised outputs (the original loss)."""
    return jnp.mean(jnp.square(pred - target))


def make_train_step(
    fns: ModelFunctions, tx: optax.GradientTransformation
) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """The pure single-model train step (see the module docstring)."""

    def train_step(state: TrainState, x_all: jax.Array, y_all: jax.Array,
                   rows: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        x, y = x_all[rows], y_all[rows]
        dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)

        def loss_fn(params: Params) -> jax.Array:
            return mse(fns.predict(params, x, key=dropout_key), y)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, {"loss": loss}

    return train_step


def batch_order(num_rows: int, batch_size: int, *, epoch: int, seed: int, shuffle: str) -> np.ndarray:
    """``(n_batches, batch_size)`` row indices of one epoch; the remainder is dropped (as the original).

    ``shuffle="once"``: one permutation drawn before epoch 0 and reused every epoch (the original);
    ``"per_epoch"``: a new permutation each epoch; ``"none"``: file order.
    """
    n_batches = num_rows // batch_size
    if shuffle == "once":
        order = np.random.default_rng(seed).permutation(num_rows)
    elif shuffle == "per_epoch":
        order = np.random.default_rng([seed, epoch]).permutation(num_rows)
    elif shuffle == "none":
        order = np.arange(num_rows)
    else:
        raise ValueError(f"train.shuffle must be 'once', 'per_epoch' or 'none', got {shuffle!r}")
    return order[: n_batches * batch_size].reshape(n_batches, batch_size).astype(np.int32)


def make_eval_loss(fns: ModelFunctions, *, chunk: int) -> Callable[[Params, np.ndarray, np.ndarray], float]:
    """Mean squared error over a whole split, in fixed-size chunks (one compilation)."""

    @jax.jit
    def chunk_sse(params: Params, x: jax.Array, y: jax.Array, weight: jax.Array) -> jax.Array:
        err = jnp.sum(jnp.square(fns.predict(params, x) - y), axis=-1)
        return jnp.sum(err * weight)

    def eval_loss(params: Params, x: np.ndarray, y: np.ndarray) -> float:
        total = 0.0
        for start in range(0, len(x), chunk):
            xc, yc = x[start:start + chunk], y[start:start + chunk]
            pad = chunk - len(xc)
            weight = np.concatenate([np.ones(len(xc), np.float32), np.zeros(pad, np.float32)])
            if pad:
                xc = np.concatenate([xc, np.zeros((pad, xc.shape[1]), xc.dtype)])
                yc = np.concatenate([yc, np.zeros((pad, yc.shape[1]), yc.dtype)])
            total += float(chunk_sse(params, xc, yc, weight))
        return total / (len(x) * y.shape[1])

    return eval_loss


def gating_summary(fns: ModelFunctions, params: Params, x: jax.Array) -> dict[str, jax.Array]:
    """Mean gating entropy (nats) and mean coefficient per expert over rows ``x`` (eval mode).

    Pure and jittable (only the gating network runs), so a sweep computes it for every model on
    the devices (:meth:`mann_jax.sweep.Runner.per_model`); :func:`gating_scalars` names the values.
    """
    model = nnx.merge(fns.eval_graph, nnx.State(params), fns.rest, copy=True)
    omega = model.gating_coefficients(jnp.asarray(x))
    entropy = -jnp.sum(omega * jnp.log(jnp.maximum(omega, 1e-12)), axis=-1)
    return {"entropy": jnp.mean(entropy), "mean_coefficient": jnp.mean(omega, axis=0)}


def gating_scalars(summary: dict[str, Any]) -> dict[str, float]:
    """TensorBoard scalars of one model's :func:`gating_summary`."""
    scalars = {"gating/entropy": float(summary["entropy"])}
    scalars.update({f"gating/mean_coefficient/expert_{k}": float(v)
                    for k, v in enumerate(np.asarray(summary["mean_coefficient"]))})
    return scalars


def sparsity_scalars(state: TrainState, schedule: pruning.Schedule) -> dict[str, float]:
    """Actual sparsity (fraction of masked weights, overall and per leaf), scheduled and final target."""
    ps = pruning.find_pruning_state(state.opt_state)
    report = pruning.sparsity_report(ps.masks)
    scalars = {f"sparsity/{k}": v for k, v in report.items()}
    scalars["sparsity/target"] = float(ps.target_sparsity)
    # The masks of update c apply from that update on: after `step` updates the schedule of step - 1 is in force.
    scalars["sparsity/scheduled"] = float(schedule(max(int(state.step) - 1, 0))) * float(ps.target_sparsity)
    return scalars


def weight_histograms(params: Params) -> dict[str, np.ndarray]:
    """One histogram per parameter array, named by its path (``weights/layer0/alpha``)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"weights/" + "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v) for path, v in flat}


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The splits of a dataset as arrays, and the batching of a run over them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    batch_size: int
    n_batches: int
    total_steps: int
    data_key: str  # the dataset's cache key (inputs, settings, row code)
    data_digest: str  # the rows themselves (resume.rows_digest): what a resumed run must match

    def gating_rows(self) -> np.ndarray:
        """About :data:`GATING_ROWS` rows spread over the validation split (the first training rows without one)."""
        if not len(self.x_val):
            return self.x_train[:GATING_ROWS]
        return self.x_val[:: max(1, len(self.x_val) // GATING_ROWS)]

    def mean_predictor_loss(self) -> float:
        """The validation loss of always predicting the (normalised) mean, zero; NaN without validation rows."""
        return float(np.mean(np.square(self.y_val))) if len(self.y_val) else float("nan")


def training_data(config: ml_collections.ConfigDict, dataset: Dataset | None = None, *,
                  progress: bool = True) -> TrainingData:
    """Builds (or takes) the dataset of ``config.data`` and works out batches per epoch and total steps.

    ``data_digest`` (:func:`~mann_jax.resume.rows_digest` of the split arrays) is what a resumed run
    must match. ``data_key``, also recorded, is the dataset's own
    :attr:`~mann_jax.data.dataset.Dataset.cache_key`, computed once by
    :func:`~mann_jax.data.dataset.build_dataset` (the input files are hashed once per run), or
    ``cache_key(config.data)`` for a dataset that carries none (built without the cache). Same
    value either way for a dataset built from ``config.data``.

    Raises:
        ConfigError: a ``train`` or ``pruning`` value out of range (checked before the data is built).
        TrainingError: fewer training rows than one batch.
    """
    config_errors.check_train(config)
    if dataset is None:
        dataset = build_dataset(config.data, progress=progress)
    x_train, y_train = dataset.arrays("train")
    x_val, y_val = dataset.arrays("val")
    batch_size = int(config.train.batch_size)
    n_batches = len(x_train) // batch_size
    if n_batches == 0:
        raise TrainingError(f"{len(x_train)} training rows are fewer than one batch of {batch_size}")
    return TrainingData(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, batch_size=batch_size,
                        n_batches=n_batches, total_steps=int(config.train.epochs) * n_batches,
                        data_key=dataset.cache_key if dataset.cache_key is not None else cache_key(config.data),
                        data_digest=rows_digest(x_train, y_train, x_val, y_val))


def _cached_rows_digest(config: ml_collections.ConfigDict, key: str) -> str | None:
    """The rows digest of the dataset cached under ``key``, split and normalised as ``config`` says."""
    dataset = cached_dataset(config.data, key)
    return None if dataset is None else training_data(config, dataset, progress=False).data_digest


@dataclasses.dataclass(frozen=True)
class Run:
    """A started or resumed run (:func:`start_run`): what :func:`train` and the sweep share around the loop."""

    config: ml_collections.ConfigDict
    workdir: Path
    data: TrainingData
    config_dict: dict[str, Any]
    checkpoints: Checkpoints
    state: Any  # the initial state, or the checkpoint's
    start_step: int
    saved_meta: dict[str, Any]  # the latest checkpoint's meta ({} for a new run)
    schedule: pruning.Schedule
    eval_loss: Callable[[Params, np.ndarray, np.ndarray], float]

    def meta_at(self, step: int) -> dict[str, Any]:
        """The checkpoint meta of ``step``: its place in the data, and the setup a resume is checked against."""
        n = self.data.n_batches
        return {"epoch": step // n, "batch_in_epoch": step % n, "n_batches": n, "config": self.config_dict,
                "data_key": self.data.data_key, "data_digest": self.data.data_digest}

    def batch_order(self, epoch: int, *, seed: int) -> np.ndarray:
        """:func:`batch_order` of the training rows in ``epoch``."""
        return batch_order(len(self.data.x_train), self.data.batch_size, epoch=epoch, seed=seed,
                           shuffle=self.config.train.shuffle)

    def train_scalars(self, step: int, loss: Any, rate: float) -> dict[str, Any]:
        """A log line's training loss, its samples per second, and the learning rate and weight decay of ``step``."""
        hp = optim.hyperparams_at(step, **adamwr_settings(self.config.train, n_batches=self.data.n_batches))
        return {"train/loss": loss, "train/learning_rate": hp["learning_rate"],
                "train/weight_decay": hp["weight_decay"], "train/samples_per_second": rate}

    def progress_bar(self, desc: str, *, enabled: bool) -> Any:
        return tqdm(total=self.data.total_steps, initial=self.start_step, desc=desc, unit="step",
                    disable=not enabled, dynamic_ncols=True, mininterval=1.0)

    def loop(self, state: Any, steps: Callable[..., tuple[Any, Any]], **kwargs: Any) -> tuple[Any, np.ndarray | None]:
        """:func:`mann_jax.loop.run_loop` from this run's step to its last, at its cadences (``kwargs``: the rest)."""
        return run_loop(state, steps, start_step=self.start_step, total_steps=self.data.total_steps,
                        n_batches=self.data.n_batches, log_every=int(self.config.train.log_every_steps),
                        checkpoints=self.checkpoints, **kwargs)


def start_run(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, data: TrainingData, fns: ModelFunctions,
    state: Any, *,
    allowed: frozenset[str] | set[str] = frozenset(), step_of: Callable[[Any], int] = lambda s: int(s.step),
) -> Run:
    """Opens ``workdir`` for a run of ``config`` that starts from ``state``, or resumes from its checkpoints.

    Creates ``workdir``; with several processes, checks they all run the same setup; restores the
    latest checkpoint after checking that it was made with this config (changes in ``allowed`` aside)
    and data; refuses a run already past this config's last step (``step_of(state)``: where it is);
    only then writes ``config.json`` (process 0).

    Raises:
        TrainingError: ``workdir`` cannot be used, or the run there is past the last step.
        CheckpointError: the checkpoints there are of another setup, or unreadable.
    """
    workdir = Path(workdir)
    prepare_workdir(workdir)
    config_dict = config.to_dict()
    # Several processes: the same config (the data cache may sit elsewhere on each host), data and workdir.
    multihost.check_same_run({"config": {**config_dict, "data": {**config_dict["data"], "cache_dir": None}},
                              "data_digest": data.data_digest}, workdir)
    tc = config.train
    checkpoints = Checkpoints(workdir / "checkpoints", save_every=int(tc.checkpoint_every_steps),
                              keep=int(tc.keep_checkpoints))
    saved_meta: dict[str, Any] = {}
    if checkpoints.latest_step() is not None:
        saved_meta = check_checkpoint_setup(checkpoints, config_dict, data.data_key, workdir, allowed,
                                            data_digest=data.data_digest,
                                            digest_of_key=lambda key: _cached_rows_digest(config, key))
        state, _ = checkpoints.restore(state)
    start_step = step_of(state)
    check_resume_step(start_step, data.total_steps, data.n_batches, workdir)
    if jax.process_index() == 0:
        (workdir / "config.json").write_text(json.dumps(config_dict, indent=2, default=str))
    return Run(config=config, workdir=workdir, data=data, config_dict=config_dict, checkpoints=checkpoints,
               state=state, start_step=start_step, saved_meta=saved_meta,
               schedule=make_pruning_schedule(config.pruning, total_steps=data.total_steps),
               eval_loss=make_eval_loss(fns, chunk=int(tc.eval_batch_size)))


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished run reports.

    ``train_loss`` is the last logging window's loss (dropout on); NaN when no step ran (a resumed,
    finished run), which then reports ``train_eval_loss`` instead: the eval-mode loss (dropout off)
    of the first :data:`TRAIN_EVAL_ROWS` training rows.
    """

    state: TrainState
    fns: ModelFunctions
    train_loss: float
    val_loss: float
    val_mean_predictor_loss: float
    steps: int
    seconds: float
    samples_per_second: float
    train_eval_loss: float = float("nan")


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *, dataset: Dataset | None = None,
          progress: bool = True) -> TrainResult:
    """Train (or resume training) the model of ``config`` in ``workdir``.

    ``workdir`` receives ``checkpoints/`` (Orbax), ``tensorboard/`` (events), ``config.json`` and
    ``summary.json``. If it already holds checkpoints of the same setup, training resumes from the
    latest one.
    """
    tc = config.train
    data = training_data(config, dataset, progress=progress)
    if not len(data.x_val):
        logging.getLogger(__name__).warning(
            "the validation split is empty (too few clips for data.val_fraction): no validation loss")
    fns = initial_model(config, seed=int(tc.seed))
    tx = make_training_optimizer(config, n_batches=data.n_batches, total_steps=data.total_steps)
    run = start_run(config, workdir, data, fns, init_state(fns, tx, seed=int(tc.seed)))
    pruned = float(config.pruning.target_sparsity) > 0
    writer = MetricWriter(run.workdir / "tensorboard")
    on_log, on_epoch_end, last_val_loss = _train_log(run, fns, writer, pruned=pruned)
    bar = run.progress_bar("train", enabled=progress)
    run_start = time.perf_counter()
    with closing_outputs(bar, [writer]):
        state, window_loss = run.loop(
            run.state, steps_one_after_another(_single_model_step(config, fns, tx, data, pruned=pruned)),
            samples_per_step=data.batch_size, rows_for_epoch=lambda epoch: jnp.asarray(
                run.batch_order(epoch, seed=int(tc.seed))),
            meta_at=run.meta_at, on_log=on_log, on_epoch_end=on_epoch_end, bar=bar,
            update_masks_at=mask_update_steps(config, total_steps=data.total_steps) if pruned else None)
    train_loss = float(window_loss) if window_loss is not None else float("nan")
    return _finish_train(run, state, fns, writer, train_loss=train_loss, val_loss=last_val_loss(),
                         run_start=run_start, pruned=pruned)


def _single_model_step(config: ml_collections.ConfigDict, fns: ModelFunctions, tx: optax.GradientTransformation,
                       data: TrainingData, *, pruned: bool) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """``step(state, rows, update_masks)`` on the training split, jitted; pruned, the steps without a mask
    update run a step compiled without it (the loop says which)."""
    step_fn = jit_train_step(make_train_step(fns, tx))
    apply_fn = jit_train_step(make_train_step(fns, make_training_optimizer(
        config, n_batches=data.n_batches, total_steps=data.total_steps, mask_updates=False))) if pruned else step_fn
    x_dev, y_dev = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    def step(st: TrainState, rows: jax.Array, update_masks: bool = True) -> tuple[TrainState, dict[str, jax.Array]]:
        return (step_fn if update_masks else apply_fn)(st, x_dev, y_dev, rows)

    return step


def _train_log(run: Run, fns: ModelFunctions, writer: MetricWriter, *, pruned: bool) -> tuple[
        Callable[..., dict[str, str]], Callable[[int, int, TrainState], None], Callable[[], float]]:
    """``on_log`` and ``on_epoch_end`` of :func:`train`, and a function giving the last validation loss (NaN: none)."""
    data = run.data
    gating_rows = data.gating_rows()
    gating_summary_jit = jax.jit(lambda p, x: gating_summary(fns, p, x))
    histograms_due = Periodic.every_epochs(int(run.config.train.histograms_every_epochs), n_batches=data.n_batches,
                                           last_step=data.total_steps)
    last = {"val_loss": float("nan")}

    def on_log(done: int, step: int, window_loss: np.ndarray, rate: float, st: TrainState) -> dict[str, str]:
        train_loss = float(window_loss)
        scalars = run.train_scalars(step, train_loss, rate)
        if pruned:
            scalars.update(sparsity_scalars(st, run.schedule))
        writer.write_scalars(done, scalars)
        return {"loss": f"{train_loss:.4f}", "samples_s": f"{rate:.0f}"}

    def on_epoch_end(done: int, epoch: int, st: TrainState) -> None:
        if len(data.x_val):
            last["val_loss"] = run.eval_loss(st.params, data.x_val, data.y_val)
            writer.write_scalars(done, {"val/loss": last["val_loss"]})
        writer.write_scalars(done, gating_scalars(gating_summary_jit(st.params, gating_rows)))
        if histograms_due(done):
            writer.write_histograms(done, weight_histograms(st.params))

    return on_log, on_epoch_end, lambda: last["val_loss"]


def _finish_train(run: Run, state: TrainState, fns: ModelFunctions, writer: MetricWriter, *, train_loss: float,
                  val_loss: float, run_start: float, pruned: bool) -> TrainResult:
    """The final losses (evaluated when the loop left none), hparams, ``summary.json`` and the result."""
    data, tc = run.data, run.config.train
    if len(data.x_val) and not math.isfinite(val_loss):
        val_loss = run.eval_loss(state.params, data.x_val, data.y_val)
    train_eval_loss = float("nan")
    if run.start_step == data.total_steps and not math.isfinite(train_loss):
        train_eval_loss = run.eval_loss(state.params, data.x_train[:TRAIN_EVAL_ROWS], data.y_train[:TRAIN_EVAL_ROWS])
    seconds = time.perf_counter() - run_start
    steps_run = data.total_steps - run.start_step
    result = TrainResult(
        state=state, fns=fns, train_loss=train_loss, val_loss=val_loss,
        val_mean_predictor_loss=data.mean_predictor_loss(), steps=data.total_steps, seconds=seconds,
        samples_per_second=steps_run * data.batch_size / seconds if steps_run else float("nan"),
        train_eval_loss=train_eval_loss)
    writer.write_hparams(flatten_config(run.config_dict), {"final/train_loss": train_loss, "final/val_loss": val_loss})
    writer.close()
    run.checkpoints.close()
    summary: dict[str, Any] = {
        "steps": data.total_steps, "epochs": int(tc.epochs), "train_loss": train_loss, "val_loss": val_loss,
        "val_mean_predictor_loss": result.val_mean_predictor_loss, "seconds": round(seconds, 2),
        "samples_per_second": result.samples_per_second}
    if math.isfinite(train_eval_loss):
        summary["train_eval_loss"] = train_eval_loss
    if pruned:
        summary["sparsity"] = pruning.sparsity_report(pruning.find_pruning_state(state.opt_state).masks)
        summary["params_sparsity"] = pruning.sparsity_report(state.params)
    (run.workdir / "summary.json").write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False))
    return result
