"""Train a MANN (resuming from --workdir when it holds checkpoints of the same setup).

  python -m experiments.train --config configs/default.py:runlocal --workdir runs/demo
  python -m experiments.train --config configs/dog.py --workdir runs/dog          # the original setup
  python -m experiments.train --config configs/dog.py --config.train.epochs=10 --workdir runs/dog10

TensorBoard:  tensorboard --logdir runs/
"""

from __future__ import annotations

import json
import math

from absl import flags, logging
from ml_collections import config_flags

from mann_jax import cli, workdir_lock
from mann_jax.train import train

_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py", "Experiment config.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, TensorBoard, summary).", required=True)


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    with workdir_lock.hold(_WORKDIR.value):  # one writer per workdir
        result = train(_CONFIG.value, _WORKDIR.value)
    ratio = result.val_loss / result.val_mean_predictor_loss
    if math.isfinite(result.train_loss):
        trained = f"train loss {result.train_loss:.4f}"
    else:  # a finished run resumed: no step ran, so no training window to report
        trained = f"no step ran; train loss {result.train_eval_loss:.4f} (eval mode, first 8192 rows)"
    print(f"done: {result.steps} steps in {result.seconds:.1f} s ({result.samples_per_second:.0f} samples/s); "
          f"{trained}, val loss {result.val_loss:.4f} "
          f"({ratio:.3f} x the mean predictor's {result.val_mean_predictor_loss:.4f})")
    print(json.dumps({"train_loss": result.train_loss, "train_eval_loss": result.train_eval_loss,
                      "val_loss": result.val_loss, "val_mean_predictor_loss": result.val_mean_predictor_loss,
                      "steps": result.steps}))


if __name__ == "__main__":
    cli.run(main)
