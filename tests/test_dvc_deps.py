"""Each dvc.yaml stage lists, as deps, every project module its script imports (issue 13).

DVC re-runs a stage only when one of its listed deps changes, so a module the stage imports
but does not list gives a stale cached result after an edit to that module. The imports are
read with `ast` (nothing is imported): the whole tree, so lazy imports inside functions count,
followed transitively through the `pipeline` and `stages` packages.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "stages")  # the project's own code; other imports are libraries
# Folders of data files that a module reads from disk: a stage using the module needs them.
DATA_READ_BY = {
    "pipeline/data/class_lists.py": "pipeline/classnames",  # the built-in class lists
    "pipeline/clip/model.py": "models/configs",  # open_clip JSON model configs
}
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> str | None:
    """Repo-relative path of module `name` (a.b.c), or None if it is not one of ours."""
    base = Path(*name.split("."))
    for rel in (base.with_suffix(".py"), base / "__init__.py"):
        if (REPO / rel).is_file():
            return rel.as_posix()
    return None


def imported_modules(source: str, package: str) -> set[str]:
    """Dotted names that `source` (a module of `package`) may import, parents included.

    `from a.b import c` names both a.b and a.b.c: c is a module or an attribute, and
    module_file() later keeps only the names that are files.
    """
    names = set()
    for node in ast.walk(ast.parse(source)):  # ast.walk: imports inside functions too
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")  # relative: level 1 is this package, 2 its parent...
            parts = parts[: len(parts) - node.level + 1] if node.level else []
            base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return {n for n in with_parents(names) if n.split(".")[0] in PACKAGES}


def with_parents(names: set[str]) -> set[str]:
    """Importing a.b.c first executes a/__init__.py and a/b/__init__.py."""
    return {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 2)}


def closure(module: str) -> set[str]:
    """Files of the project executed by running `module`, transitively."""
    pending, seen = list(with_parents({module})), set()
    while pending:
        path = module_file(pending.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        name = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        pending.extend(imported_modules((REPO / path).read_text(), package))
    return seen


def stage_modules(entry: dict) -> list[str]:
    """Modules run by a stage's cmd: `python -m stages.x ...`, `torchrun ... -m stages.x`."""
    cmds = entry["cmd"] if isinstance(entry["cmd"], list) else [entry["cmd"]]
    pattern = r"(?:^|\s)-m\s+((?:" + "|".join(PACKAGES) + r")(?:\.\w+)*)"
    return [m for cmd in cmds for m in re.findall(pattern, cmd)]


def required_deps(entry: dict) -> set[str]:
    files = set().union(*(closure(m) for m in stage_modules(entry)))
    # An empty __init__.py changes nothing when edited; one with code does.
    needed = {f for f in files if (REPO / f).read_text().strip()}
    return needed | {DATA_READ_BY[f] for f in files if f in DATA_READ_BY}


def missing_deps(entry: dict) -> list[str]:
    """Required files and folders that no dep covers (a dep covers itself and what is under it)."""
    deps = [d.rstrip("/") for d in entry.get("deps", []) if isinstance(d, str)]
    return sorted(r for r in required_deps(entry)
                  if not any(r == d or r.startswith(d + "/") for d in deps))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_its_imports(name):
    entry = STAGES[name]  # a matrix stage has one deps list shared by all its items
    assert stage_modules(entry), f"{name}: no `-m <module>` in its cmd; teach this test its form"
    missing = missing_deps(entry)
    assert not missing, (f"stage {name} imports or reads these but dvc.yaml does not list "
                         "them as deps; add under its `deps:`\n"
                         + "\n".join(f"      - {p}" for p in missing))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_listed_code_deps_exist_and_are_narrow(name):
    deps = [d.rstrip("/") for d in STAGES[name].get("deps", []) if isinstance(d, str)]
    code = [d for d in deps if d.split("/")[0] in PACKAGES]
    # A whole package as one dep re-runs every stage on any edit: caching defeated.
    assert not [d for d in code if d in PACKAGES], f"{name}: a bare package dep {code}"
    # A path left behind by a rename covers nothing, and DVC fails on a missing dep.
    stale = [d for d in code if not (REPO / d).exists()]
    assert not stale, f"{name}: listed deps that do not exist: {stale}"


def test_imported_modules_sees_every_import_form():
    source = ("import pipeline.data.files\nfrom pipeline.clip import model, CONST\n"
              "from . import sibling\nimport torch\ndef f():\n    from ..world import render\n")
    assert imported_modules(source, "pipeline.segment") == {
        "pipeline", "pipeline.data", "pipeline.data.files", "pipeline.clip",
        "pipeline.clip.model", "pipeline.clip.CONST", "pipeline.segment",
        "pipeline.segment.sibling", "pipeline.world", "pipeline.world.render"}


def test_checker_reports_a_removed_dep():
    """Not vacuous: dropping one needed module from a real stage's deps is reported."""
    needed = {name: required_deps(entry) for name, entry in STAGES.items()}
    picks = [(name, d) for name in sorted(STAGES) for d in STAGES[name].get("deps", [])
             if d.startswith("pipeline/") and d in needed[name]]
    assert picks, "no stage lists a pipeline module it needs"
    name, target = picks[0]
    before = missing_deps(STAGES[name])
    broken = copy.deepcopy(STAGES[name])
    broken["deps"].remove(target)
    assert missing_deps(broken) == sorted([*before, target]), f"{name} without {target}"


# adapt.* keys that only adaptation_report reads: listing them for finetune or prompt_tune
# would re-run both (a minute on the default) when `-S adapt.mpt_only_row=true` asks for
# adaptation_report's extra row alone.
REPORT_ONLY_ADAPT_KEYS = {"mpt_only_row", "eval_batch_size"}


@pytest.mark.parametrize("name", ["finetune", "prompt_tune"])
def test_adaptation_stages_list_every_adapt_param_they_read(name):
    from dataclasses import fields

    from pipeline.params import AdaptParams

    listed = set(STAGES[name]["params"])
    assert "adapt" not in listed, f"{name}: the whole adapt section re-runs it for report keys"
    keys = {f.name for f in fields(AdaptParams)}
    assert {f"adapt.{k}" for k in keys - REPORT_ONLY_ADAPT_KEYS} <= listed
    assert not {f"adapt.{k}" for k in REPORT_ONLY_ADAPT_KEYS} & listed
    assert "adapt" in STAGES["adaptation_report"]["params"]
