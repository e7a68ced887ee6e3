"""Training a MANN: one pure, jitted train step for ONE model, and the loop around it.

The step (:func:`make_train_step`) is a pure function ``(state, x_all, y_all, batch_rows) ->
(state, metrics)`` over a :class:`TrainState` pytree (parameters as a plain nested dict, optimizer
state, step, RNG key). It closes over nothing that changes, so the sparsity sweep maps exactly this
function over a leading "level" axis (``jax.vmap`` with ``in_axes=(0, None, None, None)``) instead
of keeping a second implementation.

Data order is a function of the step alone: epoch ``e = step // n_batches`` uses the permutation of
:func:`batch_order` (shuffled once before epoch 0 and reused, as the original, or reshuffled per
epoch), and dropout draws from ``fold_in(key, step)``. A run resumed from a checkpoint therefore
continues with exactly the batches and dropout masks the uninterrupted run would have used.

The loop (:func:`train`) adds Orbax checkpoints (resume from ``workdir``), TensorBoard events
(losses, learning rate and weight decay, gating entropy and mean coefficients, weight histograms,
hparams), a progress bar with loss and samples/s, and a final summary line. Its step/epoch/log/
checkpoint skeleton is :func:`run_loop`, which :mod:`mann_jax.sweep` drives with a step over many
models (a loss per model), so the two share one loop as they share one step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
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

from mann_jax import config_errors, optim, pruning
from mann_jax.checkpoint import CheckpointError, Checkpoints
from mann_jax.data import layout
from mann_jax.data.dataset import Dataset, build_dataset, cache_key
from mann_jax.errors import UserError
from mann_jax.metric_writer import MetricWriter, flatten_config
from mann_jax.model import MANN, apply, check_params
from mann_jax.multihost import to_host

Params = dict[str, Any]


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (diverged, no data); earlier checkpoints are left untouched."""


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


def make_optimizer(train_config: ml_collections.ConfigDict, *, n_batches: int) -> optax.GradientTransformation:
    """AdamWR from the ``train`` config section."""
    return optim.adamwr(
        learning_rate=float(train_config.learning_rate),
        weight_decay=float(train_config.weight_decay),
        n_batches=n_batches,
        te=int(train_config.te),
        tmult=int(train_config.tmult),
        decay_mode=train_config.decay_mode,
    )


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
    :func:`mask_update_steps` rejects (see :func:`run_loop`).
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


#: XLA options a train step is compiled with, per platform. On CPU, XLA's default copy insertion
#: copies every donated parameter that the step reads and also updates in place: one copy of each
#: expert weight tensor per step (3 x 8 MB for the 8 x 512 model; on the 2-core CPU the median step
#: was 0.6-1.9 ms slower with them, of 13-16 ms, in three interleaved runs; and 22 MB more memory).
#: Its region analysis sees that the reads come before the update and drops them
#: (tests/test_train.py checks the compiled step for such copies).
TRAIN_STEP_COMPILER_OPTIONS: dict[str, dict[str, Any]] = {
    "cpu": {"xla_cpu_copy_insertion_use_region_analysis": True},
}


#: XLA:CPU options no per-program ``compiler_options`` can carry: backend extra options, which XLA
#: reads from ``XLA_FLAGS`` once, when JAX starts its backend (:func:`configure_cpu_backend` adds
#: them; every command of the project calls it first). ``xla_cpu_use_multi_output_fusion`` lets one
#: loop write several arrays, so Adam's first and second moment come out of one pass over gradient and
#: moments instead of one pass each (the 8 x 512 step on the 2-core CPU, three alternated processes of
#: 100 steps: median 10.37 / 9.57 / 10.63 ms without, 9.14 / 9.23 / 9.54 ms with; parameters after 20
#: steps equal bit for bit). Options named ``xla_...`` are not handed on to LLVM: GPU backends ignore them.
#: Caveat: XLA:CPU leaves this fusion off by default, and in jaxlib 0.10.2 it aborts the process (a
#: CHECK failure in ``symbolic_map.cc``: "Number of dimensions of this map must match number of
#: results of other map") compiling some programs, e.g. four scatter-adds of the quarters of one
#: vector, ``sum(jnp.zeros(4, jnp.int32).at[c].add(1) for c in jnp.split(keys, 4))``. Every program
#: of the project compiles with it (the test suite runs with it on: ``tests/conftest.py``); for code
#: of your own that hits it, set :data:`OPT_OUT_ENV` to ``off``.
CPU_BACKEND_EXTRA_OPTIONS: tuple[str, ...] = ("xla_cpu_use_multi_output_fusion",)
#: Environment variable that, set to ``off``, keeps :func:`configure_cpu_backend` from adding anything.
OPT_OUT_ENV = "MANN_JAX_CPU_BACKEND_OPTIONS"


def jax_backend_started() -> bool:
    """Whether JAX has started a backend (so it has read ``XLA_FLAGS`` and its CPU device count)."""
    from jax._src import xla_bridge  # no public query for "backend started"

    return xla_bridge.backends_are_initialized()


def cpu_backend_opted_out() -> bool:
    """Whether :data:`OPT_OUT_ENV` is ``off`` (any case; unset means ``on``).

    Raises:
        ConfigError: it holds something other than ``on`` or ``off``.
    """
    raw = os.environ.get(OPT_OUT_ENV, "on")
    setting = raw.strip().lower()
    if setting not in ("on", "off"):
        raise config_errors.ConfigError(f"environment variable {OPT_OUT_ENV} must be 'on' or 'off', got {raw!r}")
    return setting == "off"


def configure_cpu_backend() -> bool:
    """Adds :data:`CPU_BACKEND_EXTRA_OPTIONS` to ``XLA_FLAGS``; call before JAX starts a backend.

    Returns whether it did. It does not when :data:`OPT_OUT_ENV` is ``off``, when ``XLA_FLAGS``
    already sets ``--xla_backend_extra_options`` (the user's choice stands: a second occurrence would
    replace it), nor when a JAX backend already runs (it read ``XLA_FLAGS`` when it started; warns).

    Raises:
        ConfigError: :data:`OPT_OUT_ENV` holds something other than ``on`` or ``off``.
    """
    xla_flags = os.environ.get("XLA_FLAGS", "")
    if cpu_backend_opted_out() or "xla_backend_extra_options" in xla_flags:
        return False
    if jax_backend_started():
        warnings.warn("JAX already runs, so its CPU compiler keeps the options it started with "
                      f"(call configure_cpu_backend before any JAX computation to add {CPU_BACKEND_EXTRA_OPTIONS})",
                      stacklevel=2)
        return False
    os.environ["XLA_FLAGS"] = f"{xla_flags} --xla_backend_extra_options={','.join(CPU_BACKEND_EXTRA_OPTIONS)}".strip()
    return True


def jit_train_step(step: Callable[..., Any], *, platform: str | None = None) -> Callable[..., Any]:
    """``jax.jit`` of a train step (state donated) with the compiler options of ``platform``.

    ``platform`` (``"cpu"``, ``"gpu"``, ...) is where the step runs; JAX's default backend when None.
    """
    options = TRAIN_STEP_COMPILER_OPTIONS.get(platform or jax.default_backend(), {})
    return jax.jit(step, donate_argnums=0, compiler_options=options)


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
    data_key: str


def training_data(config: ml_collections.ConfigDict, dataset: Dataset | None = None, *,
                  progress: bool = True) -> TrainingData:
    """Builds (or takes) the dataset of ``config.data`` and works out batches per epoch and total steps.

    ``data_key`` (the checkpoint's record of the data) is the dataset's own
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
                        data_key=dataset.cache_key if dataset.cache_key is not None else cache_key(config.data))


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


def check_checkpoint_setup(checkpoints: Checkpoints, config_dict: dict[str, Any], data_key: str, workdir: Path,
                           allowed: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The latest checkpoint's meta, after checking it was made with this config and data.

    Raises:
        CheckpointError: a different config (outside ``allowed`` changes) or different data.
    """
    meta = checkpoints.read_meta()
    check_resumable(meta["config"], config_dict, workdir, allowed)
    if meta.get("data_key") != data_key:
        raise CheckpointError(f"{workdir}: the run there was trained on different data (cache key "
                              f"{meta.get('data_key')} != {data_key}); use a new --workdir")
    return meta


def steps_one_after_another(step: Callable[..., tuple[Any, dict[str, jax.Array]]]) -> Callable[..., tuple[Any, Any]]:
    """The multi-step function :func:`run_loop` calls, from a one-step ``step(state, rows, update_masks=...)``.

    ``steps(state, rows_seq, update_masks_seq)`` runs the steps in order and returns the new state
    and the sum of their losses (on device).
    """

    def steps(state: Any, rows_seq: Sequence[Any], update_masks: Sequence[bool]) -> tuple[Any, Any]:
        total: Any = 0.0
        for rows, update in zip(rows_seq, update_masks, strict=True):
            state, metrics = step(state, rows, update_masks=update)
            total = total + metrics["loss"]
        return state, total

    return steps


def run_loop(
    state: Any,
    steps: Callable[[Any, Sequence[Any], Sequence[bool]], tuple[Any, Any]],
    *,
    start_step: int,
    total_steps: int,
    n_batches: int,
    log_every: int,
    samples_per_step: int,
    rows_for_epoch: Callable[[int], Any],
    checkpoints: Checkpoints,
    meta_at: Callable[[int], dict[str, Any]],
    on_log: Callable[[int, int, np.ndarray, float, Any], dict[str, str]],
    on_epoch_end: Callable[[int, int, Any], None],
    bar: Any,
    checkpoint_state: Callable[[Any], Any] = lambda s: s,
    stop_after: int | None = None,
    model_names: Sequence[str] | None = None,
    update_masks_at: Callable[[int], bool] | None = None,
) -> tuple[Any, np.ndarray | None]:
    """The training loop shared by :func:`train` (one model) and :mod:`mann_jax.sweep` (many).

    Runs steps ``start_step .. total_steps - 1``; ``rows_for_epoch(e)[b]`` are the rows of batch
    ``b`` of epoch ``e`` (fetched once per epoch). The steps between two points where the loop has
    something to do (a log line, an epoch end, a checkpoint, the end) go to ONE call
    ``steps(state, rows_seq, update_masks_seq)`` (:func:`steps_one_after_another` makes one from a
    single-step function), which returns the new state and the sum of the steps' losses (a scalar,
    or one value per model of a sweep): a sweep can then run those steps model by model, each
    model's state staying in cache (:meth:`mann_jax.sweep.LoopRunner.steps`). Losses are
    accumulated on device and read back only every ``log_every`` steps and at the end of each
    epoch, where ``on_log(done, step, mean_loss, samples_per_second, state)`` writes them and returns
    the progress-bar postfix. A non-finite loss raises :class:`TrainingError` (naming the models,
    with ``model_names``). After each epoch ``on_epoch_end(done, epoch, state)`` runs; checkpoints
    are saved on the ``checkpoints`` schedule and after the last step (``checkpoint_state(state)``
    is what gets saved).

    Args:
        stop_after: Stop (after saving a checkpoint) once this many steps ran in this call, e.g. to
            fit a time slot; the run then resumes from ``workdir``.
        update_masks_at: For pruned training (:func:`mask_update_steps`): which steps are due for a
            mask update (``update_masks_seq``; all True without it), so that ``steps`` can run a
            step compiled without the update on all others (cheaper on CPU, see "Cost" in
            :mod:`mann_jax.pruning.masks`).

    Returns:
        The final state and the mean loss of the last logging window (None when no step ran).
    """

    def stopping_at(done: int) -> bool:
        return stop_after is not None and done - start_step >= stop_after

    def something_to_do(done: int) -> bool:
        return (done % log_every == 0 or done % n_batches == 0 or checkpoints.should_save(done)
                or done == total_steps or stopping_at(done))

    order: Any = None  # rows_for_epoch(order_epoch), read on the first pass
    order_epoch = -1
    window_loss: Any = 0.0
    window_steps, window_start = 0, time.perf_counter()
    last_loss: np.ndarray | None = None
    first = start_step
    while first < total_steps:
        epoch, b = divmod(first, n_batches)
        if epoch != order_epoch:
            order = rows_for_epoch(epoch)
            order_epoch = epoch
        step_index = first  # the last step of this call (an epoch end is always a stop, so one epoch)
        while not something_to_do(step_index + 1):
            step_index += 1
        chunk = range(first, step_index + 1)
        state, loss_sum = steps(state, [order[i - epoch * n_batches] for i in chunk],
                                [update_masks_at(i) if update_masks_at else True for i in chunk])
        window_loss = window_loss + loss_sum
        window_steps += len(chunk)
        done = first = step_index + 1
        bar.update(len(chunk))
        end_of_epoch = done % n_batches == 0
        stopping = stopping_at(done)
        if done % log_every == 0 or end_of_epoch or done == total_steps or stopping:
            # A sweep over several processes holds the losses sharded: every process reads them together.
            mean = np.asarray(to_host(window_loss), np.float64) / window_steps
            if not np.all(np.isfinite(mean)):
                bad = "" if mean.ndim == 0 else " of " + ", ".join(
                    (model_names[int(i)] if model_names else str(i)) for i in np.flatnonzero(~np.isfinite(mean)))
                raise TrainingError(f"training diverged at step {done}: loss {mean.tolist()}{bad}; "
                                    f"{_kept_checkpoints(checkpoints)}")
            elapsed = time.perf_counter() - window_start
            rate = window_steps * samples_per_step / max(elapsed, 1e-9)
            bar.set_postfix(on_log(done, step_index, mean, rate, state))
            last_loss = mean
            window_loss, window_steps, window_start = 0.0, 0, time.perf_counter()
        if end_of_epoch:
            on_epoch_end(done, epoch, state)
        if checkpoints.should_save(done) or done == total_steps or stopping:
            to_save = checkpoint_state(state)
            # A step can turn the weights non-finite while its own loss (computed before the update)
            # is still finite: never write such a state over the good ones.
            if not all_finite(to_save):
                raise TrainingError(f"training diverged by step {done}: non-finite weights or optimizer state; "
                                    f"{_kept_checkpoints(checkpoints)}")
            checkpoints.save(done, to_save, meta_at(done))
        if stopping:
            break
    return state, last_loss


def all_finite(tree: Any) -> bool:
    """Whether every floating-point entry of ``tree`` is finite (one device reduction per leaf)."""
    finite = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)]
    return bool(jnp.all(jnp.stack(finite))) if finite else True


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN: a loss with nothing to
    measure it on, a rate with no step run, is written as null)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        return None
    return value


def _kept_checkpoints(checkpoints: Checkpoints) -> str:
    latest = checkpoints.latest_step()
    if latest is None:
        return "no checkpoint was written"
    return f"the checkpoints up to step {latest} in {checkpoints.directory} are intact (resume from them)"


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished run reports.

    ``train_loss`` is the last logging window's loss (dropout on); NaN when no step ran (a resumed,
    finished run), which then reports ``train_eval_loss`` instead: the eval-mode loss (dropout off)
    of the first 8192 training rows.
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
    workdir = Path(workdir)
    tc = config.train
    data = training_data(config, dataset, progress=progress)
    prepare_workdir(workdir)
    x_train, y_train, x_val, y_val = data.x_train, data.y_train, data.x_val, data.y_val
    batch_size, n_batches, total_steps = data.batch_size, data.n_batches, data.total_steps
    if not len(x_val):
        logging.getLogger(__name__).warning(
            "the validation split is empty (too few clips for data.val_fraction): no validation loss")

    fns = initial_model(config, seed=int(tc.seed))
    tx = make_training_optimizer(config, n_batches=n_batches, total_steps=total_steps)
    pruned = float(config.pruning.target_sparsity) > 0
    schedule = make_pruning_schedule(config.pruning, total_steps=total_steps)
    state = init_state(fns, tx, seed=int(tc.seed))
    config_dict = config.to_dict()
    data_key = data.data_key
    checkpoints = Checkpoints(workdir / "checkpoints", save_every=int(tc.checkpoint_every_steps),
                              keep=int(tc.keep_checkpoints))
    if checkpoints.latest_step() is not None:
        check_checkpoint_setup(checkpoints, config_dict, data_key, workdir)
        state, _ = checkpoints.restore(state)
    check_resume_step(int(state.step), total_steps, n_batches, workdir)
    (workdir / "config.json").write_text(json.dumps(config_dict, indent=2, default=str))

    def meta_at(step: int) -> dict[str, Any]:
        return {"epoch": step // n_batches, "batch_in_epoch": step % n_batches, "n_batches": n_batches,
                "config": config_dict, "data_key": data_key}

    step_fn = jit_train_step(make_train_step(fns, tx))
    eval_loss = make_eval_loss(fns, chunk=int(tc.eval_batch_size))
    x_dev, y_dev = jnp.asarray(x_train), jnp.asarray(y_train)
    gating_rows = x_val[:: max(1, len(x_val) // 2048)] if len(x_val) else x_train[:2048]
    gating_summary_jit = jax.jit(lambda p, x: gating_summary(fns, p, x))
    hyper = dict(learning_rate=float(tc.learning_rate), weight_decay=float(tc.weight_decay), n_batches=n_batches,
                 te=int(tc.te), tmult=int(tc.tmult), decay_mode=tc.decay_mode)
    mean_predictor = float(np.mean(np.square(y_val))) if len(y_val) else float("nan")

    start_step = int(state.step)
    writer = MetricWriter(workdir / "tensorboard")
    run_start = time.perf_counter()
    last = {"val_loss": float("nan")}

    def on_log(done: int, step: int, window_loss: np.ndarray, rate: float, st: TrainState) -> dict[str, str]:
        train_loss = float(window_loss)
        hp = optim.hyperparams_at(step, **hyper)
        scalars = {"train/loss": train_loss, "train/learning_rate": hp["learning_rate"],
                   "train/weight_decay": hp["weight_decay"], "train/samples_per_second": rate}
        if pruned:
            scalars.update(sparsity_scalars(st, schedule))
        writer.write_scalars(done, scalars)
        return {"loss": f"{train_loss:.4f}", "samples_s": f"{rate:.0f}"}

    def on_epoch_end(done: int, epoch: int, st: TrainState) -> None:
        if len(x_val):
            last["val_loss"] = eval_loss(st.params, x_val, y_val)
            writer.write_scalars(done, {"val/loss": last["val_loss"]})
        writer.write_scalars(done, gating_scalars(gating_summary_jit(st.params, gating_rows)))
        if (epoch + 1) % int(tc.histograms_every_epochs) == 0 or done == total_steps:
            writer.write_histograms(done, weight_histograms(st.params))

    # Pruned: the steps without a mask update run a step compiled without it (run_loop picks).
    apply_fn = jit_train_step(make_train_step(fns, make_training_optimizer(
        config, n_batches=n_batches, total_steps=total_steps, mask_updates=False))) if pruned else step_fn

    def step(st: TrainState, rows: jax.Array, update_masks: bool = True) -> tuple[TrainState, dict[str, jax.Array]]:
        return (step_fn if update_masks else apply_fn)(st, x_dev, y_dev, rows)

    bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    try:
        state, window_loss = run_loop(
            state, steps_one_after_another(step), start_step=start_step, total_steps=total_steps, n_batches=n_batches,
            log_every=int(tc.log_every_steps), samples_per_step=batch_size,
            rows_for_epoch=lambda epoch: jnp.asarray(batch_order(len(x_train), batch_size, epoch=epoch,
                                                                  seed=int(tc.seed), shuffle=tc.shuffle)),
            checkpoints=checkpoints, meta_at=meta_at, on_log=on_log, on_epoch_end=on_epoch_end, bar=bar,
            update_masks_at=mask_update_steps(config, total_steps=total_steps) if pruned else None)
    except BaseException:
        writer.close()
        raise
    finally:
        bar.close()
        writer.flush()
    train_loss = float(window_loss) if window_loss is not None else float("nan")
    val_loss = last["val_loss"]
    if len(x_val) and not math.isfinite(val_loss):
        val_loss = eval_loss(state.params, x_val, y_val)
    train_eval_loss = float("nan")
    if start_step == total_steps and not math.isfinite(train_loss):
        train_eval_loss = eval_loss(state.params, x_train[:8192], y_train[:8192])
    seconds = time.perf_counter() - run_start
    steps_run = total_steps - start_step
    result = TrainResult(
        state=state, fns=fns, train_loss=train_loss, val_loss=val_loss, val_mean_predictor_loss=mean_predictor,
        steps=total_steps, seconds=seconds,
        samples_per_second=steps_run * batch_size / seconds if steps_run else float("nan"),
        train_eval_loss=train_eval_loss)
    writer.write_hparams(flatten_config(config_dict), {"final/train_loss": train_loss, "final/val_loss": val_loss})
    writer.close()
    checkpoints.close()
    summary: dict[str, Any] = {
        "steps": total_steps, "epochs": int(tc.epochs), "train_loss": train_loss, "val_loss": val_loss,
        "val_mean_predictor_loss": mean_predictor, "seconds": round(seconds, 2),
        "samples_per_second": result.samples_per_second}
    if math.isfinite(train_eval_loss):
        summary["train_eval_loss"] = train_eval_loss
    if pruned:
        summary["sparsity"] = pruning.sparsity_report(pruning.find_pruning_state(state.opt_state).masks)
        summary["params_sparsity"] = pruning.sparsity_report(state.params)
    (workdir / "summary.json").write_text(json.dumps(json_safe(summary), indent=2, allow_nan=False))
    return result
