"""Expert activations, dense vs sparse (the study's Fig. 4): gating over time, profiles, entropy.

  python -m experiments.activations --config configs/study.py:runlocal --workdir runs/study
  python -m experiments.activations --config configs/study.py:toy --workdir /tmp/study_toy     # seconds

Uses (and trains on first use) the trade-off sweep's dense and ``config.study.sparse_level`` models
in ``<workdir>/models/``; writes ``<workdir>/activations/`` (results.json, figures as PNG + SVG,
TensorBoard with the gating over time). Prints the per-action table and the findings; the last
line is a JSON summary.
"""

from mann_jax.study.command import run_experiment

if __name__ == "__main__":
    run_experiment("activations")
