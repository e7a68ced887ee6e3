"""Sparsity sweeps: one model per sparsity level (and seed), trained together in one process.

Design
------
* **One step, mapped.** Every model of a sweep runs the single-model step of
  :func:`mann_jax.train.make_train_step` with the SAME pruned optimizer
  (``make_training_optimizer(..., force_pruning=True)``, level 0 included, at target 0); each
  model's sparsity target lives in its optimizer state (:func:`mann_jax.pruning.with_target_sparsity`),
  so one compiled program serves every level. The models are stacked on a leading **model axis**
  (level-major: ``(level_0, seed_0), (level_0, seed_1), ..., (level_1, seed_0), ...``); several
  seeds per level are the second mapped axis, flattened into this one (both are embarrassingly
  parallel, so one flat axis shards over any number of devices). The step is compiled
  twice, with and without the pruning mask update (same optimizer state); the loop runs the
  second on every step not due for an update (cheaper on CPU: "Cost" in :mod:`mann_jax.pruning.masks`).
* **Strategies** (``sweep.strategy``), all giving the same results (tested, to float rounding):

  - ``"vmap"``: ``jax.vmap(step, axis_name="level")`` over the models of each device shard (the
    mask-update ``lax.cond`` stays a real branch through the pruning wrapper's ``axis_name``).
  - ``"map"``: ``lax.map(step)`` over the models of each shard (a loop inside one program).
  - ``"unroll"``: the step written out once per local model inside one program.
  - ``"loop"``: a Python loop dispatching the one jitted single-model step per model, each model
    living on one device (round-robin); dispatch is asynchronous, so devices run concurrently.
    One compilation per device, none per level.
  - ``"auto"``: ``"vmap"`` on GPU/TPU (and on several hosts). On CPU :data:`CPU_AUTO_STRATEGY`
    (``"loop"``), which measured fastest there; with ``sweep.calibration_steps > 0`` instead
    whichever of ``sweep.calibrate`` times fastest on copies of the initial state. The choice is
    stored in the checkpoints and reused on resume.

  The one-program strategies run under ``jax.shard_map`` over a 1-D :class:`jax.sharding.Mesh`
  of every device (``sweep.devices`` limits it), the model axis split by
  ``NamedSharding(mesh, P("models"))``; data are replicated. When the models do not divide the
  devices, the axis is padded with copies of the first models (``sweep.uneven="pad"``, their
  results dropped) or the sweep refuses (``"error"``).
* **Why "loop" on CPU.** One single-model step already keeps both cores of the 2-core CPU busy,
  and nothing of a step but the batch is shared between levels, so no layout makes K models cost
  much less than K steps there: ``vmap``, ``map`` and ``unroll`` build programs XLA:CPU runs slower
  than separate calls, and more CPU devices or separate processes gave nothing. ``"loop"`` on one
  device does the work of running the levels one after another, without K process starts, data
  loads and compilations. It runs the steps between two events of the loop (log line, epoch end,
  checkpoint) model by model (:meth:`LoopRunner.steps`), so each model's state stays in cache.
  Measurements and the alternatives tried: docs/benchmarks.md, docs/measurement_log.md.
* **Setup and loop** are :func:`mann_jax.train.start_run` and :func:`mann_jax.loop.run_loop`, as
  for one model: the sweep adds the plan, the runners, the memory check and the table.
* **Memory.** :func:`estimate_memory` counts the stacked state per device (parameters, Adam
  moments, masks), the step's working memory and the replicated data; :func:`check_memory`
  refuses with a suggestion when it does not fit the device memory (on CPU: the available RAM,
  via psutil, which the host copies share), or ``sweep.max_memory_gb`` when set.
* **Outputs** in ``workdir``: ``checkpoints/`` (Orbax: the whole stacked state of the real models,
  host-side, independent of the device layout, so a resume may use other devices or strategy),
  ``tensorboard/<model>`` (one run per model: losses, learning rate, sparsity, gating entropy;
  TensorBoard overlays them) and ``tensorboard/combined`` (final losses, sparsity, size and MFLOPs
  against the level in percent as the step axis, and the plot), ``results.csv`` / ``results.json``
  (level, seed, actual sparsity, non-zeros, Mb, MFLOPs, train/validation loss), and
  ``val_loss_vs_sparsity.png``.

Multi-host
----------
Start one process per host with the same command and call ``jax.distributed.initialize()``
before anything else touches JAX (``experiments.sweep --multihost`` does, through
:func:`mann_jax.multihost.initialize`; docs/multihost.md). ``jax.devices()`` then lists every
device of every host and the mesh spans them all; every host-side read of the sharded state
(losses, statistics, checkpoints, the table) goes through :func:`mann_jax.multihost.to_host`, a
gather every process makes at the same point; :func:`mann_jax.multihost.check_same_run` refuses
processes with different configs, data or workdirs; all processes write the checkpoints together
(Orbax) and only process 0 writes TensorBoard events, the table and the plot. Tested with two
processes on one machine, two CPU devices each (gloo): the same table as one process, and a killed
run resumed (``tests/test_multihost.py``); not yet run across real hosts or GPUs.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from mann_jax import multihost, pruning
from mann_jax.backend import jax_backend_started, jit_train_step
from mann_jax.config_errors import ConfigError
from mann_jax.data.dataset import Dataset
from mann_jax.errors import TrainingError
from mann_jax.loop import Periodic, closing_outputs, steps_one_after_another
from mann_jax.metric_writer import MetricWriter, json_safe
from mann_jax.multihost import to_host
from mann_jax.pruning import accounting
from mann_jax.train import (
    ModelFunctions,
    Run,
    TrainingData,
    TrainState,
    gating_scalars,
    gating_summary,
    init_state,
    initial_model,
    make_train_step,
    make_training_optimizer,
    mask_update_steps,
    start_run,
    training_data,
)

#: Strategies by name (``"auto"`` resolves to one of the others).
STRATEGIES: tuple[str, ...] = ("auto", "vmap", "map", "unroll", "loop")
#: What ``"auto"`` picks on CPU without calibration (measured fastest there; see the module docstring).
CPU_AUTO_STRATEGY: str = "loop"
#: The ``jax.vmap`` axis name of the ``"vmap"`` strategy (passed to the pruning wrapper).
LEVEL_AXIS: str = "level"
#: The mesh axis the model axis is sharded over.
MESH_AXIS: str = "models"
#: Settings that may change between a sweep and its resumption (besides those of :mod:`mann_jax.resume`).
RESUMABLE_SWEEP_CHANGES: frozenset[str] = frozenset({
    "sweep.strategy", "sweep.devices", "sweep.cpu_devices", "sweep.uneven", "sweep.max_memory_gb",
    "sweep.calibration_steps", "sweep.calibrate", "sweep.eval_every_epochs"})

Step = Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, dict[str, jax.Array]]]


class SweepConfigError(ConfigError):
    """The ``sweep`` settings are invalid (the message names the setting)."""


class SweepMemoryError(TrainingError):
    """The stacked state does not fit; the message gives the estimate and what to change."""


# ----------------------------------------------------------------------------------------------
# The plan: which models
# ----------------------------------------------------------------------------------------------


def level_name(level: float) -> str:
    """``"level_00"``, ``"level_90"``, ``"level_12.5"``: the level in percent."""
    pct = float(level) * 100.0
    if abs(pct - round(pct)) < 1e-6:
        return f"level_{int(round(pct)):02d}"
    return f"level_{pct:.4f}".rstrip("0")


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """The models of a sweep, in model-axis order (level-major).

    Attributes:
        levels: Target sparsity per level.
        seeds: Seeds per level (the second mapped axis).
        model_levels: Level of each model.
        model_seeds: Seed of each model (weights and dropout; the data order too when not shared).
        names: Name of each model (TensorBoard run, table row).
        shared_data_order: Every model sees the same batches (from ``train.seed``).
        data_seed: Seed of the shared data order.
    """

    levels: tuple[float, ...]
    seeds: tuple[int, ...]
    model_levels: tuple[float, ...]
    model_seeds: tuple[int, ...]
    names: tuple[str, ...]
    shared_data_order: bool
    data_seed: int

    @property
    def n_models(self) -> int:
        """Number of models (levels x seeds)."""
        return len(self.model_levels)


def _section(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    if "sweep" not in config:
        raise SweepConfigError("the config has no 'sweep' section; start from configs/sweep.py")
    return config.sweep


def make_plan(config: ml_collections.ConfigDict) -> SweepPlan:
    """Validates ``config.sweep`` and lists the models.

    Raises:
        SweepConfigError: an empty or duplicated level list, a level outside [0, 1), bad seeds, an
            unknown strategy or ``uneven`` mode, negative counts, or levels n:m pruning cannot reach.
    """
    sc = _section(config)
    try:
        levels = tuple(float(v) for v in sc.levels)
    except (TypeError, ValueError):
        raise SweepConfigError(f"sweep.levels must be a list of numbers, got {sc.levels!r}") from None
    if not levels:
        raise SweepConfigError("sweep.levels is empty: give at least one sparsity level in [0, 1)")
    for v in levels:
        if not (math.isfinite(v) and 0.0 <= v < 1.0):
            raise SweepConfigError(f"sweep.levels: every level must lie in [0, 1), got {v}")
    if len(set(levels)) != len(levels):
        raise SweepConfigError(f"sweep.levels has duplicates: {levels}")
    if config.pruning.granularity == "n:m":
        n, m = (int(v) for v in config.pruning.n_m)
        for v in levels:
            if v != 0.0 and abs(v - (1.0 - n / m)) > 1e-6:
                raise SweepConfigError(f"sweep.levels: n:m pruning fixes the sparsity at {1 - n / m:g}; got {v}")
    seeds = tuple(int(s) for s in sc.seeds) if len(sc.seeds) else (int(config.train.seed),)
    if len(set(seeds)) != len(seeds):
        raise SweepConfigError(f"sweep.seeds has duplicates: {seeds}")
    if sc.strategy not in STRATEGIES:
        raise SweepConfigError(f"sweep.strategy must be one of {STRATEGIES}, got {sc.strategy!r}")
    if sc.uneven not in ("pad", "error"):
        raise SweepConfigError(f"sweep.uneven must be 'pad' or 'error', got {sc.uneven!r}")
    for key in ("devices", "cpu_devices", "calibration_steps", "eval_every_epochs", "max_memory_gb"):
        if sc[key] < 0:
            raise SweepConfigError(f"sweep.{key} must be >= 0, got {sc[key]}")
    if int(sc.eval_every_epochs) == 0:
        raise SweepConfigError("sweep.eval_every_epochs must be >= 1")
    for s in sc.calibrate:
        if s not in STRATEGIES[1:]:
            raise SweepConfigError(f"sweep.calibrate: unknown strategy {s!r}; known: {STRATEGIES[1:]}")
    model_levels, model_seeds, names = [], [], []
    for i, level in enumerate(levels):
        for seed in seeds:
            model_levels.append(level)
            model_seeds.append(seed + 1000 * i if sc.per_level_seeds else seed)
            names.append(level_name(level) + (f"_seed_{seed}" if len(seeds) > 1 else ""))
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:  # each model writes its own TensorBoard folder and table row under its name
        raise SweepConfigError(f"sweep.levels: levels share the name(s) {clashes} (a level is named by its percentage "
                               "to 4 decimals); make levels differ by at least 0.0001 % or list each seed once")
    return SweepPlan(levels=levels, seeds=seeds, model_levels=tuple(model_levels), model_seeds=tuple(model_seeds),
                     names=tuple(names), shared_data_order=bool(sc.shared_data_order),
                     data_seed=int(config.train.seed))


# ----------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def configure_cpu_devices(config: ml_collections.ConfigDict) -> int | None:
    """Splits the host CPU into XLA devices for the sweep; call before JAX starts a backend.

    The number is ``sweep.cpu_devices``, or with 0 one per usable core, capped by the number of
    models. Does nothing (returns None) when ``XLA_FLAGS`` already sets
    ``--xla_force_host_platform_device_count`` or a backend is already running (then warns when
    it has a different count).
    """
    plan = make_plan(config)
    n = int(config.sweep.cpu_devices) or min(usable_cores(), plan.n_models)
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    if jax_backend_started():
        if jax.default_backend() == "cpu" and jax.device_count() != n:
            warnings.warn(f"JAX already runs with {jax.device_count()} CPU device(s); the sweep uses those "
                          f"(call configure_cpu_devices before any JAX computation to get {n})", stacklevel=2)
        return None
    jax.config.update("jax_num_cpu_devices", n)
    return n


def sweep_devices(config: ml_collections.ConfigDict) -> list[jax.Device]:
    """The devices the sweep shards over: all (``sweep.devices == 0``) or the first ``sweep.devices``."""
    devices = jax.devices()
    n = int(config.sweep.devices)
    if n > len(devices):
        raise SweepConfigError(f"sweep.devices = {n} but only {len(devices)} device(s) are available")
    chosen = devices[:n] if n else devices
    # Several processes: each must hold part of the mesh (the same verdict on every process).
    idle = sorted(set(range(jax.process_count())) - {d.process_index for d in chosen})
    if idle:
        raise SweepConfigError(f"sweep.devices = {n} leaves process(es) {', '.join(map(str, idle))} without a device; "
                               f"use 0 (all {len(devices)}) or a number that reaches every process's devices")
    return chosen


# ----------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------


def _nbytes(tree: Any) -> int:
    """Bytes of a pytree of arrays or ShapeDtypeStructs."""
    return int(sum(np.dtype(a.dtype).itemsize * math.prod(np.shape(a)) for a in jax.tree.leaves(tree)))


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Estimated memory of a sweep (bytes).

    Attributes:
        state_per_model: One model's train state (parameters, optimizer state with masks, step, key).
        work_per_model: The step's working memory per model (gradients, updates, temporaries, activations).
        data_per_device: Training data replicated on each device.
        models_per_device: Models (padding included) on the busiest device.
        n_devices: Devices used.
        host_copies: Host-side copies of the stacked state (initial state, checkpoint gathers).
        shared_host: The devices share the host's RAM (CPU).
        device_budget: Bytes available per device (None: unknown).
        host_budget: Bytes of host RAM available.
        device_kind: For messages.
    """

    state_per_model: int
    work_per_model: int
    data_per_device: int
    models_per_device: int
    n_devices: int
    host_copies: int
    shared_host: bool
    device_budget: int | None
    host_budget: int | None
    device_kind: str

    @property
    def per_device(self) -> int:
        """Peak bytes on one device."""
        return self.models_per_device * (self.state_per_model + self.work_per_model) + self.data_per_device

    @property
    def host(self) -> int:
        """Peak bytes of host RAM (all CPU devices included when they share it)."""
        return self.host_copies + (self.per_device * self.n_devices if self.shared_host else 0)

    def describe(self) -> str:
        """One line: the estimate and the budget."""
        gib = 2.0**30
        text = (f"memory estimate: {self.models_per_device} model(s) x "
                f"{(self.state_per_model + self.work_per_model) / 2**20:.1f} MiB + data "
                f"{self.data_per_device / 2**20:.1f} MiB = {self.per_device / gib:.2f} GiB per device "
                f"({self.n_devices} x {self.device_kind})")
        if self.device_budget is not None and not self.shared_host:
            text += f", {self.device_budget / gib:.2f} GiB available per device"
        if self.host_budget is not None:
            text += f"; host {self.host / gib:.2f} GiB of {self.host_budget / gib:.2f} GiB available"
        return text


def estimate_memory(
    model_state: Any, *, data_bytes: int, n_models: int, models_per_device: int, devices: Sequence[jax.Device],
    max_memory_gb: float = 0.0,
) -> MemoryEstimate:
    """Estimates a sweep's memory from ONE model's state (a pytree of arrays or ShapeDtypeStructs).

    The step's working memory is taken as three times the parameters (gradients, optimizer
    updates, temporaries) plus 10 % of the state; budgets come from ``max_memory_gb`` when > 0,
    else from the device's ``memory_stats()`` and psutil's available RAM.
    """
    import psutil

    state = _nbytes(model_state)
    params = _nbytes(model_state.params) if hasattr(model_state, "params") else state
    work = 3 * params + state // 10
    platform = devices[0].platform
    shared = platform == "cpu"
    host_budget = int(psutil.virtual_memory().available)
    device_budget: int | None = None
    if max_memory_gb > 0:
        device_budget = host_budget = int(max_memory_gb * 2**30)
    elif not shared:
        # This process's own device: another host's cannot be queried.
        local = [d for d in devices if d.process_index == jax.process_index()] or list(devices)
        stats = local[0].memory_stats() or {}
        if "bytes_limit" in stats:
            device_budget = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return MemoryEstimate(state_per_model=state, work_per_model=work, data_per_device=int(data_bytes),
                          models_per_device=int(models_per_device), n_devices=len(devices),
                          host_copies=2 * n_models * state, shared_host=shared, device_budget=device_budget,
                          host_budget=host_budget, device_kind=devices[0].device_kind)


def check_memory(estimate: MemoryEstimate) -> None:
    """Raises :class:`SweepMemoryError` (with the estimate and a suggestion) when the sweep cannot fit."""
    gib = 2.0**30
    hint = ("; use fewer levels per shard (fewer sweep.levels or sweep.seeds, or more devices), a smaller "
            "train.batch_size or model, or set sweep.max_memory_gb if the estimate is wrong")
    if estimate.device_budget is not None and not estimate.shared_host and estimate.per_device > estimate.device_budget:
        raise SweepMemoryError(
            f"the sweep needs about {estimate.per_device / gib:.2f} GiB per device "
            f"({estimate.models_per_device} models x {(estimate.state_per_model + estimate.work_per_model) / 2**20:.1f}"
            f" MiB + data {estimate.data_per_device / 2**20:.1f} MiB) but {estimate.device_kind} has "
            f"{estimate.device_budget / gib:.2f} GiB available" + hint)
    if estimate.host_budget is not None and estimate.host > estimate.host_budget:
        raise SweepMemoryError(
            f"the sweep needs about {estimate.host / gib:.2f} GiB of host memory ({estimate.n_devices} device(s) x "
            f"{estimate.models_per_device} models x {(estimate.state_per_model + estimate.work_per_model) / 2**20:.1f}"
            f" MiB, data and host copies) but only {estimate.host_budget / gib:.2f} GiB are available" + hint)


# ----------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------


def stack(states: Sequence[Any]) -> Any:
    """Host-side (numpy) stack of per-model pytrees along a new leading model axis."""
    return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *states)


def unstack(stacked: Any, i: int) -> Any:
    """Model ``i`` of a stacked pytree."""
    return jax.tree.map(lambda a: a[i], stacked)


class Runner:
    """Runs one step of every model; knows how the models are laid out on the devices.

    ``held`` is the runner's own layout of the models; :meth:`put` and :meth:`get` convert from
    and to the host-side stacked state (leading model axis, real models only).
    """

    strategy: str
    n_models: int
    devices: list[jax.Device]

    def put(self, stacked: Any) -> Any:
        """Places a host-side stacked state (M models) in this runner's layout."""
        raise NotImplementedError

    def gather(self, held: Any, select: Callable[[Any], Any] = lambda s: s) -> Any:
        """Host-side stacked copy of ``select(state)`` of every model (M leading)."""
        raise NotImplementedError

    def per_model(self, held: Any, fn: Callable[..., Any], *shared: Any) -> Any:
        """Host-side stacked ``fn(state, *shared)`` of every model (M leading), computed where the
        models live.

        ``fn`` maps ONE model's state (and arrays every model shares, e.g. data rows) to a small
        pytree (a statistic), so only its result crosses to the host, not every model's masks.
        ``fn`` is jitted once per function object.
        """
        raise NotImplementedError

    def step(self, held: Any, rows: np.ndarray, update_masks: bool = True) -> tuple[Any, dict[str, jax.Array]]:
        """One step of every model: ``rows`` ``(B,)`` shared, or ``(M, B)`` one per model.

        ``update_masks=False`` runs the step compiled without the pruning mask update (when the
        runner was given one; :func:`mann_jax.loop.run_loop` says when).
        """
        raise NotImplementedError

    def steps(self, held: Any, rows_seq: Sequence[np.ndarray], update_masks: Sequence[bool]) -> tuple[Any, jax.Array]:
        """Several steps of every model (the call :func:`mann_jax.loop.run_loop` makes): the new
        state and each model's summed loss. Here one :meth:`step` of all models after another."""
        return steps_one_after_another(self.step)(held, rows_seq, update_masks)

    def get(self, held: Any) -> Any:
        """The whole host-side stacked state."""
        return self.gather(held)


class StackedRunner(Runner):
    """``"vmap"``, ``"map"`` or ``"unroll"``: one program over the stacked models, sharded over a mesh.

    Args:
        strategy: ``"vmap"``, ``"map"`` or ``"unroll"``.
        step: The single-model step (pruning ``axis_name=None``).
        vmap_step: The same step built with ``axis_name=LEVEL_AXIS`` (for ``"vmap"``).
        n_models: Real models.
        devices: Mesh devices.
        x, y: Training arrays (replicated).
        per_model_rows: Rows are ``(M, B)`` (one data order per model) instead of shared ``(B,)``.
        uneven: ``"pad"`` or ``"error"`` when ``n_models`` does not divide the devices.
        apply_step, vmap_apply_step: ``step`` and ``vmap_step`` with an optimizer built with
            ``mask_updates=False``, for :meth:`step` with ``update_masks=False`` (optional).
    """

    def __init__(self, strategy: str, *, step: Step, vmap_step: Step, n_models: int, devices: Sequence[jax.Device],
                 x: np.ndarray, y: np.ndarray, per_model_rows: bool, uneven: str = "pad",
                 apply_step: Step | None = None, vmap_apply_step: Step | None = None) -> None:
        if strategy not in ("vmap", "map", "unroll"):
            raise SweepConfigError(f"StackedRunner runs 'vmap', 'map' or 'unroll', not {strategy!r}")
        self.strategy, self.n_models, self.devices = strategy, n_models, list(devices)
        d = len(self.devices)
        if n_models % d and uneven == "error":
            raise SweepConfigError(f"{n_models} models do not divide over {d} devices (sweep.uneven='error'); "
                                   f"use a multiple of {d} levels x seeds, sweep.devices, or sweep.uneven='pad'")
        self.padded = -(-n_models // d) * d
        self.per_model_rows = per_model_rows
        self.mesh = Mesh(np.array(self.devices), (MESH_AXIS,))
        self._sharded = NamedSharding(self.mesh, P(MESH_AXIS))
        self._replicated = NamedSharding(self.mesh, P())
        self._x = jax.device_put(x, self._replicated)
        self._y = jax.device_put(y, self._replicated)
        self._step = self._program(step, vmap_step)
        self._apply_step = (self._step if apply_step is None
                            else self._program(apply_step, vmap_apply_step or apply_step))
        self._per_model_fns: dict[Callable[..., Any], Callable[..., Any]] = {}

    def _program(self, step: Step, vmap_step: Step) -> Callable[..., Any]:
        """The jitted, sharded step of every model for this strategy."""
        strategy, per_model_rows = self.strategy, self.per_model_rows
        rows_spec = P(MESH_AXIS) if per_model_rows else P()
        rows_axis = 0 if per_model_rows else None

        def per_shard(states: TrainState, xa: jax.Array, ya: jax.Array,
                      rows: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
            if strategy == "vmap":
                return jax.vmap(vmap_step, in_axes=(0, None, None, rows_axis), axis_name=LEVEL_AXIS)(
                    states, xa, ya, rows)
            if strategy == "map":
                if per_model_rows:
                    return lax.map(lambda sr: step(sr[0], xa, ya, sr[1]), (states, rows))
                return lax.map(lambda s: step(s, xa, ya, rows), states)
            local = jax.tree.leaves(states)[0].shape[0]
            traced_once = jax.jit(step)  # one trace, inlined once per local model
            outs = [traced_once(unstack(states, i), xa, ya, rows[i] if per_model_rows else rows)
                    for i in range(local)]
            return jax.tree.map(lambda *a: jnp.stack(a), *outs)

        mapped = jax.shard_map(per_shard, mesh=self.mesh, in_specs=(P(MESH_AXIS), P(), P(), rows_spec),
                               out_specs=(P(MESH_AXIS), P(MESH_AXIS)), check_vma=False)
        return jit_train_step(mapped, platform=self.devices[0].platform)

    def _pad(self, a: np.ndarray) -> np.ndarray:
        if self.padded == self.n_models:
            return a
        return np.concatenate([a, a[np.arange(self.padded - self.n_models) % self.n_models]])

    def put(self, stacked: Any) -> Any:
        return jax.device_put(jax.tree.map(self._pad, stacked), self._sharded)

    def gather(self, held: Any, select: Callable[[Any], Any] = lambda s: s) -> Any:
        return jax.tree.map(lambda a: np.asarray(a)[: self.n_models], to_host(select(held)))

    def per_model(self, held: Any, fn: Callable[..., Any], *shared: Any) -> Any:
        if fn not in self._per_model_fns:
            self._per_model_fns[fn] = jax.jit(jax.vmap(fn, in_axes=(0,) + (None,) * len(shared)))
        result = self._per_model_fns[fn](held, *jax.device_put(shared, self._replicated))
        return jax.tree.map(lambda a: np.asarray(a)[: self.n_models], to_host(result))

    def _padded_step(self, held: Any, rows: np.ndarray, update_masks: bool) -> tuple[Any, jax.Array]:
        """One step of every model; the loss of the padded model axis (as sharded as the models)."""
        if self.per_model_rows:
            rows = self._pad(np.asarray(rows))
        held, metrics = (self._step if update_masks else self._apply_step)(held, self._x, self._y, rows)
        return held, metrics["loss"]

    def _real(self, loss: jax.Array) -> Any:
        """``loss`` without the padding; on several processes read to the host first (slicing the sharded
        array would make them exchange data, outside the points where :func:`to_host` aligns them)."""
        return (loss if jax.process_count() == 1 else to_host(loss))[: self.n_models]

    def step(self, held: Any, rows: np.ndarray, update_masks: bool = True) -> tuple[Any, dict[str, jax.Array]]:
        held, loss = self._padded_step(held, rows, update_masks)
        return held, {"loss": self._real(loss)}

    def steps(self, held: Any, rows_seq: Sequence[np.ndarray], update_masks: Sequence[bool]) -> tuple[Any, jax.Array]:
        """The steps one after another, the padding dropped from the summed losses once at the end (not
        on every step: on several processes that is a read to the host)."""
        total: Any = 0.0
        for rows, update in zip(rows_seq, update_masks, strict=True):
            held, loss = self._padded_step(held, rows, update)
            total = total + loss
        return held, self._real(total)


class LoopRunner(Runner):
    """``"loop"``: the jitted single-model step dispatched per model; model ``i`` lives on device ``i % D``.

    Args:
        step: The single-model step (pruning ``axis_name=None``).
        n_models: Models.
        devices: Devices to spread the models over.
        x, y: Training arrays (one copy per device).
        per_model_rows: Rows are ``(M, B)`` instead of shared ``(B,)``.
        apply_step: ``step`` with an optimizer built with ``mask_updates=False`` (optional; see
            :meth:`Runner.step`).
    """

    strategy = "loop"

    def __init__(self, *, step: Step, n_models: int, devices: Sequence[jax.Device], x: np.ndarray,
                 y: np.ndarray, per_model_rows: bool, apply_step: Step | None = None) -> None:
        if jax.process_count() > 1:
            raise SweepConfigError("the 'loop' strategy runs in one process; use 'vmap', 'map' or 'unroll' "
                                   "on several hosts")
        self.n_models, self.devices = n_models, list(devices)[:n_models]
        self.per_model_rows = per_model_rows
        self._data = [(jax.device_put(x, d), jax.device_put(y, d)) for d in self.devices]
        self._step = jit_train_step(step, platform=self.devices[0].platform)
        self._apply_step = self._step if apply_step is None else jit_train_step(apply_step,
                                                                                platform=self.devices[0].platform)
        self._per_model_fns: dict[Callable[..., Any], Callable[..., Any]] = {}

    def _device(self, i: int) -> int:
        return i % len(self.devices)

    def put(self, stacked: Any) -> Any:
        return [jax.device_put(jax.tree.map(lambda a: np.array(a[i]), stacked), self.devices[self._device(i)])
                for i in range(self.n_models)]

    def gather(self, held: Any, select: Callable[[Any], Any] = lambda s: s) -> Any:
        return stack(to_host([select(s) for s in held]))

    def per_model(self, held: Any, fn: Callable[..., Any], *shared: Any) -> Any:
        if fn not in self._per_model_fns:
            self._per_model_fns[fn] = jax.jit(fn)
        on_device = [jax.device_put(shared, d) for d in self.devices]
        results = [self._per_model_fns[fn](s, *on_device[self._device(i)]) for i, s in enumerate(held)]
        return stack(to_host(results))

    def step(self, held: Any, rows: np.ndarray, update_masks: bool = True) -> tuple[Any, dict[str, jax.Array]]:
        held, loss = self.steps(held, [rows], [update_masks])
        return held, {"loss": loss}

    def steps(self, held: Any, rows_seq: Sequence[np.ndarray], update_masks: Sequence[bool]) -> tuple[Any, jax.Array]:
        """Model by model: all the steps of model 0, then of model 1, ... (dispatched asynchronously,
        so the devices still run concurrently). The models are independent, so this gives what
        step after step gives, but each model's state (88 MB for 8 x 512 with Adam and masks) stays in
        cache through its steps instead of all states streaming from DRAM every step."""
        rows_seq = [np.asarray(rows) for rows in rows_seq]
        new, losses = [], []
        for i, state in enumerate(held):
            x, y = self._data[self._device(i)]
            total: Any = 0.0
            for rows, update in zip(rows_seq, update_masks, strict=True):
                state, metrics = (self._step if update else self._apply_step)(
                    state, x, y, rows[i] if self.per_model_rows else rows)
                total = total + metrics["loss"]
            new.append(state)
            losses.append(jax.device_put(total, self.devices[0]))
        return new, jnp.stack(losses)


def make_runner(
    strategy: str, *, step: Step, vmap_step: Step, n_models: int, devices: Sequence[jax.Device], x: np.ndarray,
    y: np.ndarray, per_model_rows: bool = False, uneven: str = "pad", apply_step: Step | None = None,
    vmap_apply_step: Step | None = None,
) -> Runner:
    """The runner of a resolved strategy (``"vmap"``, ``"map"``, ``"unroll"`` or ``"loop"``).

    ``apply_step``/``vmap_apply_step``: the steps without the mask update (see :meth:`Runner.step`).
    """
    if strategy == "loop":
        return LoopRunner(step=step, n_models=n_models, devices=devices, x=x, y=y, per_model_rows=per_model_rows,
                          apply_step=apply_step)
    return StackedRunner(strategy, step=step, vmap_step=vmap_step, n_models=n_models, devices=devices, x=x, y=y,
                         per_model_rows=per_model_rows, uneven=uneven, apply_step=apply_step,
                         vmap_apply_step=vmap_apply_step)


def default_strategy(platform: str) -> str:
    """``"auto"`` without calibration: ``"vmap"`` on accelerators (and multi-host), :data:`CPU_AUTO_STRATEGY` on CPU."""
    return CPU_AUTO_STRATEGY if platform == "cpu" and jax.process_count() == 1 else "vmap"


def time_runner(runner: Runner, held: Any, rows: np.ndarray, *, steps: int) -> tuple[Any, float]:
    """Seconds per step of ``runner`` (min over ``steps`` timed steps after one warm-up/compile step),
    for the step most steps run: the one without a mask update."""
    held, m = runner.step(held, rows, update_masks=False)
    jax.block_until_ready(m["loss"])
    best = math.inf
    for _ in range(steps):
        start = time.perf_counter()
        held, m = runner.step(held, rows, update_masks=False)
        jax.block_until_ready(m["loss"])
        best = min(best, time.perf_counter() - start)
    return held, best


def calibrate(make: Callable[[str], Runner], stacked: Any, rows: np.ndarray, candidates: Sequence[str], *,
              steps: int) -> dict[str, float]:
    """Seconds per step of each candidate strategy, run on copies of ``stacked`` (discarded)."""
    times = {}
    for name in candidates:
        runner = make(name)
        held, times[name] = time_runner(runner, runner.put(stacked), rows, steps=steps)
        del held
    return times


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------

TABLE_COLUMNS: tuple[str, ...] = ("name", "level", "seed", "actual_sparsity", "nonzero", "nonzero_expert_weights",
                                  "size_mb", "mflops", "train_loss", "val_loss")


def _full_masks(params: Any, masks: Any) -> Any:
    """Masks broadcast to their parameters' shapes (the accounting wants full shapes)."""
    return jax.tree.map(lambda p, m: np.broadcast_to(np.asarray(m), np.shape(p)), params, masks)


def table_row(name: str, level: float, seed: int, params: Any, masks: Any, train_loss: float,
              val_loss: float) -> dict[str, Any]:
    """One results row: actual sparsity, non-zeros, Mb and MFLOPs of the masked model, and its losses."""
    full = _full_masks(params, masks)
    counts = accounting.nonzero_counts(params, full)
    return {
        "name": name,
        "level": float(level),
        "seed": int(seed),
        "actual_sparsity": float(pruning.sparsity_report(masks)["overall"]),
        "nonzero": counts.total,
        "nonzero_expert_weights": counts.expert_weights,
        "size_mb": accounting.model_size_mb(params, full),
        "mflops": accounting.flops_per_frame(params, full).mflops,
        "train_loss": float(train_loss),
        "val_loss": float(val_loss),
    }


def recorded_train_losses(saved_meta: Mapping[str, Any], n_models: int) -> list[float]:
    """Each model's last logging-window loss as the checkpoint recorded it; NaN where it records none.

    A sweep resumed after it finished runs no step, so it has no window of its own: it keeps the
    recorded loss (dropout on) rather than report one measured another way under the same name.
    """
    recorded = saved_meta.get("train_losses") if saved_meta else None
    if not isinstance(recorded, list) or len(recorded) != n_models:
        return [math.nan] * n_models
    return [float(v) if isinstance(v, (int, float)) else math.nan for v in recorded]


def write_table(rows: Sequence[dict[str, Any]], workdir: Path, extra: dict[str, Any]) -> None:
    """``results.csv`` (one row per model) and ``results.json`` (``extra`` plus the rows)."""
    with open(workdir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows([{k: r[k] for k in TABLE_COLUMNS} for r in rows])
    # JSON has no NaN: a figure with nothing to measure it on (no validation rows, no step run) is null.
    (workdir / "results.json").write_text(json.dumps(json_safe({**extra, "rows": list(rows)}), indent=2,
                                                     allow_nan=False))


def plot_results(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Validation (and training) loss against actual sparsity, one point per model, the seed mean as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    by_level: dict[float, list[dict[str, Any]]] = {}
    for r in rows:
        by_level.setdefault(r["level"], []).append(r)
    levels = sorted(by_level)
    xs = [100 * np.mean([r["actual_sparsity"] for r in by_level[v]]) for v in levels]
    for key, style, label in (("val_loss", "o-", "validation"), ("train_loss", "s--", "training")):
        ys = [np.mean([r[key] for r in by_level[v]]) for v in levels]
        if not np.all(np.isfinite(ys)):
            continue
        note = " (last logging window, dropout on)" if key == "train_loss" else " (dropout off)"
        ax.plot(xs, ys, style, label=f"{label} loss{note}" + (", mean over seeds" if len(rows) > len(levels) else ""))
        if len(rows) > len(levels):
            ax.scatter([100 * r["actual_sparsity"] for r in rows], [r[key] for r in rows], s=10, alpha=0.5)
    ax.set_xlabel("actual sparsity of the prunable weights (%)")
    ax.set_ylabel("MSE (normalised outputs)")
    ax.set_title("Loss against sparsity")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What a finished sweep reports.

    Attributes:
        plan: The models.
        rows: The results table (one dict per model, :data:`TABLE_COLUMNS`).
        state: Host-side stacked final state (leading model axis).
        strategy: The strategy that ran.
        n_devices: Devices used.
        steps: Steps of the whole run.
        seconds: Wall time of this call.
        train_seconds: Wall time of the training loop summed over every call that trained these
            models (this one and those it resumed from, up to their last checkpoint); None when
            one of them ran before this was recorded.
        samples_per_second: Training samples of all models per second in this call.
        memory: The memory estimate.
        calibration: Seconds per step by strategy, when calibrated.
    """

    plan: SweepPlan
    rows: list[dict[str, Any]]
    state: Any
    strategy: str
    n_devices: int
    steps: int
    seconds: float
    train_seconds: float | None
    samples_per_second: float
    memory: MemoryEstimate
    calibration: dict[str, float] | None


def initial_state(config: ml_collections.ConfigDict, plan: SweepPlan,
                  tx: optax.GradientTransformation) -> tuple[ModelFunctions, Any]:
    """The model functions and the host-side stacked initial state of every model of ``plan``."""
    fns_by_seed: dict[int, ModelFunctions] = {}
    states = []
    for level, seed in zip(plan.model_levels, plan.model_seeds):
        if seed not in fns_by_seed:
            fns_by_seed[seed] = initial_model(config, seed=seed)
        state = init_state(fns_by_seed[seed], tx, seed=seed)
        state = state.replace(opt_state=_set_target(state.opt_state, level))
        states.append(jax.device_get(state))
    return fns_by_seed[plan.model_seeds[0]], stack(states)


def _set_target(opt_state: Any, level: float) -> Any:
    """``opt_state`` with the (only) PruningState's target set to ``level``."""
    def fix(node: Any) -> Any:
        return pruning.with_target_sparsity(node, level) if isinstance(node, pruning.PruningState) else node

    return jax.tree.map(fix, opt_state, is_leaf=lambda n: isinstance(n, pruning.PruningState))


def sweep_optimizers(config: ml_collections.ConfigDict, *, n_batches: int, total_steps: int,
                     mask_updates: bool = True) -> tuple[Any, Any]:
    """The sweep's pruned optimizer, without and with the vmap ``axis_name`` (the same transformation);
    ``mask_updates=False``: the same without the mask update (for the steps that need none)."""
    make = functools.partial(make_training_optimizer, config, n_batches=n_batches, total_steps=total_steps,
                             force_pruning=True, mask_updates=mask_updates)
    return make(), make(axis_name=LEVEL_AXIS)


def run_sweep(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    dataset: Dataset | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    wrap_step: Callable[[Step], Step] | None = None,
) -> SweepResult:
    """Trains (or resumes) every model of ``config.sweep`` in ``workdir`` (see the module docstring).

    Args:
        config: A config with ``data``, ``model``, ``train``, ``pruning`` and ``sweep`` sections
            (``configs/sweep.py``); ``pruning.target_sparsity`` is ignored (the levels replace it).
        workdir: Output directory; resumes from its checkpoints when it holds a sweep of this setup.
        dataset: The dataset, if already built.
        progress: Show a progress bar and print the memory estimate.
        stop_after: Stop after this many steps (checkpointed), e.g. to fit a time slot.
        wrap_step: Applied to the single-model step functions before mapping (tests wrap them with
            ``chex.assert_max_traces``).

    Raises:
        SweepConfigError: bad sweep settings.
        SweepMemoryError: the models do not fit.
        CheckpointError: ``workdir`` holds a different setup.
    """
    plan = make_plan(config)
    data = training_data(config, dataset, progress=progress)
    tx, tx_vmap = sweep_optimizers(config, n_batches=data.n_batches, total_steps=data.total_steps)
    fns, stacked = initial_state(config, plan, tx)
    devices = sweep_devices(config)
    writer_main = jax.process_index() == 0
    memory = _memory_that_fits(config, plan, stacked, data, devices, describe=progress and writer_main)
    run = start_run(config, workdir, data, fns, stacked, allowed=RESUMABLE_SWEEP_CHANGES,
                    step_of=lambda state: _common_step(state, Path(workdir)))
    stacked = jax.tree.map(np.asarray, run.state)

    def rows_for_epoch(epoch: int) -> np.ndarray:
        if plan.shared_data_order:
            return run.batch_order(epoch, seed=plan.data_seed)
        return np.stack([run.batch_order(epoch, seed=s) for s in plan.model_seeds], axis=1)  # (n_batches, M, B)

    make = _runner_factory(config, plan, fns, (tx, tx_vmap), data, devices, wrap_step)
    strategy, calibration = choose_strategy(config, run, make, stacked, rows_for_epoch, devices[0].platform,
                                            report=progress and writer_main)
    runner = make(strategy)
    held = runner.put(stacked)
    del stacked
    writers = {name: MetricWriter(run.workdir / "tensorboard" / name) for name in plan.names} if writer_main else {}
    log = _SweepLog(run, plan, runner, fns, writers)
    earlier = run.saved_meta.get("train_seconds") if run.saved_meta else 0.0
    # Training wall time of the calls this one resumes from (as of their last checkpoint); None when
    # they ran before it was recorded (then it stays unknown rather than undercounted).
    earlier_train_seconds = float(earlier) if isinstance(earlier, (int, float)) else None

    def meta_at(step: int) -> dict[str, Any]:
        return {**run.meta_at(step), "strategy": strategy, "train_losses": log.train_losses,
                "train_seconds": None if earlier_train_seconds is None
                else earlier_train_seconds + time.perf_counter() - run_start,
                "models": [{"name": n, "level": lv, "seed": s}
                           for n, lv, s in zip(plan.names, plan.model_levels, plan.model_seeds)]}

    bar = run.progress_bar(f"sweep x{plan.n_models} ({strategy})", enabled=progress and writer_main)
    run_start = time.perf_counter()
    with closing_outputs(bar, writers.values()):
        held, last_loss = run.loop(
            held, runner.steps, samples_per_step=data.batch_size * plan.n_models, rows_for_epoch=rows_for_epoch,
            meta_at=meta_at, on_log=log.on_log, on_epoch_end=log.on_epoch_end, bar=bar,
            checkpoint_state=runner.get, stop_after=stop_after, model_names=plan.names,
            update_masks_at=mask_update_steps(config, total_steps=data.total_steps))
    seconds = time.perf_counter() - run_start
    return _finish_sweep(run, plan, runner, log, runner.get(held), last_loss, strategy=strategy, seconds=seconds,
                         earlier_train_seconds=earlier_train_seconds, memory=memory, calibration=calibration)


def _memory_that_fits(config: ml_collections.ConfigDict, plan: SweepPlan, stacked: Any, data: TrainingData,
                      devices: list[jax.Device], *, describe: bool) -> MemoryEstimate:
    """The sweep's memory estimate (printed when ``describe``), after :func:`check_memory` let it through."""
    sc = config.sweep
    calibrating = sc.strategy == "auto" and int(sc.calibration_steps) > 0
    memory = estimate_memory(unstack(stacked, 0), data_bytes=data.x_train.nbytes + data.y_train.nbytes,
                             n_models=plan.n_models * (2 if calibrating else 1),
                             models_per_device=-(-plan.n_models // len(devices)), devices=devices,
                             max_memory_gb=float(sc.max_memory_gb))
    if describe:
        tqdm.write(memory.describe())
    check_memory(memory)
    return memory


def _common_step(stacked: Any, workdir: Path) -> int:
    """The step every model of a (restored) stacked state is at."""
    steps_done = np.asarray(stacked.step)
    if not np.all(steps_done == steps_done[0]):
        raise TrainingError(f"{workdir}: the checkpoint's models are at different steps {steps_done.tolist()}")
    return int(steps_done[0])


def _runner_factory(config: ml_collections.ConfigDict, plan: SweepPlan, fns: ModelFunctions,
                    optimizers: tuple[Any, Any], data: TrainingData, devices: list[jax.Device],
                    wrap_step: Callable[[Step], Step] | None) -> Callable[[str], Runner]:
    """``make(strategy) -> Runner`` over the sweep's steps: with and without the vmap axis, and each also
    compiled without the pruning mask update, for every step that needs none (see :func:`mann_jax.loop.run_loop`)."""
    step_plain, step_vmap = (make_train_step(fns, t) for t in optimizers)
    apply_plain, apply_vmap = (make_train_step(fns, t) for t in sweep_optimizers(
        config, n_batches=data.n_batches, total_steps=data.total_steps, mask_updates=False))
    if wrap_step is not None:
        step_plain, step_vmap = wrap_step(step_plain), wrap_step(step_vmap)
        apply_plain, apply_vmap = wrap_step(apply_plain), wrap_step(apply_vmap)

    def make(name: str) -> Runner:
        return make_runner(name, step=step_plain, vmap_step=step_vmap, n_models=plan.n_models, devices=devices,
                           x=data.x_train, y=data.y_train, per_model_rows=not plan.shared_data_order,
                           uneven=config.sweep.uneven, apply_step=apply_plain, vmap_apply_step=apply_vmap)

    return make


def choose_strategy(config: ml_collections.ConfigDict, run: Run, make: Callable[[str], Runner], stacked: Any,
                    rows_for_epoch: Callable[[int], np.ndarray], platform: str, *,
                    report: bool) -> tuple[str, dict[str, float] | None]:
    """The strategy to run and, when ``"auto"`` calibrated, the seconds per step of each candidate.

    ``"auto"`` resumes with the strategy the checkpoint ran ("loop" only in one process), else
    calibrates on copies of ``stacked`` when ``sweep.calibration_steps > 0``, else takes
    :func:`default_strategy`. Every process picks the same: the slowest process's time of each decides.
    """
    sc = config.sweep
    saved = run.saved_meta.get("strategy")
    if sc.strategy != "auto":
        return sc.strategy, None
    if saved in STRATEGIES[1:] and not (saved == "loop" and jax.process_count() > 1):
        return saved, None  # resume as it ran
    start, n_batches = run.start_step, run.data.n_batches
    if int(sc.calibration_steps) <= 0 or start >= run.data.total_steps:
        return default_strategy(platform), None
    candidates = [s for s in sc.calibrate] or ["vmap", "loop"]
    if jax.process_count() > 1:
        candidates = [c for c in candidates if c != "loop"] or ["vmap"]
    times = calibrate(make, stacked, rows_for_epoch(start // n_batches)[start % n_batches], candidates,
                      steps=int(sc.calibration_steps))
    worst = multihost.gather_rows(np.array([times[c] for c in candidates])).max(axis=0)
    calibration = dict(zip(candidates, worst.tolist()))
    strategy = min(calibration, key=calibration.__getitem__)
    if report:
        tqdm.write("calibration (s/step): " + ", ".join(f"{k} {v:.4f}" for k, v in calibration.items())
                   + f" -> {strategy}")
    return strategy, calibration


class _SweepLog:
    """What a sweep writes at a log line and an epoch end: one TensorBoard run per model (process 0 only;
    every process takes part in the per-model statistics, which are collectives)."""

    def __init__(self, run: Run, plan: SweepPlan, runner: Runner, fns: ModelFunctions,
                 writers: dict[str, MetricWriter]) -> None:
        self.run, self.plan, self.runner, self.writers = run, plan, runner, writers
        data = run.data
        self.eval_due = Periodic.every_epochs(int(run.config.sweep.eval_every_epochs), n_batches=data.n_batches,
                                              last_step=data.total_steps)
        self.val_losses = np.full(plan.n_models, np.nan)
        self.val_step = -1  # the step val_losses are of
        self.train_losses: list[float] | None = None  # the last logging window's, one per model
        self._gating_rows = data.gating_rows()
        # Jitted once each by the runner (keyed by the function object).
        self._pruned_entries = lambda state: pruning.pruned_entries(select_masks(state))
        self._gating = lambda state, rows: gating_summary(fns, state.params, rows)

    def _names(self) -> Sequence[str]:
        return self.plan.names if self.writers else ()

    def on_log(self, done: int, step: int, loss: np.ndarray, rate: float, state: Any) -> dict[str, str]:
        self.train_losses = [float(v) for v in loss]
        pruned, entries = self.runner.per_model(state, self._pruned_entries)
        actual = pruned / np.maximum(entries, 1).astype(np.float64)
        scheduled = float(self.run.schedule(step))
        shared = self.run.train_scalars(step, None, rate)  # the loss filled in per model
        for i, name in enumerate(self._names()):
            level = self.plan.model_levels[i]
            self.writers[name].write_scalars(done, {
                **shared, "train/loss": loss[i], "sparsity/overall": actual[i], "sparsity/target": level,
                "sparsity/scheduled": scheduled * level})
        return {"loss": f"{loss.min():.4f}..{loss.max():.4f}", "samples_s": f"{rate:.0f}"}

    def on_epoch_end(self, done: int, epoch: int, state: Any) -> None:
        data = self.run.data
        if not self.eval_due(done) or not len(data.x_val):
            return
        self.val_losses = self.evaluate(self.runner.gather(state, lambda s: s.params), data.x_val, data.y_val)
        self.val_step = done
        gating = self.runner.per_model(state, self._gating, self._gating_rows)
        for i, name in enumerate(self._names()):
            self.writers[name].write_scalars(done, {"val/loss": self.val_losses[i]})
            self.writers[name].write_scalars(done, gating_scalars(unstack(gating, i)))

    def evaluate(self, params: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Each model's loss on ``x``, ``y`` (one transfer of its parameters, not one per chunk of rows)."""
        return np.array([self.run.eval_loss(jax.device_put(unstack(params, i)), x, y)
                         for i in range(self.plan.n_models)])


def select_masks(state: Any) -> Any:
    """The pruning masks of a (stacked) train state."""
    return pruning.find_pruning_state(state.opt_state).masks


def _finish_sweep(run: Run, plan: SweepPlan, runner: Runner, log: _SweepLog, final: Any, last_loss: Any, *,
                  strategy: str, seconds: float, earlier_train_seconds: float | None, memory: MemoryEstimate,
                  calibration: dict[str, float] | None) -> SweepResult:
    """The final losses (evaluated where the loop left none), the table, plot and combined run; the result."""
    data = run.data
    done = int(np.asarray(final.step)[0])
    steps_run = done - run.start_step
    params, masks = final.params, select_masks(final)
    val_losses = log.val_losses
    if len(data.x_val) and log.val_step != done:
        val_losses = log.evaluate(params, data.x_val, data.y_val)
    if last_loss is None:  # no step ran in this call: keep the losses the checkpoint recorded
        last_loss = recorded_train_losses(run.saved_meta, plan.n_models)
    rows = [table_row(name, plan.model_levels[i], plan.model_seeds[i], unstack(params, i), unstack(masks, i),
                      float(last_loss[i]), float(val_losses[i])) for i, name in enumerate(plan.names)]
    result = SweepResult(plan=plan, rows=rows, state=final, strategy=strategy, n_devices=len(runner.devices),
                         steps=done, seconds=seconds,
                         train_seconds=None if earlier_train_seconds is None else earlier_train_seconds + seconds,
                         samples_per_second=steps_run * data.batch_size * plan.n_models / seconds if steps_run
                         else math.nan, memory=memory, calibration=calibration)
    if log.writers:
        device = runner.devices[0]
        extra = {"steps": done, "total_steps": data.total_steps, "finished": done == data.total_steps,
                 "start_step": run.start_step, "processes": jax.process_count(), "strategy": strategy,
                 "devices": len(runner.devices), "device_kind": device.device_kind, "platform": device.platform,
                 "seconds": round(seconds, 2),
                 "train_seconds": None if result.train_seconds is None else round(result.train_seconds, 2),
                 "samples_per_second": result.samples_per_second,
                 "calibration": calibration, "memory_per_device_bytes": memory.per_device,
                 "val_mean_predictor_loss": data.mean_predictor_loss()}
        write_table(rows, run.workdir, extra)
        png = plot_results(rows, run.workdir / "val_loss_vs_sparsity.png")
        _write_combined(run.workdir / "tensorboard" / "combined", rows, png, done)
        for w in log.writers.values():
            w.close()
    run.checkpoints.close()
    return result


def _write_combined(logdir: Path, rows: Sequence[dict[str, Any]], png: Path, step: int) -> None:
    """The combined TensorBoard run: final figures per level (step axis = level in percent), and the plot."""
    import matplotlib.image

    by_level: dict[float, list[dict[str, Any]]] = {}
    for r in rows:
        by_level.setdefault(r["level"], []).append(r)
    with MetricWriter(logdir) as w:
        for level, rs in sorted(by_level.items()):
            w.write_scalars(int(round(level * 100)), {
                f"final/{k}": float(np.mean([r[k] for r in rs]))
                for k in ("val_loss", "train_loss", "actual_sparsity", "nonzero", "size_mb", "mflops")})
        image = matplotlib.image.imread(str(png))[..., :3]
        w.write_images(step, {"val_loss_vs_sparsity": image})
