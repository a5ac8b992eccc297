"""`make gpu-check` (benchmarks/gpu_check.py) where no GPU is: its one line and exit status,
the missing packages it names, the graph it would run, the runner and the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks import gpu_check
from benchmarks.gpu_report import comparison_rows, headline_metrics, render, seed_spreads
from benchmarks.stage_graph import apply_overrides, graph_commands, run_graph
from tests.conftest import REPO

DVC_STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
DATASETS = yaml.safe_load((REPO / "params.yaml").read_text())["eval"]["datasets"]


def test_without_a_gpu_it_says_so_in_one_line_and_exits_non_zero():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == gpu_check.EXIT_NO_GPU
    assert len(lines) == 1 and "no CUDA GPU visible to torch" in lines[0], lines


def test_missing_packages_are_named_with_their_pinned_wheels(tmp_path, monkeypatch, capsys):
    (tmp_path / "needs_a_gone_dep.py").write_text("import gone_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    wanted = {"json": "json", "needs_a_gone_dep": "needs-a-gone-dep", "PIL": "pillow",
              "absent_module_xyz": "absent-dist"}
    assert gpu_check.missing_modules(wanted) == ["absent_module_xyz", "gone_dependency_xyz"]
    pins = {line.split("==")[0]: line for line in (REPO / "requirements.lock").read_text()
            .splitlines() if "==" in line}
    assert gpu_check.pinned(["PIL", "open_clip"]) == [pins["pillow"], pins["open_clip_torch"]]
    monkeypatch.setattr(gpu_check, "REQUIRED", wanted)
    monkeypatch.setattr(gpu_check, "gpu_line", lambda: None)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == gpu_check.EXIT_MISSING
    said = capsys.readouterr().out
    assert "absent_module_xyz, gone_dependency_xyz" in said and "--no-index" in said
    assert not (tmp_path / "out").exists()  # nothing run, nothing written


def test_the_graph_is_dvc_yamls_commands_in_order_with_the_given_interpreter():
    commands = graph_commands(DVC_STAGES, DATASETS, "/opt/py")
    labels = [label for label, _ in commands]
    want = [n for n in DVC_STAGES if n != "evaluate"] + [f"evaluate@{d}" for d in DATASETS]
    assert labels == want
    for label, argv in commands:
        assert argv[:3] == ["/opt/py", "-m", f"stages.{label.partition('@')[0]}"]
    evaluate = dict(commands)[f"evaluate@{DATASETS[0]}"]
    assert evaluate[evaluate.index("--dataset") + 1] == DATASETS[0]
    assert not any("${" in word for _, argv in commands for word in argv)


def test_overrides_set_nested_keys_and_name_unknown_ones():
    params = {"compute": {"device": "auto"}, "data": {"workers": 2}}
    assert apply_overrides(params, ["compute.device=cuda", "data.workers=12"]) == \
        {"compute": {"device": "cuda"}, "data": {"workers": 12}}
    for bad in ("compute.gpus=2", "nosection.x=1", "compute.device"):
        with pytest.raises(ValueError, match="override"):
            apply_overrides(params, [bad])


def test_the_runner_times_each_stage_and_stops_at_the_first_failure(tmp_path):
    py = sys.executable
    commands = [("one", [py, "-c", "print('first')"]),
                ("two", [py, "-c", "import sys; print('bad input'); sys.exit(3)"]),
                ("three", [py, "-c", "print('never')"])]
    said = []
    runs = run_graph(tmp_path, commands, tmp_path / "logs", say=said.append)
    assert [(r.label, r.returncode) for r in runs] == [("one", 0), ("two", 3)]
    assert runs[1].log.read_text().strip() == "bad input"
    assert "two: FAILED (3)" in said[1] and len(said) == 2


def test_headline_metrics_and_spreads_read_the_committed_runs():
    cpu = headline_metrics(REPO / "metrics", DATASETS)
    for ds in DATASETS:
        report = json.loads((REPO / "metrics" / "eval" / f"{ds}.json").read_text())
        assert cpu[f"mIoU {ds}, ensemble"] == report["ensemble"]["miou_d2_legacy"]
    mining = json.loads((REPO / "metrics" / "mining.json").read_text())
    assert cpu["mining pairs"] == mining["pairs"]
    runs = json.loads((REPO / "reports" / "paper_tables" / "runs.json").read_text())
    seeds = [r["metrics"][DATASETS[0]]["ensemble"]["all"] for r in runs.values()
             if r.get("experiment") == "default"]
    assert len(seeds) >= 3
    spread = seed_spreads(REPO / "reports" / "paper_tables" / "runs.json")
    assert spread[f"mIoU {DATASETS[0]}, ensemble"] == max(seeds) - min(seeds)


def test_comparison_judges_each_difference_against_the_spread():
    rows = comparison_rows({"mIoU a": 0.40, "mIoU b": 0.40, "pairs": 100},
                           {"mIoU a": 0.43, "mIoU b": 0.47, "only gpu": 1.0},
                           {"mIoU a": 0.05, "mIoU b": 0.05})
    by = {r["metric"]: r for r in rows}
    assert by["mIoU a"]["within_spread"] is True and by["mIoU b"]["within_spread"] is False
    assert abs(by["mIoU b"]["difference"] - 0.07) < 1e-12
    assert by["pairs"]["gpu"] is None and by["pairs"]["within_spread"] is None
    assert by["only gpu"]["cpu"] is None
    page = render({"device": "X", "torch": "t", "commit": "c", "date": "d",
                   "total_seconds": 1.0, "verdicts": ["v"], "overrides": [], "metrics": rows,
                   "stages": [{"label": "s", "seconds": 2.0, "returncode": 0}]})
    assert "| mIoU b | 0.4000 | 0.4700 | 0.0700 | 0.0500 | **no** |" in page
    assert "| s | 2.0 | ok |" in page


def test_a_dry_run_on_the_cpu_writes_the_report(tmp_path):
    out = tmp_path / "check"
    code = gpu_check.main(["--device", "cpu", "--skip", "tests", "bench", "--stages",
                           "check_params", "--out", str(out)])
    assert code == 0
    facts = json.loads((out / "report.json").read_text())
    assert [s["label"] for s in facts["stages"]] == ["check_params"]
    assert (out / "work" / "data" / "params_checked").exists()
    assert yaml.safe_load((out / "work" / "params.yaml").read_text())["compute"]["device"] \
        == "cpu"
    page = (out / "report.md").read_text()
    assert "| check_params |" in page and "## Metrics" in page
    assert not (Path(REPO) / "gpu-check").exists() or out != REPO / "gpu-check"
