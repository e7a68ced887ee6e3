"""Model size and FLOPs against sparsity (study Table 1), from :mod:`mann_jax.pruning.accounting`.

The dense study MANN (8 experts x 480-512-512-363, seed 23456) is pruned at each level with a
global magnitude mask over the expert weights and counted; our figures sit beside the study's
with relative differences. The finding's tolerance (2 %) is stated in its claim; the counting
convention is derived in :mod:`mann_jax.pruning.accounting`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mann_jax.pruning import accounting
from mann_jax.study.results import save_figure, table, write_results
from mann_jax.study.stats import Finding

TOLERANCE = 0.02


def run(config: ml_collections.ConfigDict, workdir: str | Path, *,
        sparsities: Sequence[float] = accounting.STUDY_SPARSITIES) -> dict[str, Any]:
    """Compute Table 1, write ``<workdir>/model_size/`` and return the rows and findings.

    ``config`` is unused (Table 1 counts the study's own model, whatever the config trains); it keeps
    the signature every registered study experiment has.
    """
    del config
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = time.perf_counter()
    out_dir = Path(workdir) / "model_size"
    rows = accounting.table1(list(sparsities))
    pct = np.array([r.sparsity for r in rows]) * 100
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    panels = ((axes[0], [r.size_mb for r in rows], [r.study_size_mb for r in rows], "size (Mb)"),
              (axes[1], [r.mflops for r in rows], [r.study_mflops for r in rows], "MFLOPs / frame"))
    for ax, ours, theirs, label in panels:
        ax.plot(pct, ours, "o-", label="ours (accounting)")
        have = [(p, t) for p, t in zip(pct, theirs) if t is not None]
        if have:
            ax.plot(*zip(*have), "x--", label="study Table 1")
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Model size and FLOPs per frame (8 experts x 512, float32)")
    fig.tight_layout()
    figures = [save_figure(fig, out_dir, "size_and_flops")]

    def rel(v: float | None) -> str:
        return "–" if v is None else f"{v:+.2%}"

    body = [[f"{r.sparsity:.0%}", r.nonzero, round(r.size_mb, 2), r.study_size_mb, rel(r.size_rel_diff),
             round(r.mflops, 3), r.study_mflops, rel(r.mflops_rel_diff), round(r.csr_size_mb, 1),
             round(r.mflops_mix, 3)] for r in rows]
    columns = ["sparsity", "non-zero", "Mb (ours)", "Mb (study)", "rel", "MFLOPs (ours)", "MFLOPs (study)", "rel",
               "CSR Mb", "MFLOPs (mix)"]
    diffs = [abs(d) for r in rows for d in (r.size_rel_diff, r.mflops_rel_diff) if d is not None]
    findings = []
    if diffs:
        worst = max(diffs)
        findings.append(Finding(None, f"Our size and FLOP accounting reproduces every figure of the study's Table 1 "
                                f"within {TOLERANCE:.0%}.", "supported" if worst <= TOLERANCE else "contradicted",
                                f"largest relative difference {worst:.2%} over {len(diffs)} figures"))
    seconds = time.perf_counter() - start
    payload = write_results(out_dir, experiment="model_size", title="Model size and FLOPs (study Table 1)",
                  scale={"model": "8 experts x 480-512-512-363 (the study's), seed 23456", "convention":
                         "32 bit per non-zero value, Mb = 1e6 bit; MFLOPs per frame, batch 1, blend formulation"},
                  tables=[table("Table 1: ours beside the study's", columns, body)], figures=figures,
                  findings=findings, data={"rows": [r.as_dict() for r in rows]}, seconds=seconds,
                  scalars={int(round(r.sparsity * 100)): {"size_mb": r.size_mb, "mflops": r.mflops} for r in rows})
    return {**payload, "rows": rows}


def headline(res: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the command prints as its last (JSON) line, from :func:`run`'s results."""
    return {"rows": [{"sparsity": r["sparsity"], "size_mb": r["size_mb"], "mflops": r["mflops"]}
                     for r in res["data"]["rows"]]}
