"""The study's Table 1 (model size and MFLOPs per frame against sparsity), recomputed from a real model.

  python -m experiments.model_size
  python -m experiments.model_size --sparsities=0,0.5,0.9 --json table1.json
  python -m experiments.model_size --workdir runs/study      # also the study report's model_size/ folder

The dense default MANN (480-512-512-363, 8 experts, seed 23456) is pruned at each level with a
global magnitude mask over the expert weights (exactly round(s·N) zeros), and counted with
:mod:`mann_jax.pruning.accounting` (its docstring gives the counting convention and why it is the
study's). Prints our figures beside the study's with relative differences, the CSR size and the
other formulations' MFLOPs as extra columns; the last line is JSON with every row. A few seconds
on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags, logging

from mann_jax import cli, workdir_lock
from mann_jax.pruning import accounting
from mann_jax.study import model_size

_SPARSITIES = flags.DEFINE_list(
    "sparsities", [str(s) for s in accounting.STUDY_SPARSITIES],
    "Sparsity levels of the expert weights, comma separated, each in [0, 1].")
_JSON = flags.DEFINE_string("json", None, "Also write the rows as JSON to this path.")
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Also write <workdir>/model_size/ (results.json, figure) for the report.")

CONVENTION = (
    "convention: size = 32 bit x non-zero values (Mb = 1e6 bit, no index overhead); MFLOPs per frame, "
    "batch 1, blend formulation: 1 FLOP per multiply-accumulate, 1 per element-wise op, blending "
    "W = sum_k w_k alpha_k costs (2K-1) per entry x density of alpha, x.W dense; gating, biases, ELU, "
    "softmax included. Extra columns: CSR (int32 indices) size; MFLOPs mixing expert outputs; "
    "MFLOPs blend with x.W over W's support only."
)


def _parse(values: list[str]) -> list[float]:
    """Sparsity levels from the flag, checked."""
    try:
        levels = [float(v) for v in values]
    except ValueError as e:
        raise app.UsageError(f"--sparsities: {e}") from e
    if not levels or any(not 0.0 <= s <= 1.0 for s in levels):
        raise app.UsageError(f"--sparsities must be numbers in [0, 1], got {values}")
    return levels


def _fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec`` (e.g. ``"8.1f"``), or a dash as wide when there is no study row."""
    return "-".rjust(len(format(0.0, spec))) if value is None else format(value, spec)


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    levels = _parse(_SPARSITIES.value)
    with workdir_lock.hold(_WORKDIR.value or ".", enabled=bool(_WORKDIR.value)):  # a study folder has one writer
        if _WORKDIR.value:
            rows = model_size.run(None, _WORKDIR.value, sparsities=levels)["rows"]
        else:
            rows = accounting.table1(levels)
    header = (f"{'sparsity':>8} | {'non-zero':>9} | {'Mb ours':>8} | {'Mb study':>8} | {'rel':>7} | "
              f"{'MFLOPs':>7} | {'study':>6} | {'rel':>7} || {'CSR Mb':>7} | {'mix':>6} | {'W supp':>6}")
    print(CONVENTION)
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.sparsity:>8.0%} | {r.nonzero:>9,d} | {r.size_mb:>8.2f} | {_fmt(r.study_size_mb, '8.1f')} | "
              f"{_fmt(r.size_rel_diff, '+7.2%')} | {r.mflops:>7.3f} | {_fmt(r.study_mflops, '6.2f')} | "
              f"{_fmt(r.mflops_rel_diff, '+7.2%')} || {r.csr_size_mb:>7.1f} | {r.mflops_mix:>6.3f} | "
              f"{r.mflops_blend_support:>6.3f}")
    diffs = [abs(d) for r in rows for d in (r.size_rel_diff, r.mflops_rel_diff) if d is not None]
    if diffs:
        print(f"largest |relative difference| to the study: {max(diffs):.2%}")
    payload = [r.as_dict() for r in rows]
    if _JSON.value:
        Path(_JSON.value).write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload))


if __name__ == "__main__":
    app.run(cli.clear_errors(main))
