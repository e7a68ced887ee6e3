"""Pruning schedules at one sparsity on the same budget: one-cycle vs AGP vs one-shot (beyond the study).

  python -m experiments.schedules --config configs/study.py:runlocal --workdir runs/study
  python -m experiments.schedules --config configs/study.py:toy --workdir /tmp/ss_toy      # seconds

One sweep per schedule in config.study.schedules at config.study.schedule_level (one-shot: dense
until config.study.one_shot_at of the budget, pruned once, fine-tuned for the rest), evaluated
over config.study.seeds (mann_jax.study.schedules); writes <workdir>/schedules/ (results.json,
figures PNG + SVG, TensorBoard). Prints the table and the findings; the last line is a JSON summary.
"""

from mann_jax.study.command import run_experiment

if __name__ == "__main__":
    run_experiment("schedules")
