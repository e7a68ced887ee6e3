"""Same-size comparison (study Figs. 2-3): dense smaller MANNs vs the base MANN pruned to as many non-zeros.

  python -m experiments.same_size --config configs/study.py:runlocal --workdir runs/study
  python -m experiments.same_size --config configs/study.py:toy --workdir /tmp/ss_toy      # seconds

Trains (or reuses) the dense models of hidden H·f for f in config.study.same_size_fractions and
the base model pruned to exactly their parameter counts (mann_jax.study.same_size), evaluates
walking skating, frozen-while-turning, validation/test loss and held-out replay error over
config.study.seeds, and writes <workdir>/same_size/ (results.json, figures PNG + SVG, TensorBoard,
and side-by-side turning videos when config.study.video). Prints the table and the findings; the
last line is a JSON summary.
"""

from mann_jax.study.command import run_experiment

if __name__ == "__main__":
    run_experiment("same_size")
