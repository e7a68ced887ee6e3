"""The study's experiments (Maiorca et al., "Towards Lightweight Neural Animation"), reproduced.

One module per concept; the thin entry points are in ``experiments/`` and the settings in
``configs/study.py`` (its docstring lists the commands):

* :mod:`.models` — the trained models every experiment draws on: sweeps under
  ``<workdir>/models/<name>``, trained on first use and reused (resumed) afterwards.
* :mod:`.evaluation` — the metrics every comparison measures (scenario rollouts, losses on the
  validation and held-out test clips, held-out replays, counts from the trained masks).
* :mod:`.stats` — mean ± std over seeds and the stated tests that turn numbers into verdicts.
* :mod:`.results` — the ``results.json`` every experiment writes (tables, figures, findings) and
  saving figures as PNG + SVG.
* :mod:`.tradeoff`, :mod:`.model_size`, :mod:`.same_size`, :mod:`.ablation_experiment`,
  :mod:`.activations`, :mod:`.schedules_experiment` — the experiments, listed once in
  :mod:`.registry` (which ``make study``, ``experiments.study``, the per-experiment commands and the
  report read); :mod:`.report` gathers them into one Markdown report; :mod:`.command` — the
  command line they share.
"""
