"""Pruning for MANN training: an optax wrapper with masks in the optimizer state.

* :mod:`~mann_jax.pruning.masks`: :func:`prune` (the wrapper), :class:`PruningState`,
  :func:`with_target_sparsity`, :func:`sparsity_report`, :func:`pruned_entries`.
* :mod:`~mann_jax.pruning.schedules`: sparsity schedules (one-cycle, AGP, linear, cosine,
  one-shot, iterative) and :func:`make_schedule`.
* :mod:`~mann_jax.pruning.scoring`: the score registry and exact-count selection.
* :mod:`~mann_jax.pruning.structured`: neuron and n:m granularities, :func:`shrink`.

Typical use::

    schedule = make_schedule("one_cycle", start=0.1, end=0.9, total_steps=total_steps)
    tx = prune(make_optimizer(config.train, n_batches=n_batches), target_sparsity=0.9, schedule=schedule)
"""

from mann_jax.pruning.masks import (
    EXPERTS,
    EXPERTS_AND_GATING,
    PruningState,
    default_prunable,
    find_pruning_state,
    path_string,
    prunable_paths,
    prune,
    pruned_entries,
    sparsity_report,
    with_target_sparsity,
)
from mann_jax.pruning.schedules import SCHEDULES, Schedule, make_schedule, plot_schedules, schedule_from_config
from mann_jax.pruning.scoring import SCORES, count_for_sparsity, lowest_k, pruned_count, register_score
from mann_jax.pruning.structured import hidden_sizes_after, shrink, units_from_masks

__all__ = [
    "EXPERTS",
    "EXPERTS_AND_GATING",
    "PruningState",
    "SCHEDULES",
    "SCORES",
    "Schedule",
    "count_for_sparsity",
    "default_prunable",
    "find_pruning_state",
    "hidden_sizes_after",
    "lowest_k",
    "make_schedule",
    "path_string",
    "plot_schedules",
    "prunable_paths",
    "prune",
    "pruned_count",
    "pruned_entries",
    "register_score",
    "schedule_from_config",
    "shrink",
    "sparsity_report",
    "units_from_masks",
    "with_target_sparsity",
]
