"""Sparsity against motion quality (study Fig. 1), unstructured and structured pruning on one curve.

  python -m experiments.tradeoff --config configs/study.py:runlocal --workdir runs/study   # dog data, 2-core CPU
  python -m experiments.tradeoff --config configs/study.py --workdir runs/study_full       # the study's scale (GPU)

Trains (or reuses) the sweeps in <workdir>/models/{unstructured,structured}, rolls every model out
walking and turning, replays held-out clips, and writes <workdir>/tradeoff/: results.json,
{skating,contact,loss}_vs_sparsity.{png,svg}, tensorboard/. With train.init_from
(configs/study.py:pretrained) the starting network, untouched, is measured too as the dense reference;
measurements already in results.json for the same models and settings are reused, not recomputed.
"""

from mann_jax.study.command import run_experiment

if __name__ == "__main__":
    run_experiment("tradeoff")
