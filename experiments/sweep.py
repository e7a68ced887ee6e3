"""Train one MANN per sparsity level (and seed) in one process: the framework's main job.

  python -m experiments.sweep --config configs/sweep.py:runlocal --workdir runs/sweep      # make sweep
  python -m experiments.sweep --config configs/sweep.py --workdir runs/sweep_full
  python -m experiments.sweep --config configs/sweep.py --config.sweep.levels='(0.0,0.5,0.9)' \\
      --config.sweep.seeds='(1,2,3)' --workdir runs/sweep_seeds

Resumes from --workdir when it holds checkpoints of the same setup. Writes results.csv/.json,
val_loss_vs_sparsity.png and tensorboard/ (one run per model plus "combined"):
  tensorboard --logdir runs/sweep/tensorboard
Multi-host: run the same command on every host with --multihost (jax.distributed.initialize()).
"""

from __future__ import annotations

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mann_jax import sweep
from mann_jax.cli import clear_errors

_CONFIG = config_flags.DEFINE_config_file("config", "configs/sweep.py", "Sweep config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, TensorBoard, table, plot).", required=True)
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (one process per host).")


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    try:
        if _MULTIHOST.value:
            import jax

            jax.distributed.initialize()
        else:
            sweep.configure_cpu_devices(config)  # before anything starts JAX
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
    app.run(clear_errors(main))
