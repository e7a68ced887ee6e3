"""The study's report: overall verdicts, unreadable results, missing experiments, tables, figures, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mann_jax.study import registry, report  # noqa: E402
from mann_jax.study.results import CONCLUSIONS, RESULTS_FILE, save_figure, table, write_results  # noqa: E402
from mann_jax.study.stats import Finding  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCALE = {"data": "dog", "experts": 8, "hidden": [128, 128], "epochs": 2, "batch_size": 32, "seeds": [23456, 1, 2],
         "pruning": {"schedule": "one_cycle", "scope": "global", "update_every": 10, "end": 0.8}}


def make_experiment(workdir: Path, name: str, findings: list[Finding], *, figures: tuple[str, ...] = ("curve",),
                    tables: list[dict] | None = None) -> Path:
    """Write ``<workdir>/<name>/results.json`` with tiny figures, as an experiment would."""
    out = workdir / name
    names = []
    for stem in figures:
        fig, ax = plt.subplots(figsize=(1.5, 1.5))
        ax.plot([0, 1], [0, 1])
        names.append(save_figure(fig, out, stem))
    if tables is None:
        tables = [table("Skating by level", ["level", "skating", "note"],
                        [[0.0, 0.123456, "dense"], [0.9, 12.3456789, None]])]
    write_results(out, experiment=name, title=f"The {name} experiment", scale=SCALE, tables=tables,
                  figures=names, findings=findings, data={"x": [1, 2]}, seconds=754.2)
    return out / RESULTS_FILE


def finding(conclusion: str | None, verdict: str, claim: str = "a claim") -> Finding:
    return Finding(conclusion, claim, verdict, f"evidence for {claim} ({verdict})")


def section(text: str, start: str, end: str = "\n## ") -> str:
    """The part of ``text`` from the line starting ``start`` to the next level-2 heading."""
    i = text.index(start)
    j = text.find(end, i + len(start))
    return text[i:] if j < 0 else text[i:j]


def test_overall_verdict_rule():
    assert report.overall_verdict(["supported", "supported"]) == "supported"
    assert report.overall_verdict(["contradicted", "inconclusive"]) == "contradicted"
    assert report.overall_verdict(["supported", "contradicted"]) == "not shown"
    assert report.overall_verdict(["supported", "inconclusive"]) == "not shown"
    assert report.overall_verdict(["inconclusive"]) == "not shown"
    assert report.overall_verdict([]) == "not shown"
    assert report.overall_verdict(["supported", "maybe"]) == "not shown"  # an unknown verdict never supports


def test_verdicts_supported_contradicted_mixed_and_none(tmp_path):
    make_experiment(tmp_path, "tradeoff", [finding("sparsity_costs_quality", "supported", "skating rises"),
                                           finding("sparsity_costs_quality", "supported", "error rises"),
                                           finding(None, "inconclusive", "structured pruning is worse")])
    make_experiment(tmp_path, "same_size", [finding("pruned_beats_small_dense", "contradicted", "less skating"),
                                            finding("pruned_beats_small_dense", "inconclusive", "not frozen")])
    collected = report.collect(tmp_path)
    v = collected.verdicts()
    assert list(v) == list(CONCLUSIONS)
    assert v["sparsity_costs_quality"].verdict == "supported"
    assert v["sparsity_costs_quality"].counts == {"supported": 2, "contradicted": 0, "inconclusive": 0, "other": 0}
    assert v["pruned_beats_small_dense"].verdict == "contradicted"
    assert v["experts_keep_roles"].verdict == "not shown" and not v["experts_keep_roles"].findings

    text = report.build_report(tmp_path)
    concl = section(text, "## The study's conclusions")
    assert text.index("## The study's conclusions") < text.index("## tradeoff")  # the conclusions come first
    assert "### 1. `sparsity_costs_quality`: supported" in concl
    assert "### 2. `pruned_beats_small_dense`: contradicted" in concl
    assert "### 3. `experts_keep_roles`: not shown" in concl
    assert "2 findings: 2 supported, 0 contradicted, 0 inconclusive" in concl
    assert "2 findings: 0 supported, 1 contradicted, 1 inconclusive" in concl
    assert "no findings" in concl and "do not show it either way" in concl
    # what to run for the conclusion without findings
    third = section(concl, "### 3.", "\n### ")
    assert "Not counted yet: `ablation` (not run): `python -m experiments.ablation" in third
    assert "`activations` (not run)" in third
    assert "Not counted yet" not in section(concl, "### 1.", "\n### ")
    assert "**supported** only if at least one finding bears on it" in concl  # the rule is stated
    # evidence: claim, verdict, evidence, experiment
    assert "- **supported**: skating rises. Evidence: evidence for skating rises (supported) " \
           "(experiment [tradeoff](#tradeoff))." in concl
    assert "[same_size](#same_size)" in concl
    # findings beyond the study: in their experiment's section, not in the conclusions
    assert "structured pruning is worse" not in concl
    assert "[beyond the study] *inconclusive*: structured pruning is worse." in section(text, "## tradeoff")


def test_mixed_findings_across_experiments_are_not_shown(tmp_path):
    make_experiment(tmp_path, "ablation", [finding("experts_keep_roles", "supported", "same motions affected")])
    make_experiment(tmp_path, "activations", [finding("experts_keep_roles", "contradicted", "same profiles")])
    v = report.collect(tmp_path).verdicts()["experts_keep_roles"]
    assert v.verdict == "not shown"
    assert v.summary() == "not shown (2 findings: 1 supported, 1 contradicted, 0 inconclusive)"
    text = report.build_report(tmp_path)
    assert "### 3. `experts_keep_roles`: not shown" in text
    assert "(experiment [ablation](#ablation))" in text and "(experiment [activations](#activations))" in text


def test_missing_experiments_listed_with_commands(tmp_path):
    make_experiment(tmp_path, "tradeoff", [finding("sparsity_costs_quality", "supported")])
    (tmp_path / "ablation").mkdir()  # started, never finished
    collected = report.collect(tmp_path)
    assert collected.missing == ("model_size", "same_size", "ablation", "activations", "schedules")
    header = report.build_report(tmp_path).split("## The study's conclusions")[0]
    assert "Experiments that ran: 1 of the study's 6; 5 missing" in header
    workdir = str(tmp_path)
    for name in collected.missing:
        command = registry.command(name).replace("runs/study", workdir)
        assert f"`{command}`" in header, name
    assert "python -m experiments.same_size --config configs/study.py:runlocal --workdir " + workdir in header
    assert "did it finish?" in header.split("`ablation`")[1].split("\n")[0]
    assert "`tradeoff`" not in header.split("**Missing**")[1]
    # the commands of EXPERIMENTS are the ones configs/study.py documents
    from configs import study
    documented = " ".join(study.__doc__.split())
    for name in report.EXPERIMENTS:
        assert registry.command(name) in documented, name


def test_missing_commands_repeat_the_config_the_study_ran_with(tmp_path):
    make_experiment(tmp_path, "tradeoff", [finding("sparsity_costs_quality", "supported")])
    registry.record_config(tmp_path, "configs/study.py:pretrained")
    header = report.build_report(tmp_path).split("## The study's conclusions")[0]
    assert f"python -m experiments.same_size --config configs/study.py:pretrained --workdir {tmp_path}" in header
    assert ":runlocal" not in header
    (tmp_path / registry.CONFIG_RECORD).write_text("{not json")  # unreadable: the default, not a crash
    assert f"--config {registry.DEFAULT_CONFIG} --workdir {tmp_path}" in report.build_report(tmp_path)


def test_trained_model_sweeps_listed_with_their_total_training_time(tmp_path):
    make_experiment(tmp_path, "tradeoff", [finding("sparsity_costs_quality", "supported")])
    rows = [{"name": f"level_{i}"} for i in range(3)]
    for name, extra in [("unstructured", {"train_seconds": 1234.5}), ("old", {}),
                        ("partial", {"train_seconds": 61.0, "steps": 30})]:
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / RESULTS_FILE).write_text(json.dumps(
            {"steps": 62, "total_steps": 62, "device_kind": "cpu", "rows": rows, **extra}))
    (tmp_path / "models" / "broken").mkdir()
    (tmp_path / "models" / "broken" / RESULTS_FILE).write_text("{not json")
    header = report.build_report(tmp_path).split("## The study's conclusions")[0]
    lines = {line.split("|")[1].strip(): line for line in header.splitlines() if line.startswith("| `")}
    assert "20 min 34 s" in lines["`unstructured`"] and "| 3 | 62 |" in lines["`unstructured`"]
    assert "not recorded" in lines["`old`"]  # trained before the time was recorded: not shown as 0
    assert "30 of 62" in lines["`partial`"] and "1 min 01 s" in lines["`partial`"]
    assert "`broken`" not in lines
    assert "includes training only where that run trained the models" in header


def test_tables_rendered_with_formatted_numbers(tmp_path):
    make_experiment(tmp_path, "tradeoff", [finding("sparsity_costs_quality", "supported")],
                    tables=[table("Skating by level", ["level", "skating | mm", "params", "note"],
                                  [[0.0, 0.123456, 1234567.0, "dense"], [0.9, 12.3456789, 42, None]])])
    text = section(report.build_report(tmp_path), "## tradeoff")
    assert "**Skating by level**" in text
    assert "| level | skating \\| mm | params | note |" in text
    assert "| ---: | ---: | ---: | --- |" in text
    assert "| 0 | 0.1235 | 1234567 | dense |" in text
    assert "| 0.9 | 12.35 | 42 | – |" in text
    assert "- Model: 8 experts, hidden 128 × 128" in text
    assert "- Training: 2 epochs, batch 32" in text
    assert "- Seeds: 23456, 1, 2 (3 seeds)" in text
    assert "- Data: dog" in text
    assert "- Wall time: 12 min 34 s" in text


def test_fmt_number():
    assert report.fmt_number(None) == "–"
    assert report.fmt_number(0.000123456) == "0.0001235"
    assert report.fmt_number(3.0) == "3"
    assert report.fmt_number(2.5e-9) == "2.5e-09"
    assert report.fmt_number(123456.7) == "123457"
    assert report.fmt_number(7) == "7"
    assert report.fmt_number(True) == "yes"
    assert report.fmt_number([1, 2]) == "[1, 2]"


def test_figure_links_point_to_existing_files(tmp_path):
    make_experiment(tmp_path, "tradeoff", [finding("sparsity_costs_quality", "supported")],
                    figures=("skating_vs_sparsity", "error_vs_sparsity"))
    make_experiment(tmp_path, "same_size", [], figures=("turning",))

    def check(text: str, base: Path) -> int:
        targets = re.findall(r"\]\(([^)#]+)\)", text)
        for t in targets:
            assert (base / urllib.parse.unquote(t)).is_file(), t
        return len(targets)

    text = report.build_report(tmp_path)
    assert "![skating vs sparsity](tradeoff/skating_vs_sparsity.png)" in text
    assert "(tradeoff/skating_vs_sparsity.svg)" in text
    assert "![turning](same_size/turning.png)" in text
    assert check(text, tmp_path) == 2 * 3 + 2  # PNG + SVG per figure, results.json per experiment

    path = report.write_report(tmp_path)
    assert path == tmp_path / "report.md"
    stamp = re.compile(r"- Generated: .*")
    assert stamp.sub("", path.read_text()) == stamp.sub("", text)
    assert not list(tmp_path.glob("*.tmp"))
    elsewhere = report.write_report(tmp_path, tmp_path / "out" / "deep" / "REPORT.md")
    out_text = elsewhere.read_text()
    assert "](../../tradeoff/skating_vs_sparsity.png)" in out_text
    check(out_text, elsewhere.parent)

    (tmp_path / "same_size" / "turning.png").unlink()  # a figure deleted after the run: said, not linked
    text = report.build_report(tmp_path)
    assert "Figure `turning.png` is listed in results.json but missing" in text
    assert "same_size/turning.png)" not in text


def test_publish_copies_results_and_pngs_and_links_the_copies(tmp_path):
    study = tmp_path / "study"
    make_experiment(study, "tradeoff", [finding("sparsity_costs_quality", "supported")],
                    figures=("skating_vs_sparsity", "loss_vs_sparsity"))
    assert (study / "tradeoff" / "tensorboard").is_dir()  # events: left behind
    before = sorted(p.relative_to(study) for p in study.rglob("*"))
    path = report.publish(study, tmp_path / "docs" / "study")
    dest = path.parent
    assert path == tmp_path / "docs" / "study" / "report.md"
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == [
        Path(p) for p in ("report.md", "tradeoff", "tradeoff/loss_vs_sparsity.png", "tradeoff/results.json",
                          "tradeoff/skating_vs_sparsity.png")]
    text = path.read_text()
    targets = re.findall(r"\]\(([^)#]+)\)", text)
    assert sorted(targets) == ["tradeoff/loss_vs_sparsity.png", "tradeoff/results.json",
                               "tradeoff/skating_vs_sparsity.png"]  # the copies; no SVG link
    assert (dest / "tradeoff" / "results.json").read_bytes() == (study / "tradeoff" / "results.json").read_bytes()
    assert "**supported**" in text
    assert sorted(p.relative_to(study) for p in study.rglob("*")) == before  # the study folder untouched
    with pytest.raises(report.ReportWriteError, match="into the study's own folder"):
        report.publish(study, study)


def test_unreadable_results_and_unknown_conclusions_are_reported(tmp_path):
    make_experiment(tmp_path, "tradeoff", [finding("sparsity_costs_quality", "supported", "skating rises")])
    (tmp_path / "same_size").mkdir()
    (tmp_path / "same_size" / "results.json").write_text('{"experiment": "same_size", "tables": [')  # truncated
    (tmp_path / "schedules").mkdir()
    (tmp_path / "schedules" / "results.json").write_text('["not", "an", "object"]')
    path = make_experiment(tmp_path, "ablation", [finding("experts_keep_roles", "supported", "roles kept")])
    results = json.loads(path.read_text())
    results["findings"].append({"conclusion": "made_up", "claim": "experts sing", "verdict": "supported",
                                "evidence": "none"})
    results["findings"].append({"conclusion": "experts_keep_roles", "claim": "odd one", "verdict": "probably",
                                "evidence": "?"})
    path.write_text(json.dumps(results))

    collected = report.collect(tmp_path)
    assert [r.name for r in collected.runs] == ["tradeoff", "ablation"]
    assert [u.name for u in collected.unreadable] == ["same_size", "schedules"]
    assert "not valid JSON" in collected.unreadable[0].error
    assert "same_size" not in collected.missing and "schedules" not in collected.missing
    v = collected.verdicts()
    assert v["experts_keep_roles"].verdict == "not shown"  # the unknown verdict keeps it from "supported"
    assert v["experts_keep_roles"].counts["other"] == 1
    assert [f.claim for f in collected.unknown_conclusions()] == ["experts sing"]

    text = report.build_report(tmp_path)
    header = text.split("## The study's conclusions")[0]
    assert "**Could not read**" in header
    assert f"`same_size`: `{tmp_path / 'same_size' / 'results.json'}`: not valid JSON" in header
    assert "`schedules`:" in header and "expected a JSON object" in header
    assert "Re-run: `python -m experiments.same_size" in header
    assert "## tradeoff" in text and "## ablation" in text  # the others still render
    assert "## same_size" not in text and "## schedules" not in text
    assert "### 1. `sparsity_costs_quality`: supported" in text
    assert "Not counted yet: `same_size` (could not be read)" in section(text, "### 2.", "\n### ")
    assert "**Findings naming an unknown conclusion**" in text and "unknown conclusion `made_up`" in text
    assert "**Findings with an unknown verdict**" in text and "'probably'" in text


def test_other_experiment_folders_are_included(tmp_path):
    make_experiment(tmp_path, "tradeoff", [finding("sparsity_costs_quality", "supported")])
    make_experiment(tmp_path, "extra_probe", [finding(None, "supported", "an extra check")])
    (tmp_path / "models" / "dense").mkdir(parents=True)  # trained models: not an experiment
    collected = report.collect(tmp_path)
    assert [r.name for r in collected.runs] == ["tradeoff", "extra_probe"]
    text = report.build_report(tmp_path)
    assert "Experiments that ran: 1 of the study's 6 (+ 1 other)" in text
    assert "## extra_probe" in text and "## models" not in text


def test_empty_workdir_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        report.build_report(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "tradeoff").mkdir()  # an experiment that never finished: still nothing to report
    with pytest.raises(FileNotFoundError, match="nothing to report"):
        report.write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()
    with pytest.raises(FileNotFoundError, match="no such folder"):
        report.collect(tmp_path / "absent")


def test_unwritable_report_path_is_an_error_and_leaves_nothing_behind(tmp_path):
    make_experiment(tmp_path, "tradeoff", [finding("sparsity_costs_quality", "supported")])
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(report.ReportWriteError, match=f"{re.escape(str(folder))}: cannot write the report: it is a "
                                                      "folder"):
        report.write_report(tmp_path, folder)
    assert not (tmp_path / "out.tmp").exists() and not any(folder.iterdir())
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    with pytest.raises(FileNotFoundError, match="afile/report.md: cannot write the report: .*afile is not a folder"):
        report.write_report(tmp_path, afile / "report.md")  # a FileNotFoundError: the command's one-line error
    assert afile.read_text() == "keep me"
    earlier = report.write_report(tmp_path)
    text = earlier.read_text()
    (tmp_path / "report.md.tmp").mkdir()  # the temporary file cannot be written: the earlier report stays
    with pytest.raises(report.ReportWriteError, match="report.md: cannot write the report"):
        report.write_report(tmp_path)
    assert earlier.read_text() == text


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    make_experiment(tmp_path, "tradeoff", [finding("sparsity_costs_quality", "supported")])
    make_experiment(tmp_path, "same_size", [finding("pruned_beats_small_dense", "contradicted")])
    (tmp_path / "ablation").mkdir()
    (tmp_path / "ablation" / "results.json").write_text("{oops")
    cmd = [sys.executable, "-m", "experiments.report", f"--workdir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"report: {tmp_path / 'report.md'}" in proc.stdout
    assert "sparsity_costs_quality: supported (1 finding: 1 supported" in proc.stdout
    assert "pruned_beats_small_dense: contradicted" in proc.stdout
    assert "experts_keep_roles: not shown (no findings)" in proc.stdout
    assert "warning: could not read" in proc.stderr and "ablation" in proc.stderr
    assert (tmp_path / "report.md").is_file()

    folder = tmp_path / "out"
    folder.mkdir()
    proc = subprocess.run(cmd + [f"--out={folder}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {folder}: cannot write the report"), proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out.tmp").exists()
    proc = subprocess.run(cmd + [f"--out={folder}/r.md", f"--publish={folder}"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: give --out or --publish, not both"), proc.stderr
    proc = subprocess.run(cmd + [f"--publish={folder}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and f"report: {folder / 'report.md'}" in proc.stdout, proc.stderr
    assert (folder / "tradeoff" / "results.json").is_file()

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "experiments.report", f"--workdir={empty}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and str(empty) in proc.stderr and "Traceback" not in proc.stderr


def test_registry_is_the_one_list():
    """Every registered experiment has run/headline; the report's tables and the conclusions come from it."""
    assert list(report.EXPERIMENTS) == list(registry.EXPERIMENTS)
    for name, exp in registry.EXPERIMENTS.items():
        module = exp.load()
        assert callable(module.run) and callable(module.headline), name
        assert set(exp.conclusions) <= set(CONCLUSIONS), name
    assert report.CONCLUSION_SOURCES == {"sparsity_costs_quality": ("tradeoff",),
                                         "pruned_beats_small_dense": ("same_size",),
                                         "experts_keep_roles": ("ablation", "activations")}
    assert set(report.CONCLUSION_SOURCES) == set(CONCLUSIONS)
    assert registry.command("model_size") == "python -m experiments.model_size --workdir runs/study"
    makefile = (REPO / "Makefile").read_text()
    assert "-m experiments.study --config $(STUDY_CONFIG) --workdir $(STUDY_DIR)" in makefile


@pytest.mark.slow
def test_study_command_runs_the_registry_then_the_report(tmp_path):
    cmd = [sys.executable, "-m", "experiments.study", "--config", "configs/study.py:toy", "--only=model_size",
           f"--workdir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(next(line for line in lines if line.startswith("{")))
    assert summary["experiment"] == "model_size" and summary["verdicts"] == ["supported"]
    assert f"report: {tmp_path / 'report.md'}" in lines and (tmp_path / "report.md").is_file()
    assert registry.recorded_config(tmp_path) == "configs/study.py:toy"
    bad = subprocess.run(cmd[:-2] + ["--only=nope", f"--workdir={tmp_path}"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --only: unknown experiment(s) ['nope']")
