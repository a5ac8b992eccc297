"""The paper's tables on the miniature, from `dvc exp show --json`: each row's mIoU as the
mean ± spread over world seeds, beside the paper's number, and each claim's verdict.

Spread is half the range over seeds (the row is mean ± spread, every seed inside). A claim
"A beats B" is reproduced only when A's mean exceeds B's by more than the two spreads
together, so that the seeds' intervals do not overlap; the per-seed signs are shown too.
Beside that strict verdict, the paired one: a one-sided paired t-test on the per-seed
differences (pipeline/report/paired.py), since the world seed moves every row of a seed
together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.report.ablations import TABLES, Claim, Table
from pipeline.report.paired import ALPHA, paired_t, paired_verdict

SPLITS = ("world_full", "world_things")  # the world's evaluation splits
PARTS = ("all", "seen", "unseen")
OPEN = "open"  # a row's Open mIoU over all classes (pipeline/segment/open_metrics.py)
MIN_SEEDS = 3  # a claim is judged only over at least this many world seeds (issue 16)


def run_name(experiment: str, seed: int) -> str:
    return f"{experiment}-s{seed}"


def seed_of(name: str) -> int | None:
    """The seed of a `run_name`, None for an experiment named otherwise."""
    _, sep, seed = name.rpartition("-s")
    return int(seed) if sep and seed.isdigit() else None


def _metrics_of(entry: dict) -> dict:
    """{metrics file: its data} of one `dvc exp show --json` revision."""
    data = entry.get("data") or {}
    return {path: (v or {}).get("data", {}) for path, v in (data.get("metrics") or {}).items()}


def experiments_in(exp_show: list) -> dict[str, dict]:
    """{experiment name: {metrics file: data}} of every named experiment in a
    `dvc exp show --json` listing (all baselines)."""
    out = {}
    for baseline in exp_show:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name"):
                    out[rev["name"]] = _metrics_of(rev)
    return out


def trimmed(metrics: dict) -> dict:
    """What the report reads of a run's metrics: each evaluation split's variants' mIoU
    (detectron2 <= 0.6) over all, seen and unseen classes, their Open mIoU over all classes
    where the evaluation wrote it (and which similarity it used), and the mining metrics."""
    out = {}
    for split in SPLITS:
        report = metrics.get(f"metrics/eval/{split}.json")
        if not report:
            continue
        out[split] = {v: {"all": s.get("miou_d2_legacy"),
                          "seen": (s.get("seen") or {}).get("miou_d2_legacy"),
                          "unseen": (s.get("unseen") or {}).get("miou_d2_legacy"),
                          **({OPEN: s["open"].get("miou_d2_legacy")} if "open" in s else {})}
                      for v, s in report.items() if isinstance(s, dict) and "miou" in s}
        if "open_similarity" in report:
            out[split]["open_similarity"] = report["open_similarity"].get("similarity")
    mining = metrics.get("metrics/mining.json")
    if mining:
        out["mining"] = {"pairs": mining.get("pairs"), "unique_nouns": mining.get("unique_nouns"),
                         "precision": (mining.get("precision_iou50") or {}).get("precision")}
    return out


@dataclass(frozen=True)
class Stat:
    values: tuple[float, ...]  # one per seed, in seed order

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def spread(self) -> float:
        return float(np.ptp(self.values) / 2)

    def cell(self, scale: float = 100.0) -> str:
        return f"{self.mean * scale:.1f} ± {self.spread * scale:.1f}"


def row_stat(runs: dict[str, dict], experiment: str, variant: str, split: str, part: str,
             seeds: list[int]) -> Stat | None:
    """The row's values over the seeds, or None when a seed's run or value is missing (or
    there is no seed)."""
    if not seeds:
        return None
    values = []
    for seed in seeds:
        v = runs.get(run_name(experiment, seed), {}).get(split, {}).get(variant, {}).get(part)
        if v is None:
            return None
        values.append(v)
    return Stat(tuple(values))


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    split: str
    difference: float | None  # mean(better) - mean(worse)
    spread: float | None  # spread(better) + spread(worse)
    seeds_agreeing: int  # seeds where better > worse
    seeds: int
    paired_t: float | None = None  # the paired t statistic of better − worse per seed
    paired_p: float | None = None  # its one-sided p-value (A > B)

    @property
    def reproduced(self) -> bool | None:
        if self.difference is None or self.seeds < MIN_SEEDS:
            return None
        return self.difference > self.spread

    @property
    def verdict(self) -> str:
        if self.difference is None:
            return "not run"
        if self.seeds < MIN_SEEDS:
            return f"not judged ({self.seeds} of {MIN_SEEDS} seeds)"
        if self.reproduced:
            return "reproduced"
        return "opposite" if -self.difference > self.spread else "within spread"

    @property
    def paired(self) -> str:
        """The paired rule's verdict (pipeline/report/paired.py), judged as `verdict` is
        only over at least MIN_SEEDS seeds."""
        if self.paired_p is None:
            return "not run"
        if self.seeds < MIN_SEEDS:
            return f"not judged ({self.seeds} of {MIN_SEEDS} seeds)"
        return paired_verdict(self.paired_t, self.paired_p)


def claim_verdict(table: Table, claim: Claim, runs: dict, split: str, seeds: list[int],
                  part: str = "all") -> Verdict:
    rows = {r.label: r for r in table.rows}
    a, b = (row_stat(runs, rows[k].experiment, rows[k].variant, split, part, seeds)
            for k in (claim.better, claim.worse))
    if a is None or b is None:
        return Verdict(claim, split, None, None, 0, len(seeds))
    agree = sum(x > y for x, y in zip(a.values, b.values))
    t, p = paired_t(a.values, b.values) if len(seeds) > 1 else (None, None)
    return Verdict(claim, split, a.mean - b.mean, a.spread + b.spread, agree, len(seeds), t, p)


def all_verdicts(runs: dict, seeds: list[int]) -> list[tuple[Table, Verdict]]:
    return [(t, claim_verdict(t, c, runs, split, seeds))
            for t in TABLES for c in t.claims for split in SPLITS]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.1f}"


def p_text(p: float | None) -> str:
    """A p-value as the report and the findings print it."""
    return "–" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


def table_markdown(table: Table, runs: dict, seeds: list[int]) -> str:
    head = ["row", "paper (A-150)"] + [f"{s} {p}" for s in SPLITS for p in PARTS]
    lines = [f"### {table.title}", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for r in table.rows:
        cells = [r.label, "–" if r.paper is None else f"{r.paper:.1f}"]
        for split in SPLITS:
            for part in PARTS:
                s = row_stat(runs, r.experiment, r.variant, split, part, seeds)
                cells.append("not run" if s is None else s.cell())
        lines.append("| " + " | ".join(cells) + " |")
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines)


def open_claims_markdown(runs: dict, seeds: list[int]) -> str:
    """Each claim check whose runs recorded Open mIoU on every seed, judged on it beside
    its mIoU verdicts from the same runs, and which change; or a line saying how many runs
    recorded Open mIoU when no check has it on every seed."""
    lines = ["| table | claim | split | mIoU A − B | verdict | paired | Open mIoU A − B | "
             "verdict | paired | changed |", "|---|---|---|---|---|---|---|---|---|---|"]
    changed = judged = 0
    for table, v in all_verdicts(runs, seeds):
        o = claim_verdict(table, v.claim, runs, v.split, seeds, OPEN)
        if o.difference is None:
            continue
        judged += 1
        moved = (o.verdict, o.paired) != (v.verdict, v.paired)
        changed += moved
        lines.append(f"| {table.key} | {v.claim.better} > {v.claim.worse} | {v.split} | "
                     f"{_pct(v.difference)} | {v.verdict} | {v.paired} | "
                     f"{_pct(o.difference)} | {o.verdict} | {o.paired} | "
                     f"{'**yes**' if moved else 'no'} |")
    recorded = sum(any(OPEN in (r.get(split, {}).get("ensemble") or {}) for split in SPLITS)
                   for r in runs.values())
    if not judged:
        return (f"No claim can be judged on Open mIoU yet: {recorded} of {len(runs)} runs "
                "recorded it (evaluations before issue 32 did not write it; runs made with "
                "`python -m reports.paper_tables run` now do).")
    head = (f"{judged} claim checks have Open mIoU on every seed; **{changed} change verdict "
            f"under it**. Similarity: eval.open_similarity of each run "
            f"({', '.join(sorted(_similarities(runs)))}).")
    return "\n".join([head, ""] + lines)


def _similarities(runs: dict) -> set[str]:
    return {r.get(split, {}).get("open_similarity") for r in runs.values() for split in SPLITS
            if r.get(split, {}).get("open_similarity")}


def claims_markdown(runs: dict, seeds: list[int]) -> str:
    lines = ["| table | claim (paper: A beats B) | paper A − B | split | miniature A − B | "
             "spread | seeds A > B | verdict | paired p | paired verdict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for table, v in all_verdicts(runs, seeds):
        rows = {r.label: r for r in table.rows}
        pa, pb = rows[v.claim.better].paper, rows[v.claim.worse].paper
        paper = "–" if pa is None or pb is None else f"{pa - pb:+.1f}"
        lines.append(f"| {table.key} | {v.claim.better} > {v.claim.worse} | {paper} | {v.split} "
                     f"| {_pct(v.difference)} | "
                     f"{'–' if v.spread is None else f'{v.spread * 100:.1f}'} | "
                     f"{v.seeds_agreeing}/{v.seeds} | {v.verdict} | {p_text(v.paired_p)} | "
                     f"{v.paired} |")
    return "\n".join(lines)


def open_section(runs: dict, seeds: list[int], open_runs: dict | None,
                 open_about: str) -> str:
    """The claims under Open mIoU: from `open_runs` (runs made once evaluations wrote Open
    mIoU; `open_about` says where they came from) over their own seeds, else from the
    report's runs."""
    if not open_runs:
        return open_claims_markdown(runs, seeds)
    own = sorted({s for s in map(seed_of, open_runs) if s is not None})
    return (f"From {open_about}: mIoU and Open mIoU of the same runs, so a changed verdict "
            f"is the metric's doing.\n\n" + open_claims_markdown(open_runs, own))


def report_markdown(runs: dict, seeds: list[int], header: str = "",
                    open_runs: dict | None = None, open_about: str = "") -> str:
    """The whole report: the claims table, the claims under Open mIoU (from `open_runs`
    where given, `open_about` saying where they came from), then each table with the
    paper's numbers."""
    verdicts = [v for _, v in all_verdicts(runs, seeds)]
    done = sum(v.reproduced is not None for v in verdicts)
    ok = sum(bool(v.reproduced) for v in verdicts)
    paired_ok = sum(v.paired == "reproduced" for v in verdicts)
    paired_opposite = sum(v.paired == "opposite" for v in verdicts)
    parts = [header.strip(), "",
             f"Seeds (data.seed): {', '.join(map(str, seeds))}. mIoU (%, detectron2 <= 0.6 "
             "formula) as mean ± spread (half the range over seeds). A claim is reproduced "
             "when the miniature's difference exceeds the two rows' spreads together, over "
             f"at least {MIN_SEEDS} seeds. Paired verdict: the same seed moves every row, so "
             "each claim is also judged on its per-seed differences A − B, by a one-sided "
             f"paired t-test at level {ALPHA} (reproduced: A > B; opposite: B > A; each "
             "check on its own, no correction for the number of checks).",
             "", f"**{ok} of {done} judged claim checks reproduced** ({len(verdicts)} checks in "
             f"all: each claim on {' and '.join(SPLITS)}); by the paired rule "
             f"**{paired_ok} of {done}**, {paired_opposite} significantly opposite.",
             "", "## Claims", "",
             claims_markdown(runs, seeds), "", "## The claims under Open mIoU", "",
             "Open mIoU (Zhou et al. 2023) gives a wrong label partial credit by the "
             "similarity of the two class names (README, \"Open mIoU\"). A claim that "
             "holds under mIoU but not under Open mIoU rests on mistakes between "
             "near-synonyms.", "", open_section(runs, seeds, open_runs, open_about), "",
             "## Tables", ""]
    parts += [table_markdown(t, runs, seeds) + "\n" for t in TABLES]
    return "\n".join(parts).strip() + "\n"


def report_png(runs: dict, seeds: list[int]) -> bytes:
    """One panel per table: the miniature's ensemble (or variant) mIoU on each split, mean
    with the spread as error bars, and the paper's number as a marker (its own axis)."""
    from pipeline.training.plots import figure_png, plt

    fig, axes = plt.subplots(len(TABLES), 1, figsize=(9, 2.6 * len(TABLES)), squeeze=False)
    width = 0.8 / len(SPLITS)
    for ax, table in zip(axes[:, 0], TABLES):
        x = np.arange(len(table.rows))
        for j, split in enumerate(SPLITS):
            stats = [row_stat(runs, r.experiment, r.variant, split, "all", seeds)
                     for r in table.rows]
            ax.bar(x + (j - (len(SPLITS) - 1) / 2) * width,
                   [s.mean * 100 if s else 0 for s in stats], width,
                   yerr=[s.spread * 100 if s else 0 for s in stats], capsize=3, label=split)
        paper = ax.twinx()
        paper.plot(x, [np.nan if r.paper is None else r.paper for r in table.rows], "kD",
                   label="paper (A-150, right axis)")
        paper.set_ylabel("paper mIoU")
        ax.set_xticks(x, [r.label for r in table.rows], fontsize=7, rotation=12)
        ax.set_ylabel("miniature mIoU")
        ax.set_title(table.title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if table is TABLES[0]:
            ax.legend(fontsize=7, loc="upper left")
            paper.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return figure_png(fig, dpi=80)
