"""The report of `make gpu-check`: each stage's time, the GPU run's headline metrics beside
the committed CPU run's (metrics/) with the CPU's cross-seed spread
(reports/paper_tables/runs.json, the default graph on seeds 0-2), the GPU tests' outcome and
the heavy-stage benchmark table, as one Markdown page (and the same facts as JSON)."""

from __future__ import annotations

import json
from pathlib import Path

SPREAD_VARIANTS = ("maskformer", "clip", "ensemble")


def _get(tree, *keys):
    for k in keys:
        if not isinstance(tree, dict) or k not in tree:
            return None
        tree = tree[k]
    return tree if isinstance(tree, (int, float)) and not isinstance(tree, bool) else None


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def headline_metrics(metrics_dir: Path, datasets: list[str]) -> dict[str, float]:
    """The numbers a reader compares between two runs of the default graph, by name
    (absent where a file or key is missing)."""
    m = Path(metrics_dir)
    base, props = _read(m / "base_clip.json"), _read(m / "proposals.json")
    mining, adapt = _read(m / "mining.json"), _read(m / "adaptation.json")
    out = {
        "base_clip final loss": _get(base, "final_loss"),
        "base_clip zero-shot, whole image": _get(base, "zero_shot", "whole_image", "all"),
        "base_clip zero-shot, masked crop": _get(base, "zero_shot", "masked_crop_mean", "all"),
        "proposals recall (train)": _get(props, "train", "all", "recall"),
        "mining pairs": _get(mining, "pairs"),
        "mining unique nouns": _get(mining, "unique_nouns"),
        "mining precision": _get(mining, "precision_iou50", "precision"),
    }
    for split, rows in (adapt.get("splits") or {}).items():
        for row in adapt.get("rows", []):
            out[f"region top-1 {split}, {row}"] = _get(rows, row, "all")
    for ds in datasets:
        report = _read(m / "eval" / f"{ds}.json")
        for v in SPREAD_VARIANTS:
            out[f"mIoU {ds}, {v}"] = _get(report, v, "miou_d2_legacy")
    return {k: v for k, v in out.items() if v is not None}


def seed_spreads(runs_json: Path, experiment: str = "default") -> dict[str, float]:
    """max - min over the seeds of `experiment` in the paper-tables runs, per mIoU metric
    named as in headline_metrics."""
    runs = _read(runs_json)
    values: dict[str, list[float]] = {}
    for run in runs.values():
        if not isinstance(run, dict) or run.get("experiment") != experiment:
            continue
        for ds, variants in (run.get("metrics") or {}).items():
            for v in SPREAD_VARIANTS:
                x = _get(variants, v, "all")
                if x is not None:
                    values.setdefault(f"mIoU {ds}, {v}", []).append(x)
    return {k: max(v) - min(v) for k, v in values.items() if len(v) > 1}


def comparison_rows(cpu: dict[str, float], gpu: dict[str, float],
                    spread: dict[str, float]) -> list[dict]:
    """One row per metric of either run: both values, the difference and, for mIoU, whether
    it lies within the CPU's cross-seed spread."""
    rows = []
    for name in list(cpu) + [k for k in gpu if k not in cpu]:
        a, b = cpu.get(name), gpu.get(name)
        diff = None if a is None or b is None else b - a
        s = spread.get(name)
        rows.append({"metric": name, "cpu": a, "gpu": b, "difference": diff, "spread": s,
                     "within_spread": None if diff is None or s is None else abs(diff) <= s})
    return rows


def _fmt(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "**no**"
    return f"{x:.4f}" if isinstance(x, float) and abs(x) < 100 else f"{x:g}"


def render(facts: dict) -> str:
    """The Markdown page of a gpu-check run's `facts` (gpu_check.main builds them)."""
    lines = [f"# GPU check: {facts['device']}", "",
             f"torch {facts['torch']}, commit {facts['commit']}, {facts['date']}; "
             f"{facts['total_seconds']:.0f} s in all.", ""]
    lines += [f"- {line}" for line in facts["verdicts"]] + [""]
    if facts.get("stages"):
        lines += ["## Stage times (the default graph, params.yaml with "
                  f"{', '.join(facts['overrides']) or 'no overrides'})", "",
                  "| stage | seconds | result |", "|---|---|---|"]
        lines += [f"| {r['label']} | {r['seconds']:.1f} | "
                  f"{'ok' if r['returncode'] == 0 else 'failed (' + str(r['returncode']) + ')'} |"
                  for r in facts["stages"]]
        lines += [f"| **total** | **{sum(r['seconds'] for r in facts['stages']):.1f}** | |", ""]
        if facts.get("failure_log"):
            lines += ["Last lines of the failed stage:", "", "```",
                      facts["failure_log"], "```", ""]
    if facts.get("metrics"):
        lines += ["## Metrics: this run beside the committed CPU run (metrics/)", "",
                  "Spread: max - min of the CPU runs of the default graph on seeds 0-2 "
                  "(reports/paper_tables/runs.json).", "",
                  "| metric | CPU | this run | difference | spread | within spread |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['metric']} | {_fmt(r['cpu'])} | {_fmt(r['gpu'])} | "
                  f"{_fmt(r['difference'])} | {_fmt(r['spread'])} | {_fmt(r['within_spread'])} |"
                  for r in facts["metrics"]]
        lines.append("")
    if facts.get("tests"):
        lines += ["## Tests marked gpu", "", "```", facts["tests"], "```", ""]
    if facts.get("benchmark"):
        lines += ["## Heavy stages at real shapes (benchmarks/bench_heavy_stages.py)", "",
                  "```", facts["benchmark"], "```", ""]
    return "\n".join(lines)
