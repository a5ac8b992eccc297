"""A copy of the working tree where `dvc repro` runs as a user would run it, for the slow
end-to-end tests: the tracked and untracked (not ignored) files, no generated outputs, a
fresh git repository, and the venv linked as `.venv`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO

GENERATED = ("data/", "metrics/", "models/clip_", ".dvc/cache", ".dvc/tmp", ".nltk_data/")


def run(cmd, cwd, env, timeout=900) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, \
        f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


def git_commit(work: Path, env: dict, message: str) -> None:
    who = ["-c", "user.email=t@t", "-c", "user.name=t"]
    run(["git", *who, "add", "-A"], work, env)
    run(["git", *who, "commit", "-qm", message], work, env)


def copy_repo(work: Path, params: dict) -> dict:
    """Copy the repository to `work` with `params` as its params.yaml (and no dvc.lock),
    commit it to a new git repository and return the environment to run DVC in."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file() and not f.startswith(GENERATED):
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, work / f)
    (work / "dvc.lock").unlink(missing_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The README's commands call .venv/bin/...; the environment's own PATH entry is left
    # out on purpose: the stages' `python` must resolve to it all the same.
    (work / ".venv").symlink_to(Path(sys.prefix))
    # WordNet: where `make` installed it for this checkout (the copy has no .nltk_data).
    env = dict(os.environ, PYTHONPATH=str(work), DVC_NO_ANALYTICS="1",
               NLTK_DATA=os.environ.get("NLTK_DATA", str(REPO / ".nltk_data")),
               PATH=os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                    if Path(p).resolve() != Path(sys.prefix).resolve() / "bin"))
    run(["git", "init", "-q"], work, env)
    git_commit(work, env, "init")
    return env


def with_overrides(params: dict, overrides: dict) -> dict:
    """params with overrides merged in, section by section (nested dicts merged too)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in params.items()}
    for section, values in overrides.items():
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(out[section].get(key), dict):
                out[section][key] = {**out[section][key], **value}
            else:
                out[section][key] = value
    return out
