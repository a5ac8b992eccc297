"""dvc.yaml is the one place that names the pipeline's paths (issue 13): each stage's cmd
passes its inputs and outputs, and the stage modules hold no path of their own."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
SCRATCH = (".cache/", "data/tmp/")  # caches and resume checkpoints: no DVC outputs
PATHLIKE = re.compile(r"^(data|models|metrics|\.cache)(/|$)|\.yaml$")


def declared(entry: dict, key: str) -> set[str]:
    """Paths listed under deps, outs, metrics or plots (a path or a {path: options} map)."""
    return {next(iter(d)) if isinstance(d, dict) else d for d in entry.get(key, [])}


def cmd_paths(entry: dict) -> dict[str, str]:
    """--flag -> value of the stage's cmd, for the values that are paths."""
    words = shlex.split(entry["cmd"])
    pairs = zip(words, words[1:])
    return {flag: value for flag, value in pairs
            if flag.startswith("--") and PATHLIKE.search(value)}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_cmd_passes_every_output_and_only_declared_paths(name):
    entry = STAGES[name]
    paths = cmd_paths(entry)
    passed = set(paths.values())
    outputs = declared(entry, "outs") | declared(entry, "metrics") | declared(entry, "plots")
    # A DVCLive log is passed as its folder (--live-log); DVC is told DVCLive's own files
    # in it (metrics.json, plots/metrics), which only DVCLive names.
    live = paths.get("--live-log")
    inside_live = {o for o in outputs if live and o.startswith(live + "/")}
    assert not live or inside_live, f"{name}: --live-log {live} declares no output in it"
    assert outputs - inside_live <= passed, \
        f"{name}: outputs not on its command line: {outputs - inside_live - passed}"
    known = outputs | declared(entry, "deps") | {"params.yaml"} | ({live} if live else set())
    stray = {p for p in passed if p not in known and not p.startswith(SCRATCH)}
    assert not stray, f"{name}: cmd paths that dvc.yaml does not declare: {stray}"


@pytest.mark.parametrize("module", sorted((REPO / "stages").glob("*.py")), ids=lambda p: p.name)
def test_stage_modules_name_no_paths(module):
    tree = ast.parse(module.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    paths = [node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and id(node) not in docstrings and PATHLIKE.search(node.value)]
    assert not paths, f"{module.name} names paths; pass them on its dvc.yaml cmd: {paths}"
