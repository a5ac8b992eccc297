"""The findings page of the paper-tables report, with every number taken from the runs.

reports/paper_tables_findings.template.md is prose written by hand; each number in it is an
expression `{{op args}}` that `fill_findings` replaces with its value computed from
runs.json, so no number can be mistyped or go stale when runs are added. Rows are
`experiment` (its ensemble mIoU) or `experiment/variant` (a variant of
metrics/eval/<split>.json); mIoU values are in points (%). The seeds are the report's
complete seeds unless the expression ends with `@3,4`.

    {{diff A B split}}    mean over seeds of A − B, e.g. +0.1
    {{wins A B split}}    seeds where A > B, e.g. 2/3
    {{p A B split}}       one-sided paired t-test p-value of A > B (pipeline/report/paired.py)
    {{verdict A B split}} the report's two verdicts on "A beats B", e.g. strict: within
                          spread, paired: reproduced (pipeline/report/summary.py)
    {{mean A split}}      mean of A, e.g. 43.0
    {{values A split}}    A on each seed, e.g. 43.0, 35.1, 36.7
    {{mining E key}}      experiment E's mining metric (pairs, precision, unique_nouns):
                          its range over seeds, e.g. 8,786-8,821 or 0.54-0.61
    {{checks strict}}     claim checks reproduced by the spread rule; `paired`: by the
                          paired rule; `opposite`: significantly opposite; `all`: judged
    {{seeds}}             the seeds, e.g. 0, 1, 2, 3, 4; {{nseeds}}: how many
    {{points path key.key}}  a committed JSON file's value in points (×100, 1 decimal)
    {{csv path column row}}  a committed CSV's cell (row 0 the first after the header, -1
                          the last), e.g. a loss of metrics/live/prompt_tune/plots/metrics/loss.tsv
                          (a .tsv is read tab-separated)
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from pipeline.report.ablations import Claim, Row, Table
from pipeline.report.paired import paired_t
from pipeline.report.summary import all_verdicts, claim_verdict, p_text, run_name

EXPRESSION = re.compile(r"\{\{\s*(.*?)\s*\}\}")


class FindingsError(ValueError):
    pass


def _values(runs: dict, row: str, split: str, seeds: list[int]) -> list[float]:
    experiment, _, variant = row.partition("/")
    out = []
    for seed in seeds:
        v = (runs.get(run_name(experiment, seed), {}).get(split, {})
             .get(variant or "ensemble", {}).get("all"))
        if v is None:
            raise FindingsError(f"no {split} value of {row} on seed {seed} in the runs")
        out.append(v)
    return out


def _mining(runs: dict, experiment: str, key: str, seeds: list[int]) -> str:
    vals = [runs.get(run_name(experiment, s), {}).get("mining", {}).get(key) for s in seeds]
    if any(v is None for v in vals):
        raise FindingsError(f"no mining {key} of {experiment} on every seed of {seeds}")
    fmt = "{:,.0f}" if key != "precision" else "{:.2f}"
    lo, hi = fmt.format(min(vals)), fmt.format(max(vals))
    return lo if lo == hi else f"{lo}-{hi}"


def evaluate(expression: str, runs: dict, seeds: list[int], root: Path) -> str:
    """The text of one `{{...}}` expression (files relative to `root`)."""
    words = expression.split()
    if words and words[-1].startswith("@"):
        seeds = [int(s) for s in words.pop()[1:].split(",")]
    op, args = (words[0], words[1:]) if words else ("", [])
    try:
        if op in ("diff", "wins", "p"):
            a, b = (np.array(_values(runs, row, args[2], seeds)) for row in args[:2])
            if op == "diff":
                return f"{(a - b).mean() * 100:+.1f}"
            if op == "wins":
                return f"{int((a > b).sum())}/{len(seeds)}"
            return p_text(paired_t(a.tolist(), b.tolist())[1])
        if op == "verdict":
            rows = tuple(Row(r, *r.partition("/")[::2]) if "/" in r else Row(r, r)
                         for r in args[:2])
            for r in rows:
                _values(runs, f"{r.experiment}/{r.variant}", args[2], seeds)  # names a gap
            v = claim_verdict(Table("findings", "", rows), Claim(args[0], args[1]), runs,
                              args[2], seeds)
            return f"strict: {v.verdict}, paired: {v.paired}"
        if op == "mean":
            return f"{np.mean(_values(runs, args[0], args[1], seeds)) * 100:.1f}"
        if op == "values":
            return ", ".join(f"{v * 100:.1f}" for v in _values(runs, args[0], args[1], seeds))
        if op == "mining":
            return _mining(runs, args[0], args[1], seeds)
        if op == "checks":
            verdicts = [v for _, v in all_verdicts(runs, seeds)]
            count = {"strict": lambda v: v.verdict == "reproduced",
                     "paired": lambda v: v.paired == "reproduced",
                     "opposite": lambda v: v.paired == "opposite",
                     "all": lambda v: v.reproduced is not None}[args[0]]
            return str(sum(map(count, verdicts)))
        if op == "points":
            value = json.loads((root / args[0]).read_text())
            for key in args[1].split("."):
                value = value[key]
            return f"{value * 100:.1f}"
        if op == "csv":  # a .tsv (DVCLive's step logs) is read tab-separated
            with open(root / args[0], newline="") as f:
                rows = csv.DictReader(f, delimiter="\t" if args[0].endswith(".tsv") else ",")
                return list(rows)[int(args[2])][args[1]]
        if op == "seeds":
            return ", ".join(map(str, seeds))
        if op == "nseeds":
            return str(len(seeds))
    except (IndexError, KeyError, OSError) as e:
        raise FindingsError(f"{{{{{expression}}}}}: wrong arguments ({e!r}); see "
                            "pipeline/report/findings.py") from e
    raise FindingsError(f"{{{{{expression}}}}}: unknown expression; see "
                        "pipeline/report/findings.py")


def fill_findings(template: str, runs: dict, seeds: list[int], root: Path) -> str:
    """The template with every `{{...}}` replaced by its value over `seeds`."""
    return EXPRESSION.sub(lambda m: evaluate(m.group(1), runs, seeds, root), template)
