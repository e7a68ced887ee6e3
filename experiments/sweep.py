"""Train one MANN per sparsity level (and seed) in one process: the framework's main job.

  python -m experiments.sweep --config configs/sweep.py:runlocal --workdir runs/sweep      # make sweep
  python -m experiments.sweep --config configs/sweep.py --workdir runs/sweep_full
  python -m experiments.sweep --config configs/sweep.py --config.sweep.levels='(0.0,0.5,0.9)' \\
      --config.sweep.seeds='(1,2,3)' --workdir runs/sweep_seeds

Resumes from --workdir when it holds checkpoints of the same setup. Writes results.csv/.json,
val_loss_vs_sparsity.png and tensorboard/ (one run per model plus "combined"):
  tensorboard --logdir runs/sweep/tensorboard
Multi-process (docs/multihost.md): run the same command in every process with --multihost
(jax.distributed.initialize()); the coordinator, process count and id come from the cluster (SLURM,
Open MPI, Kubernetes, Cloud TPU) or from --coordinator_address / --num_processes / --process_id, e.g.
two processes on one machine:
  python -m experiments.sweep --config configs/sweep.py:runlocal --multihost --coordinator_address=127.0.0.1:12345 \
      --num_processes=2 --process_id=0 --workdir runs/sweep_2p &   # and the same with --process_id=1
Every process runs the same command and the same workdir (a shared filesystem); process 0 writes the
table, plot and TensorBoard events, all write the checkpoints together. A process that dies ends
the others with an error line (within --heartbeat_timeout seconds); restart all to resume.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from absl import flags, logging
from ml_collections import config_flags

from mann_jax import cli, multihost, sweep, workdir_lock

_CONFIG = config_flags.DEFINE_config_file("config", "configs/sweep.py", "Sweep config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, TensorBoard, table, plot).", required=True)
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (one process per host).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "With --multihost: host:port of process 0 "
                                   "(default: from the cluster environment or JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "With --multihost: number of processes (default: detected).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --multihost: this process's id (default: detected).")
_INIT_TIMEOUT = flags.DEFINE_integer("initialization_timeout", 300, "With --multihost: seconds to wait for every "
                                     "process to connect.")
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer("heartbeat_timeout", 100, "With --multihost: seconds after which a "
                                          "process that stopped answering counts as dead and the others stop.")


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    try:
        if _MULTIHOST.value:
            multihost.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                 initialization_timeout=_INIT_TIMEOUT.value, heartbeat_timeout=_HEARTBEAT_TIMEOUT.value)
        else:
            sweep.configure_cpu_devices(config)  # before anything starts JAX
        import jax

        primary = jax.process_index() == 0  # a multi-host run: process 0 holds the lock
        with workdir_lock.hold(_WORKDIR.value, enabled=primary):
            result = sweep.run_sweep(config, _WORKDIR.value)
    except Exception as e:  # several processes: end this one now (see _exit_now), else as always
        if _MULTIHOST.value and multihost.started():
            _exit_now(e)
        raise
    print(f"done: {len(result.rows)} models, {result.steps} steps in {result.seconds:.1f} s with strategy "
          f"{result.strategy!r} on {result.n_devices} device(s) ({result.samples_per_second:.0f} samples/s)")
    header = f"{'model':<18}{'sparsity':>9}{'non-zero':>11}{'Mb':>8}{'MFLOPs':>8}{'train':>9}{'val':>9}"
    print(header)
    for r in result.rows:
        print(f"{r['name']:<18}{100 * r['actual_sparsity']:>8.1f}%{r['nonzero']:>11d}{r['size_mb']:>8.2f}"
              f"{r['mflops']:>8.3f}{r['train_loss']:>9.4f}{r['val_loss']:>9.4f}")
    print(f"table: {_WORKDIR.value}/results.csv, plot: {_WORKDIR.value}/val_loss_vs_sparsity.png")
    print(json.dumps({"strategy": result.strategy, "devices": result.n_devices, "steps": result.steps,
                      "seconds": round(result.seconds, 2),
                      "val_loss": {r["name"]: r["val_loss"] for r in result.rows}}))


def _exit_now(error: Exception) -> None:
    """Ends a process of a multi-process run after an error, without the distributed runtime's shutdown
    barrier: it would wait for processes that are themselves waiting for this one (until a timeout,
    then an abort). Its peers see it gone at their next exchange and stop with an error line too."""
    if isinstance(error, cli.USER_ERRORS):
        print(f"error: {error}", file=sys.stderr)
        status = 2
    elif multihost.is_peer_failure(error):
        print(f"error: {multihost.peer_failure_message(error, _WORKDIR.value)}", file=sys.stderr)
        status = 2
    else:  # a bug: its traceback
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    cli.run(main)
