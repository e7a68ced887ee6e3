"""Gather the study's experiments that have run into one Markdown report (mann_jax.study.report).

  python -m experiments.report --workdir runs/study                      # -> runs/study/report.md
  python -m experiments.report --workdir runs/study --out REPORT.md      # elsewhere (links adjusted)
  python -m experiments.report --workdir runs/study --publish docs/study # + results.json and PNGs, to commit

The report gives, for each of the study's three conclusions, whether our numbers support it (and
the evidence), then every experiment's tables, figures and findings; experiments not run yet are
listed with the command that runs each. Prints the report's path and the three overall verdicts.
A results.json that cannot be read is listed in the report and warned about here (status 0); a
folder where no experiment has run is an error (status 2).
"""

from __future__ import annotations

import sys

from absl import flags, logging

from mann_jax import cli
from mann_jax.study import report

_WORKDIR = flags.DEFINE_string("workdir", None, "The study's folder (each experiment in <workdir>/<experiment>/).",
                               required=True)
_OUT = flags.DEFINE_string("out", None, "Where to write the report (default <workdir>/report.md).")
_PUBLISH = flags.DEFINE_string("publish", None, "A folder to copy the report into with every results.json and PNG "
                               "figure it shows (to commit; checkpoints and events stay behind).")


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    if _PUBLISH.value and _OUT.value:
        print("error: give --out or --publish, not both (--publish writes <folder>/report.md)", file=sys.stderr)
        sys.exit(2)
    try:
        collected = report.collect(_WORKDIR.value)
        if _PUBLISH.value:
            path = report.publish(_WORKDIR.value, _PUBLISH.value)
        else:
            path = report.write_report(_WORKDIR.value, _OUT.value)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for u in collected.unreadable:
        print(f"warning: could not read {u.path}: {u.error} (left out of the report's verdicts)", file=sys.stderr)
    for f in collected.unknown_conclusions():
        print(f"warning: {f.experiment}: a finding names an unknown conclusion {f.conclusion!r} (not counted)",
              file=sys.stderr)
    print(f"report: {path}")
    ran = [r.name for r in collected.runs]
    print(f"experiments: {', '.join(ran) or 'none readable'}"
          + (f"; missing: {', '.join(collected.missing)}" if collected.missing else ""))
    for key, verdict in collected.verdicts().items():
        print(f"{key}: {verdict.summary()}")


if __name__ == "__main__":
    cli.run(main)
