"""The default graph without DVC: each stage command of dvc.yaml, in order (evaluate once
per `eval.datasets` entry), run with a given interpreter in a copy of the code, timed. For
machines that have torch but neither DVC nor internet (a lent GPU); `make gpu-check` runs
it with `compute.device: cuda`. The copy keeps the checkout's own data/, models/ and
metrics/ untouched.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

# What the stage commands need of the checkout: the code, the model configs, the params.
CODE = ("pipeline", "stages", "models/configs", "params.yaml", "dvc.yaml")


def apply_overrides(params: dict, overrides: list[str]) -> dict:
    """`section.key=value` overrides (values read as YAML, as `dvc exp run -S` reads them)
    applied to a params.yaml mapping; a key params.yaml does not have is an error."""
    for item in overrides:
        key, sep, value = item.partition("=")
        *path, last = key.split(".")
        node = params
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not sep or not isinstance(node, dict) or last not in node:
            raise ValueError(f"override {item!r}: expected section.key=value with a key of "
                             "params.yaml, e.g. compute.device=cuda")
        node[last] = yaml.safe_load(value)
    return params


def graph_commands(stages: dict, datasets: list[str], python: str
                   ) -> list[tuple[str, list[str]]]:
    """(label, argv) of each stage command of dvc.yaml's `stages`, in file order, with
    `python` for the interpreter; a matrix stage once per dataset ("evaluate@world_full")."""
    out = []
    for name, entry in stages.items():
        items = [(f"{name}@{d}", d) for d in datasets] if "matrix" in entry else [(name, None)]
        for label, dataset in items:
            cmd = entry["cmd"] if dataset is None else \
                entry["cmd"].replace("${item.dataset}", dataset)
            words = shlex.split(cmd)
            if words[0] != "python":
                raise ValueError(f"dvc.yaml stage {name}: expected `python -m ...`, got {cmd!r}")
            out.append((label, [python, *words[1:]]))
    return out


def copy_code(repo: Path, work: Path, overrides: list[str]) -> dict:
    """A fresh `work` holding CODE from `repo`, params.yaml with `overrides`; its params."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for rel in CODE:
        src, dst = repo / rel, work / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    params = apply_overrides(yaml.safe_load((work / "params.yaml").read_text()), overrides)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


@dataclass
class StageRun:
    label: str
    seconds: float
    returncode: int
    log: Path


def run_graph(work: Path, commands: list[tuple[str, list[str]]], log_dir: Path,
              env: dict | None = None, timeout: float = 1800, say=print) -> list[StageRun]:
    """Run `commands` in `work` in order, each one's output to log_dir/<label>.log; stop at
    the first that fails (or runs past `timeout` seconds: return code 124)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for label, argv in commands:
        log = log_dir / f"{label}.log"
        start = time.monotonic()
        with open(log, "wb") as f:
            try:
                code = subprocess.run(argv, cwd=work, env=env, stdout=f,
                                      stderr=subprocess.STDOUT, timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                code = 124
        runs.append(StageRun(label, round(time.monotonic() - start, 1), code, log))
        say(f"gpu-check: {label}: {'ok' if code == 0 else f'FAILED ({code})'} in "
            f"{runs[-1].seconds} s")
        if code:
            break
    return runs


def log_tail(path: Path, lines: int = 25) -> str:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])
