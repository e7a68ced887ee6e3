"""The study's report: every experiment that ran, gathered into one Markdown file.

  python -m experiments.report --workdir runs/study      # -> runs/study/report.md

:func:`collect` reads ``<workdir>/<experiment>/results.json`` of each experiment that ran
(:data:`~mann_jax.study.registry.EXPERIMENTS`, then any other folder holding a ``results.json``); :func:`build_report`
renders them: a header (what ran, what is missing and the command that runs it, what could not
be read), then the study's three conclusions (:data:`~mann_jax.study.results.CONCLUSIONS`) with
our overall verdict on each and the findings behind it, then one section per experiment (scale,
wall time, tables, figures, findings). :func:`write_report` writes it atomically; :func:`publish`
copies it with its results and PNG figures into a folder fit to commit (``docs/``).

A conclusion's overall verdict (:func:`overall_verdict`, stated in the report as
:data:`VERDICT_RULE`) is never more than the findings show: **supported** only when at least one
finding bears on it and every one is supported; **contradicted** when at least one is
contradicted and none supported; **not shown** otherwise. A results.json that cannot be read, or
a finding naming an unknown conclusion, is reported, never fatal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import re
import shlex
import shutil
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from mann_jax.export.compact import unwritable_reason
from mann_jax.study import registry
from mann_jax.study.results import CONCLUSIONS, RESULTS_FILE, read_results
from mann_jax.study.stats import ALPHA

#: The study's experiments in report order (the registry: title, module, conclusions, command).
EXPERIMENTS = registry.EXPERIMENTS

#: The experiments whose findings bear on each conclusion (only to say what to run when none has).
CONCLUSION_SOURCES: dict[str, tuple[str, ...]] = registry.conclusion_sources()

REPORT_FILE = "report.md"

Overall = Literal["supported", "contradicted", "not shown"]
FINDING_VERDICTS = ("supported", "contradicted", "inconclusive")

VERDICT_RULE = (
    "A conclusion is **supported** only if at least one finding bears on it and all its findings are "
    "supported; **contradicted** if at least one finding is contradicted and none is supported; "
    "**not shown** otherwise (findings mixed or inconclusive, or no experiment bearing on it has run). "
    f"Each finding is a stated test on our numbers (`mann_jax/study/stats.py`): a difference of means "
    f"(Welch, one-sided, alpha = {ALPHA}), a trend (Spearman, one-sided, alpha = {ALPHA}) or an "
    "agreement (per-seed similarity, mean ± std against a stated threshold); *inconclusive* when "
    "the numbers show neither the claim nor its opposite.")


class ReportWriteError(FileNotFoundError):
    """The report cannot be written where asked (a folder, a read-only or impossible place); names the path.

    A :class:`FileNotFoundError`, like a workdir with nothing to report, so that the command reports it the
    same way: one ``error:`` line and status 2.
    """


@dataclasses.dataclass(frozen=True)
class Evidence:
    """One finding of one experiment (``verdict`` as written in its results.json)."""

    experiment: str
    conclusion: str | None
    claim: str
    verdict: str
    evidence: str


@dataclasses.dataclass(frozen=True)
class Run:
    """An experiment that ran: its folder (the name) and its results.json, checked."""

    name: str
    folder: Path
    results: dict[str, Any]

    @property
    def findings(self) -> list[Evidence]:
        """Its findings, tagged with the experiment."""
        return [Evidence(self.name, f.get("conclusion"), str(f.get("claim", "")), str(f.get("verdict", "")),
                         str(f.get("evidence", ""))) for f in self.results["findings"]]


@dataclasses.dataclass(frozen=True)
class Unreadable:
    """A results.json that could not be read, and why."""

    name: str
    path: Path
    error: str


@dataclasses.dataclass(frozen=True)
class ConclusionVerdict:
    """Our overall verdict on one of the study's conclusions, with the findings behind it."""

    key: str
    statement: str
    verdict: Overall
    findings: tuple[Evidence, ...]

    @property
    def counts(self) -> dict[str, int]:
        """Findings by verdict (``other``: a verdict outside supported/contradicted/inconclusive)."""
        counts = {v: 0 for v in (*FINDING_VERDICTS, "other")}
        for f in self.findings:
            counts[f.verdict if f.verdict in FINDING_VERDICTS else "other"] += 1
        return counts

    def summary(self) -> str:
        """E.g. ``"supported (3 findings: 3 supported, 0 contradicted, 0 inconclusive)"``."""
        return f"{self.verdict} ({_counts_text(self.counts)})"


@dataclasses.dataclass(frozen=True)
class TrainedSweep:
    """A sweep of trained models under ``<workdir>/models/<name>`` (its ``results.json``)."""

    name: str
    models: int
    steps: int | None
    total_steps: int | None
    device: str
    train_seconds: float | None


@dataclasses.dataclass(frozen=True)
class Collected:
    """What a study workdir holds: the experiments that ran, those that could not be read, those missing,
    and the trained model sweeps they share."""

    workdir: Path
    runs: tuple[Run, ...]
    unreadable: tuple[Unreadable, ...]
    missing: tuple[str, ...]
    sweeps: tuple[TrainedSweep, ...] = ()

    @property
    def findings(self) -> list[Evidence]:
        """Every finding of every experiment that ran, in report order."""
        return [f for run in self.runs for f in run.findings]

    def verdicts(self) -> dict[str, ConclusionVerdict]:
        """Our overall verdict on each of the study's conclusions (:data:`CONCLUSIONS` order)."""
        out = {}
        for key, statement in CONCLUSIONS.items():
            findings = tuple(f for f in self.findings if f.conclusion == key)
            out[key] = ConclusionVerdict(key, statement, overall_verdict([f.verdict for f in findings]), findings)
        return out

    def unknown_conclusions(self) -> list[Evidence]:
        """Findings naming a conclusion the study does not have (reported, not counted)."""
        return [f for f in self.findings if f.conclusion is not None and f.conclusion not in CONCLUSIONS]


def overall_verdict(verdicts: Iterable[str]) -> Overall:
    """The overall verdict from the findings' verdicts (:data:`VERDICT_RULE`)."""
    verdicts = list(verdicts)
    if verdicts and all(v == "supported" for v in verdicts):
        return "supported"
    if "contradicted" in verdicts and "supported" not in verdicts:
        return "contradicted"
    return "not shown"


def _check_results(results: Any) -> dict[str, Any]:
    """``results`` when it has the shape of a results.json; ``ValueError`` naming the problem otherwise."""
    if not isinstance(results, dict):
        raise ValueError(f"expected a JSON object, got {type(results).__name__}")
    for key, kind in (("tables", list), ("figures", list), ("findings", list), ("notes", list)):
        if not isinstance(results.get(key, []), kind):
            raise ValueError(f"{key!r} is not a list")
    if results.get("scale") is not None and not isinstance(results["scale"], dict):
        raise ValueError("'scale' is not an object")
    for i, t in enumerate(results.get("tables", [])):
        if not (isinstance(t, dict) and isinstance(t.get("columns"), list) and isinstance(t.get("rows"), list)
                and all(isinstance(r, list) for r in t["rows"])):
            raise ValueError(f"tables[{i}] is not a {{title, columns, rows}} table")
    for i, f in enumerate(results.get("findings", [])):
        if not (isinstance(f, dict) and isinstance(f.get("claim"), str) and "verdict" in f):
            raise ValueError(f"findings[{i}] is not a {{conclusion, claim, verdict, evidence}} finding")
        if f.get("conclusion") is not None and not isinstance(f["conclusion"], str):
            raise ValueError(f"findings[{i}]: 'conclusion' is not a string or null")
    for i, name in enumerate(results.get("figures", [])):
        if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"figures[{i}] is not a file name inside the experiment's folder")
    return {**results, "tables": results.get("tables", []), "figures": results.get("figures", []),
            "findings": results.get("findings", [])}


def collect(workdir: str | os.PathLike) -> Collected:
    """Read the results of every experiment under ``workdir``.

    Raises:
      FileNotFoundError: ``workdir`` is not a folder, or no experiment has written results there.
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        what = "not a folder" if workdir.exists() else "no such folder"
        raise FileNotFoundError(f"{workdir}: {what} (run the study's experiments into it first; "
                                "see configs/study.py)")
    others = sorted(p.name for p in workdir.iterdir()
                    if p.name not in EXPERIMENTS and p.is_dir() and (p / RESULTS_FILE).exists())
    runs, unreadable, missing = [], [], []
    for name in [*EXPERIMENTS, *others]:
        folder = workdir / name
        if not (folder / RESULTS_FILE).exists():
            missing.append(name)
            continue
        try:
            runs.append(Run(name, folder, _check_results(read_results(folder))))
        except (OSError, ValueError) as e:  # unreadable, not JSON, or not shaped like a results.json
            message = str(e)
            prefix = f"{folder / RESULTS_FILE}: "
            unreadable.append(Unreadable(name, folder / RESULTS_FILE,
                                         message[len(prefix):] if message.startswith(prefix) else message))
    if not runs and not unreadable:
        raise FileNotFoundError(f"{workdir}: no experiment has written a {RESULTS_FILE} here, nothing to report "
                                "(run the study's experiments first; see configs/study.py)")
    return Collected(workdir, tuple(runs), tuple(unreadable), tuple(missing), tuple(_trained_sweeps(workdir)))


def _trained_sweeps(workdir: Path) -> list[TrainedSweep]:
    """The model sweeps under ``<workdir>/models`` whose table can be read (others are left out)."""
    out = []
    for table in sorted((workdir / "models").glob(f"*/{RESULTS_FILE}")):
        try:
            d = json.loads(table.read_text())
            seconds = d.get("train_seconds")
            out.append(TrainedSweep(table.parent.name, len(d["rows"]), d.get("steps"), d.get("total_steps"),
                                    str(d.get("device_kind", "")),
                                    float(seconds) if isinstance(seconds, (int, float)) else None))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a sweep that never finished a table: its experiment reports the problem
    return out


# ----------------------------------------------------------------------------------------- rendering


def fmt_number(value: Any) -> str:
    """A table cell: floats to 4 significant digits (large ones as integers), None as ``–``."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if 1e4 <= abs(value) < 1e15:
            return f"{value:.0f}"
        return f"{value:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "))


def _inline(text: Any) -> str:
    """Text on one line (a list item or a table cell)."""
    return " ".join(str(text).split())


def _sentence(text: Any) -> str:
    """Text on one line without its final period (the report adds its own punctuation)."""
    return _inline(text).rstrip(".")


def _anchor(name: str) -> str:
    """The anchor GitHub gives the heading ``## <name>``."""
    return "#" + re.sub(r"[^\w\- ]", "", name.lower()).replace(" ", "-")


def _cell(value: Any) -> str:
    return _inline(fmt_number(value)).replace("|", "\\|")


def markdown_table(columns: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (numeric columns right-aligned; short rows padded, long rows kept whole)."""
    width = max([len(columns), *(len(r) for r in rows)])
    columns = [*columns, *[""] * (width - len(columns))]

    def numeric(j: int) -> bool:
        cells = [r[j] for r in rows if j < len(r) and r[j] is not None]
        return bool(cells) and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in cells)

    lines = ["| " + " | ".join(_cell(c) if c is not None else "" for c in columns) + " |",
             "| " + " | ".join("---:" if numeric(j) else "---" for j in range(width)) + " |"]
    for r in rows:
        cells = [_cell(c) for c in r] + [""] * (width - len(r))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(round(seconds % 60)):02d} s"
    return f"{int(seconds // 3600)} h {int(round(seconds % 3600 / 60)):02d} min"


def _scale_items(scale: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(label, text)`` of a results.json ``scale`` (data, model, training, seeds, pruning, the rest)."""
    if not scale:
        return []
    s = dict(scale)
    items = []
    if "data" in s:
        items.append(("data", fmt_number(s.pop("data"))))
    if "experts" in s or "hidden" in s:
        experts, hidden = s.pop("experts", None), s.pop("hidden", None)
        parts = []
        if experts is not None:
            parts.append(f"{fmt_number(experts)} experts")
        if hidden is not None:
            parts.append("hidden " + (" × ".join(fmt_number(h) for h in hidden) if isinstance(hidden, list)
                                      else fmt_number(hidden)))
        items.append(("model", ", ".join(parts)))
    if "epochs" in s or "batch_size" in s:
        epochs, batch = s.pop("epochs", None), s.pop("batch_size", None)
        parts = ([f"{fmt_number(epochs)} epoch{'s' if epochs != 1 else ''}"] if epochs is not None else []) + \
                ([f"batch {fmt_number(batch)}"] if batch is not None else [])
        items.append(("training", ", ".join(parts)))
    if "seeds" in s:
        seeds = s.pop("seeds")
        if isinstance(seeds, list):
            items.append(("seeds", f"{', '.join(fmt_number(x) for x in seeds)} ({len(seeds)} seed"
                                   f"{'s' if len(seeds) != 1 else ''})"))
        else:
            items.append(("seeds", fmt_number(seeds)))
    if isinstance(s.get("pruning"), dict):
        p = s.pop("pruning")
        items.append(("pruning", ", ".join(f"{k} {fmt_number(v)}" for k, v in p.items())))
    items.extend((str(k), fmt_number(v)) for k, v in s.items())
    return items


def _scale_short(scale: Mapping[str, Any] | None) -> str:
    items = dict(_scale_items(scale))
    return "; ".join(items[k] for k in ("data", "model", "training", "seeds") if k in items) or "–"


def _link(target: Path, relative_to: Path) -> str:
    """A Markdown link target: ``target`` relative to the report's folder, URL-quoted."""
    rel = os.path.relpath(target, relative_to)
    return urllib.parse.quote(Path(rel).as_posix())


def _command(name: str, workdir: Path) -> str:
    folder = os.fspath(workdir)
    return registry.command(name, folder if folder == registry.DEFAULT_WORKDIR else shlex.quote(folder),
                            config=shlex.quote(registry.recorded_config(workdir)))


def _counts_text(counts: Mapping[str, int]) -> str:
    n = sum(counts.values())
    if n == 0:
        return "no findings"
    text = (f"{n} finding{'s' if n != 1 else ''}: {counts['supported']} supported, "
            f"{counts['contradicted']} contradicted, {counts['inconclusive']} inconclusive")
    return text + (f", {counts['other']} with an unknown verdict" if counts.get("other") else "")


def _verdict_word(verdict: str) -> str:
    return f"**{verdict}**" if verdict in ("supported", "contradicted") else f"*{_inline(verdict) or '(none)'}*"


def _conclusion_label(key: str | None) -> str:
    if key is None:
        return "beyond the study"
    return f"`{key}`" if key in CONCLUSIONS else f"unknown conclusion `{_inline(key)}`"


def _header(c: Collected, generated: str) -> list[str]:
    ran = [r.name for r in c.runs]
    known = [n for n in ran if n in EXPERIMENTS]
    lines = ["# Towards Lightweight Neural Animation: our reproduction", "",
             "Maiorca et al., *Towards Lightweight Neural Animation: Exploration of Neural Network Pruning in "
             "Mixture of Experts-based Animation Models*, reproduced with mann_jax: for each of the study's "
             "three conclusions, whether our numbers support it and the evidence; then every experiment that "
             "ran, with its tables, figures and findings.", "",
             f"- Generated: {generated}",
             f"- Study folder: `{c.workdir}`",
             f"- Experiments that ran: {len(known)} of the study's {len(EXPERIMENTS)}"
             + (f" (+ {len(ran) - len(known)} other)" if len(ran) > len(known) else "")
             + (f"; {len(c.unreadable)} could not be read" if c.unreadable else "")
             + (f"; {len(c.missing)} missing" if c.missing else ""), ""]
    if c.runs:
        lines += ["| Experiment | Title | Scale | Wall time |", "| --- | --- | --- | ---: |"]
        for r in c.runs:
            lines.append(f"| [{r.name}]({_anchor(r.name)}) | {_cell(r.results.get('title', ''))} | "
                         f"{_cell(_scale_short(r.results.get('scale')))} | {_duration(r.results.get('seconds'))} |")
        lines.append("")
        lines += ["An experiment's wall time is that of its last run: it includes training only where that "
                  "run trained the models (they are trained once, then reused).", ""]
    if c.sweeps:
        lines += ["Trained models (`models/`; training wall time summed over every run that trained them):", "",
                  "| Models | Count | Steps | Device | Training |", "| --- | ---: | ---: | --- | ---: |"]
        for sw in c.sweeps:
            steps = "?" if sw.steps is None else f"{sw.steps}" + (
                "" if sw.total_steps in (None, sw.steps) else f" of {sw.total_steps}")
            lines.append(f"| `{_inline(sw.name)}` | {sw.models} | {steps} | {_cell(sw.device)} | "
                         f"{'not recorded' if sw.train_seconds is None else _duration(sw.train_seconds)} |")
        lines.append("")
    if c.unreadable:
        lines += ["**Could not read** (these experiments are left out of the verdicts below; re-run them):", ""]
        for u in c.unreadable:
            rerun = f" Re-run: `{_command(u.name, c.workdir)}`" if u.name in EXPERIMENTS else ""
            lines.append(f"- `{u.name}`: `{u.path}`: {_inline(u.error)}.{rerun}")
        lines.append("")
    if c.missing:
        lines += ["**Missing** (not run yet; the command that runs each):", ""]
        for name in c.missing:
            partial = " (its folder exists but holds no results.json: did it finish?)" \
                if (c.workdir / name).is_dir() else ""
            lines.append(f"- `{name}`: {EXPERIMENTS[name].title}{partial}: `{_command(name, c.workdir)}`")
        lines.append("")
    return lines


def _conclusions(c: Collected) -> list[str]:
    verdicts = c.verdicts()
    lines = ["## The study's conclusions", "", VERDICT_RULE, "",
             "| Conclusion | Our verdict | Findings |", "| --- | --- | --- |"]
    for v in verdicts.values():
        lines.append(f"| `{v.key}` | {_verdict_word(v.verdict)} | {_counts_text(v.counts)} |")
    lines.append("")
    for i, v in enumerate(verdicts.values(), 1):
        lines += [f"### {i}. `{v.key}`: {v.verdict}", "", f"> {v.statement}", "",
                  f"Our verdict: {_verdict_word(v.verdict)} ({_counts_text(v.counts)}).", ""]
        if not v.findings:
            lines += ["No finding bears on it: our numbers do not show it either way.", ""]
        for f in v.findings:
            lines.append(f"- {_verdict_word(f.verdict)}: {_sentence(f.claim)}. "
                         f"Evidence: {_sentence(f.evidence) or '–'} "
                         f"(experiment [{f.experiment}]({_anchor(f.experiment)})).")
        lines.append("")
        unreadable = {u.name for u in c.unreadable}
        uncounted = [s for s in CONCLUSION_SOURCES.get(v.key, ()) if s in c.missing or s in unreadable]
        if uncounted:
            lines += ["Not counted yet: " + "; ".join(
                f"`{s}` ({'could not be read' if s in unreadable else 'not run'}): `{_command(s, c.workdir)}`"
                for s in uncounted) + ".", ""]
    unknown = c.unknown_conclusions()
    if unknown:
        lines += ["**Findings naming an unknown conclusion** (not counted in any verdict above):", ""]
        for f in unknown:
            lines.append(f"- {_conclusion_label(f.conclusion)} ({f.experiment}): {_verdict_word(f.verdict)}: "
                         f"{_sentence(f.claim)}. Evidence: {_sentence(f.evidence) or '–'}.")
        lines.append("")
    odd = [f for f in c.findings if f.verdict not in FINDING_VERDICTS]
    if odd:
        lines += ["**Findings with an unknown verdict** (never counted as supported):", ""]
        lines += [f"- {f.experiment}: {_inline(f.claim)}: verdict {_inline(f.verdict) or '(none)'!r}" for f in odd]
        lines.append("")
    return lines


def _experiment(run: Run, relative_to: Path) -> list[str]:
    res = run.results
    title = _inline(res.get("title") or (EXPERIMENTS[run.name].title if run.name in EXPERIMENTS else ""))
    lines = [f"## {run.name}", "", f"**{title}**" if title else "", ""]
    if res.get("experiment") not in (None, run.name):
        lines += [f"(results.json names the experiment `{_inline(res['experiment'])}`; its folder is "
                  f"`{run.name}`.)", ""]
    lines += [f"- {label.capitalize()}: {_inline(text)}" for label, text in _scale_items(res.get("scale"))]
    lines += [f"- Wall time: {_duration(res.get('seconds'))}",
              f"- Every number: [results.json]({_link(run.folder / RESULTS_FILE, relative_to)})", ""]
    for note in res.get("notes", []):
        lines += [f"**Note.** {_inline(note)}", ""]
    for t in res["tables"]:
        if t.get("title"):
            lines += [f"**{_inline(t['title'])}**", ""]
        lines += [markdown_table(t["columns"], t["rows"]) if t["columns"] or t["rows"] else "(empty table)", ""]
    for name in res["figures"]:
        png = run.folder / name
        stem = Path(name).stem
        if not png.is_file():
            lines += [f"*Figure `{name}` is listed in results.json but missing from `{run.folder}`.*", ""]
            continue
        lines.append(f"![{stem.replace('_', ' ')}]({_link(png, relative_to)})")
        svg = png.with_suffix(".svg")
        if svg.is_file():
            lines.append(f"[{stem}.svg (vector)]({_link(svg, relative_to)})")
        lines.append("")
    if res["findings"]:
        lines += ["Findings:", ""]
        for f in run.findings:
            lines.append(f"- [{_conclusion_label(f.conclusion)}] {_verdict_word(f.verdict)}: {_sentence(f.claim)}. "
                         f"Evidence: {_sentence(f.evidence) or '–'}.")
        lines.append("")
    else:
        lines += ["Findings: none.", ""]
    return lines


def render(collected: Collected, *, relative_to: str | os.PathLike | None = None,
           generated: str | None = None) -> str:
    """The Markdown report of ``collected``; links relative to ``relative_to`` (default: the workdir)."""
    base = Path(relative_to) if relative_to is not None else collected.workdir
    generated = generated or datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = _header(collected, generated) + _conclusions(collected)
    for run in collected.runs:
        lines += _experiment(run, base)
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def build_report(workdir: str | os.PathLike, *, relative_to: str | os.PathLike | None = None) -> str:
    """The Markdown report of the study in ``workdir`` (figure links relative to ``relative_to``,
    default ``workdir``).

    Raises:
      FileNotFoundError: no experiment has written results in ``workdir``.
    """
    return render(collect(workdir), relative_to=relative_to)


def write_report(workdir: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Write the report to ``path`` (default ``<workdir>/report.md``) atomically; return the path.

    Raises:
      FileNotFoundError: no experiment has written results in ``workdir``.
      ReportWriteError: ``path`` cannot be written (nothing is left behind; an earlier report stays as it was).
    """
    path = Path(path) if path is not None else Path(workdir) / REPORT_FILE
    if path.is_dir():
        raise ReportWriteError(f"{path}: cannot write the report: it is a folder (give a file name, "
                               f"e.g. {path / REPORT_FILE})")
    _write_atomically(path, build_report(workdir, relative_to=path.parent))
    return path


def publish(workdir: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy what the report shows (each experiment's results.json and PNG figures) into ``dest`` and write
    ``dest/report.md`` linking the copies; return its path.

    Makes a study fit to commit: checkpoints, TensorBoard events and the SVG twins stay in ``workdir``.
    Files published earlier into ``dest`` are overwritten, never deleted.

    Raises:
      FileNotFoundError: no experiment has written results in ``workdir``.
      ReportWriteError: ``dest`` cannot be written.
    """
    collected, dest = collect(workdir), Path(dest)
    if dest.resolve() == collected.workdir.resolve():
        raise ReportWriteError(f"{dest}: cannot publish the report into the study's own folder (its report.md "
                               "is written there anyway; give another folder)")
    runs = []
    try:
        for run in collected.runs:
            folder = dest / run.name
            folder.mkdir(parents=True, exist_ok=True)
            for name in [RESULTS_FILE, *run.results["figures"]]:
                if (run.folder / name).is_file():
                    shutil.copy2(run.folder / name, folder / name)
            runs.append(dataclasses.replace(run, folder=folder))
    except OSError as e:
        raise ReportWriteError(f"{dest}: cannot publish the report: {unwritable_reason(dest, e)}") from None
    path = dest / REPORT_FILE
    _write_atomically(path, render(dataclasses.replace(collected, runs=tuple(runs)), relative_to=dest))
    return path


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file: an earlier file stays whole if writing fails."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ReportWriteError(f"{path}: cannot write the report: {unwritable_reason(path, e)}") from None
