"""Train one MANN per sparsity level (and seed) in one process: the framework's main job.

  python -m experiments.sweep --config configs/sweep.py:runlocal --workdir runs/sweep      # make sweep
  python -m experiments.sweep --config configs/sweep.py --workdir runs/sweep_full
  python -m experiments.sweep --config configs/sweep.py --config.sweep.levels='(0.0,0.5,0.9)' \\
      --config.sweep.seeds='(1,2,3)' --workdir runs/sweep_seeds

Resumes from --workdir when it holds checkpoints of the same setup. Writes results.csv/.json,
val_loss_vs_sparsity.png and tensorboard/ (one run per model plus "combined"):
  tensorboard --logdir runs/sweep/tensorboard
Multi-host: run the same command on every host with --multihost (jax.distributed.initialize()); the
coordinator, process count and id come from the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU) or
from --coordinator_address / --num_processes / --process_id, e.g. two processes on one machine:
  python -m experiments.sweep --multihost --coordinator_address=127.0.0.1:12345 --num_processes=2 \
      --process_id=0 --workdir runs/sweep_2p &   # and the same with --process_id=1
Every process runs the same command and the same workdir (a shared filesystem); process 0 writes the
table, plot and TensorBoard events.
"""

from __future__ import annotations

import json
import sys

from absl import flags, logging
from ml_collections import config_flags

from mann_jax import sweep
from mann_jax import cli, workdir_lock

_CONFIG = config_flags.DEFINE_config_file("config", "configs/sweep.py", "Sweep config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, TensorBoard, table, plot).", required=True)
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (one process per host).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "With --multihost: host:port of process 0 "
                                   "(default: from the cluster environment or JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --multihost: number of processes (default: detected).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --multihost: this process's id (default: detected).")


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    try:
        if _MULTIHOST.value:
            import jax

            # CPU processes exchange arrays through gloo (accelerators use their own collectives).
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            try:
                jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                                           num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
            except ValueError as e:  # no coordinator found, or an id outside [0, num_processes)
                raise sweep.SweepConfigError(f"--multihost: {e}") from None
        else:
            sweep.configure_cpu_devices(config)  # before anything starts JAX
        primary = not _MULTIHOST.value or jax.process_index() == 0  # a multi-host run: process 0 holds the lock
        with workdir_lock.hold(_WORKDIR.value, enabled=primary):
            result = sweep.run_sweep(config, _WORKDIR.value)
    except sweep.SweepConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
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


if __name__ == "__main__":
    cli.run(main)
