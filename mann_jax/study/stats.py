"""Mean ± std over seeds, and the stated tests that turn the study's claims into verdicts.

A claim is **supported** when the numbers show it at the stated significance, **contradicted**
when they show the opposite at that significance, and **inconclusive** otherwise (too few seeds,
too much spread, or no difference). The tests (scipy.stats):

* a difference of means (e.g. sparse skates less than dense): Welch's one-sided t-test over the
  per-seed values, ``alpha = 0.05``;
* a trend (e.g. skating rises with sparsity): Spearman's rank correlation over every (level,
  seed) point, one-sided ``alpha = 0.05``;
* an agreement (e.g. dense and sparse profiles alike): a per-seed similarity whose mean minus one
  standard deviation clears a stated threshold (supported), or whose mean plus one std stays below
  it (contradicted).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

ALPHA = 0.05
Verdict = Literal["supported", "contradicted", "inconclusive"]


def summary(values: Iterable[float]) -> dict[str, Any]:
    """``{"mean", "std", "n", "values"}`` (sample std, ddof = 1; 0 for one value; NaNs kept out)."""
    v = np.asarray([float(x) for x in values], np.float64)
    finite = v[np.isfinite(v)]
    n = len(finite)
    return {"mean": float(finite.mean()) if n else math.nan,
            "std": float(finite.std(ddof=1)) if n > 1 else 0.0 if n else math.nan,
            "n": n, "values": [float(x) for x in v]}


def fmt(s: dict[str, Any], spec: str = ".4f") -> str:
    """``"0.1234 ± 0.0056"`` of a :func:`summary`."""
    return f"{s['mean']:{spec}} ± {s['std']:{spec}}"


@dataclasses.dataclass(frozen=True)
class Finding:
    """One tested claim: which study conclusion it bears on, the claim, the verdict and the evidence."""

    conclusion: str | None
    claim: str
    verdict: Verdict
    evidence: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare_means(a: npt.ArrayLike, b: npt.ArrayLike, *, claim: Literal["less", "greater"]) -> tuple[Verdict, str]:
    """Is mean(a) ``claim`` than mean(b)? Welch's one-sided t-test at :data:`ALPHA` (see the module docstring)."""
    va, vb = np.asarray(a, np.float64), np.asarray(b, np.float64)
    va, vb = va[np.isfinite(va)], vb[np.isfinite(vb)]
    sa, sb = summary(va), summary(vb)
    if len(va) < 2 or len(vb) < 2:
        return "inconclusive", f"{fmt(sa)} vs {fmt(sb)} (fewer than 2 seeds: no test)"
    opposite = "greater" if claim == "less" else "less"
    with np.errstate(all="ignore"):
        p = float(stats.ttest_ind(va, vb, equal_var=False, alternative=claim).pvalue)
        q = float(stats.ttest_ind(va, vb, equal_var=False, alternative=opposite).pvalue)
    evidence = f"{fmt(sa)} vs {fmt(sb)} (n = {len(va)}, {len(vb)}; Welch one-sided p = {p:.3g})"
    if math.isfinite(p) and p < ALPHA:
        return "supported", evidence
    if math.isfinite(q) and q < ALPHA:
        return "contradicted", evidence + f"; the opposite holds (p = {q:.3g})"
    return "inconclusive", evidence


def trend(x: npt.ArrayLike, y: npt.ArrayLike, *, claim: Literal["increasing", "decreasing"]) -> tuple[Verdict, str]:
    """Does ``y`` rise (or fall) with ``x``? Spearman's rho, one-sided at :data:`ALPHA`."""
    vx, vy = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(vx) & np.isfinite(vy)
    vx, vy = vx[ok], vy[ok]
    if len(vx) < 3 or np.ptp(vx) == 0 or np.ptp(vy) == 0:
        return "inconclusive", f"{len(vx)} points, no variation to test"
    alternative = "greater" if claim == "increasing" else "less"
    res = stats.spearmanr(vx, vy, alternative=alternative)
    rho, p = float(res.statistic), float(res.pvalue)
    evidence = f"Spearman rho = {rho:+.3f} over {len(vx)} (level, seed) points, one-sided p = {p:.3g}"
    if p < ALPHA:
        return "supported", evidence
    back = stats.spearmanr(vx, vy, alternative="less" if alternative == "greater" else "greater")
    if float(back.pvalue) < ALPHA:
        return "contradicted", evidence + f"; the opposite trend holds (p = {float(back.pvalue):.3g})"
    return "inconclusive", evidence


def agreement(values: Iterable[float], *, threshold: float, what: str) -> tuple[Verdict, str]:
    """Do the per-seed similarities ``values`` clear ``threshold``? mean − std > threshold: supported;
    mean + std < threshold: contradicted; else inconclusive."""
    s = summary(values)
    evidence = f"{what} {fmt(s, '.3f')} over {s['n']} seed(s) (threshold {threshold})"
    if s["n"] == 0:
        return "inconclusive", evidence
    if s["mean"] - s["std"] > threshold:
        return "supported", evidence
    if s["mean"] + s["std"] < threshold:
        return "contradicted", evidence
    return "inconclusive", evidence
