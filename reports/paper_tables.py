"""The paper's ablations on the miniature (`make tables`): every experiment of
pipeline/report/ablations.py as a `dvc exp run` on each world seed, then the report.

    python -m reports.paper_tables run [--seeds 0 1 2 3 4] [--only default base ...]
        [--runs reports/paper_tables/open_runs.json]
    python -m reports.paper_tables render [--exp-show dump.json]

run: each (experiment, seed) not yet in reports/paper_tables/runs.json runs as
`dvc exp run --temp -n <experiment>-s<seed> -S data.seed=<seed> -S ... evaluate` (a
temporary copy of the checkout, so the workspace is left alone; unchanged stages come from
DVC's run cache), then what the report reads of its metrics is taken from
`dvc exp show --json` and added to runs.json with the commit it ran on, one run at a
time: an interrupted run loses at most the experiment in flight, and the next `run`
carries on from there. A change to a stage's code makes earlier runs stale: delete their
entries (or the file) to run them again.
render: reports/paper_tables.md and .png from runs.json (plus, with --exp-show, the
experiments of a saved `dvc exp show --json` listing), and reports/paper_tables_findings.md
from its template, every number of it computed from the runs (pipeline/report/findings.py).
The report's section on Open mIoU reads reports/paper_tables/open_runs.json when it
exists: runs made (`run --runs ...`) after evaluations began to write Open mIoU, judged
there on mIoU and Open mIoU from the same runs, so a changed verdict is the metric's doing.
A diagnostic run the findings cite is an experiment of pipeline/report/ablations.py that no
table reads, run with `--only`, so it is stored in runs.json with its overrides and commit
as the table runs are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline.data.files import atomic_write_bytes, write_json
from pipeline.report.ablations import EXPERIMENTS, table_experiments
from pipeline.report.findings import fill_findings
from pipeline.report.summary import (
    experiments_in,
    report_markdown,
    report_png,
    run_name,
    seed_of,
    trimmed,
)

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "reports"
RUNS = OUT / "paper_tables" / "runs.json"
OPEN_RUNS = OUT / "paper_tables" / "open_runs.json"  # runs that recorded Open mIoU (issue 32)
FINDINGS = REPO / "reports" / "paper_tables_findings.template.md"
SEEDS = (0, 1, 2, 3, 4)  # issue 30: a claim can hold on 5 of 5 seeds
HEADER = """# OVSeg's tables on the miniature

Regenerate with `make tables` (every experiment on every seed, then this page) or
`.venv/bin/python -m reports.paper_tables render` (this page from
`reports/paper_tables/runs.json`). Experiments: `pipeline/report/ablations.py`.
Paper: Swin-B + ViT-L/14, ADE-150 mIoU. Miniature: the embedded world and its 12-block
CLIP, ensemble mIoU on the world's two evaluation splits unless the row names a variant.
"""


def load_runs(path: Path | None = None) -> dict:
    path = path or RUNS
    return json.loads(path.read_text()) if path.is_file() else {}


def dvc(*args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    """This environment's dvc in the checkout; the stages find WordNet where `make` put it."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1",
               NLTK_DATA=os.environ.get("NLTK_DATA", str(REPO / ".nltk_data")))
    return subprocess.run([str(Path(sys.prefix) / "bin" / "dvc"), *args], cwd=REPO, env=env,
                          check=check, text=True, capture_output=capture)


def run_one(experiment: str, seed: int) -> dict:
    name = run_name(experiment, seed)
    overrides = {"data.seed": str(seed), **EXPERIMENTS[experiment]}
    dvc("exp", "remove", name, capture=True, check=False)  # an interrupted earlier attempt
    t0 = time.time()
    dvc("exp", "run", "--temp", "-n", name,
        *[a for k, v in overrides.items() for a in ("-S", f"{k}={v}")], "evaluate")
    seconds = time.time() - t0
    listing = json.loads(dvc("exp", "show", "--json", capture=True).stdout)
    metrics = experiments_in(listing).get(name)
    if metrics is None:
        raise SystemExit(f"dvc exp show lists no experiment {name} after its run")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()
    return {"experiment": experiment, "seed": seed, "overrides": overrides, "commit": commit,
            "seconds": round(seconds, 1), "metrics": trimmed(metrics)}


def run(seeds: list[int], only: list[str] | None, path: Path | None = None) -> None:
    path = path or RUNS
    runs = load_runs(path)
    todo = [(e, s) for s in seeds for e in (only or table_experiments())
            if run_name(e, s) not in runs]
    print(f"{len(todo)} experiment runs to do, {len(runs)} already in {path}")
    for k, (experiment, seed) in enumerate(todo):
        print(f"[{k + 1}/{len(todo)}] {run_name(experiment, seed)}: "
              f"{EXPERIMENTS[experiment] or 'params.yaml as it is'}", flush=True)
        runs[run_name(experiment, seed)] = run_one(experiment, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, dict(sorted(runs.items())))


def complete_seeds(runs: dict[str, dict]) -> tuple[list[int], list[int]]:
    """(seeds with every experiment the tables read, seeds with only some)."""
    seeds = sorted({s for s in map(seed_of, runs) if s is not None})
    done = [s for s in seeds if all(run_name(e, s) in runs for e in table_experiments())]
    return done, [s for s in seeds if s not in done]


def _minutes_and_commits(saved: dict) -> tuple[float, list[str]]:
    """The runs' summed `dvc exp run` wall time in minutes, and their commits (short)."""
    minutes = sum(r.get("seconds", 0) for r in saved.values()) / 60
    return minutes, sorted({r["commit"][:7] for r in saved.values() if r.get("commit")})


def _about(saved: dict) -> str:
    """Where a runs file's runs came from: how many, each experiment with its seeds (those
    sharing seeds named together), and their commits."""
    seeds_of: dict[str, list[int]] = {}
    for r in saved.values():
        seeds_of.setdefault(r["experiment"], []).append(r["seed"])
    groups: dict[tuple, list[str]] = {}
    for experiment, seeds in sorted(seeds_of.items()):
        groups.setdefault(tuple(sorted(seeds)), []).append(experiment)
    parts = [f"{', '.join(names)} on seed{'s' if len(seeds) > 1 else ''} "
             f"{', '.join(map(str, seeds))}" for seeds, names in
             sorted(groups.items(), key=lambda g: (-len(g[0]), g[0]))]
    minutes, commits = _minutes_and_commits(saved)
    return (f"{len(saved)} runs in `{OPEN_RUNS.relative_to(REPO)}` ({'; '.join(parts)}; "
            f"commit {', '.join(commits)}; {minutes:.0f} minutes)")


def render(exp_show: Path | None) -> None:
    saved = load_runs()
    runs = {k: r["metrics"] for k, r in saved.items()}
    if exp_show is not None:
        runs.update({k: trimmed(m) for k, m in
                     experiments_in(json.loads(exp_show.read_text())).items()})
    seeds, partial = complete_seeds(runs)
    minutes, commits = _minutes_and_commits(saved)
    header = HEADER + (f"\n{len(runs)} runs; their `dvc exp run` wall time on the machine "
                       f"that ran them: {minutes:.0f} minutes"
                       + (f"; run at commit{'s' * (len(commits) > 1)} {', '.join(commits)}"
                          if commits else "")
                       + ".\n" if runs else "")
    if partial:
        header += (f"\nSeeds with some experiments still to run (left out below): "
                   f"{', '.join(map(str, partial))}.\n")
    if not seeds:  # nothing complete yet: the rows show what has run
        seeds = partial
    open_saved = load_runs(OPEN_RUNS)
    open_runs = {k: r["metrics"] for k, r in open_saved.items()}
    atomic_write_bytes(OUT / "paper_tables.md", report_markdown(
        runs, seeds, header, open_runs, _about(open_saved) if open_saved else "").encode())
    atomic_write_bytes(OUT / "paper_tables.png", report_png(runs, seeds))
    if FINDINGS.is_file():
        atomic_write_bytes(OUT / "paper_tables_findings.md",
                           fill_findings(FINDINGS.read_text(), runs, seeds, REPO).encode())
    print(f"wrote {OUT / 'paper_tables.md'}, .png and the findings from {len(runs)} runs, "
          f"seeds {seeds}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    r.add_argument("--only", nargs="+", choices=list(EXPERIMENTS))
    r.add_argument("--runs", type=Path,
                   help=f"the runs file to add to (default {RUNS.relative_to(REPO)}; "
                        f"{OPEN_RUNS.relative_to(REPO)}: runs for the Open mIoU section)")
    g = sub.add_parser("render")
    g.add_argument("--exp-show", type=Path)
    args = ap.parse_args(argv)
    if args.command == "run":
        run(args.seeds, args.only, args.runs.resolve() if args.runs else None)
    else:
        render(args.exp_show)


if __name__ == "__main__":
    main()
