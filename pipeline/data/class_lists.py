"""Class-name lists: read and write the JSON format of the benchmark class lists.

The format is the one of `pipeline/classnames/*.json` (from the shared class lists):
`{"name", "num_classes", "classes": [...]}` where each class is a plain string or a dict
with at least "name" (optionally "isthing", "seen"). Class i is label value i.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class ClassList:
    name: str
    names: tuple[str, ...]  # may hold comma-separated synonyms, e.g. "road, route"
    isthing: tuple[bool, ...]
    seen: tuple[bool, ...]  # labelled in the training split of the pipeline's world/data

    def __len__(self) -> int:
        return len(self.names)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "num_classes": len(self.names),
            "classes": [
                {"id": i, "name": n, "isthing": int(t), "seen": s}
                for i, (n, t, s) in enumerate(zip(self.names, self.isthing, self.seen))
            ],
        }


def parse_class_list(data: dict, source: str = "<class list>") -> ClassList:
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ValueError(f"{source}: expected a JSON object with a 'classes' list")
    names, isthing, seen = [], [], []
    for i, c in enumerate(data["classes"]):
        if isinstance(c, str):
            c = {"name": c}
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
            raise ValueError(f"{source}: class {i} has no non-empty 'name'")
        names.append(c["name"])
        isthing.append(bool(c.get("isthing", 1)))
        seen.append(bool(c.get("seen", True)))
    return ClassList(str(data.get("name", Path(source).stem)), tuple(names), tuple(isthing),
                     tuple(seen))


def load_class_list(path: str | Path) -> ClassList:
    with open(path, encoding="utf-8") as f:
        return parse_class_list(json.load(f), str(path))


def builtin_class_list(name: str) -> ClassList:
    """A class list shipped with the package, e.g. "coco_stuff_171", "ade20k_150"."""
    ref = resources.files("pipeline") / "classnames" / f"{name}.json"
    if not ref.is_file():
        known = sorted(p.name[:-5] for p in (resources.files("pipeline") / "classnames").iterdir()
                       if p.name.endswith(".json"))
        raise ValueError(f"no built-in class list {name!r}; known: {', '.join(known)}")
    return parse_class_list(json.loads(ref.read_text(encoding="utf-8")), name)


def parse_vocabulary_text(text: str, source: str = "<text>") -> list[str]:
    """One class per line (comma-separated synonyms allowed); blank lines and # comments
    skipped."""
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"{source}: no class names (expected one class per line)")
    return names


def load_vocabulary(spec: str) -> list[str]:
    """Class names from a user's vocabulary spec, tried in this order:
    - a `.json` file: a class list ({"classes": [...]}) or a plain JSON list of names;
    - any other existing file: one class per line, synonyms comma-separated;
    - the name of a built-in list, e.g. "ade20k_150";
    - otherwise a comma-separated string of classes: "Saturn V, teapot, golden gate"
      (synonyms need a file, since commas separate classes here).
    """
    path = Path(spec)
    if spec and path.is_file():
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() != ".json":
            return parse_vocabulary_text(text, spec)
        data = json.loads(text)
        if isinstance(data, list) and data and all(isinstance(n, str) and n for n in data):
            return list(data)
        return list(parse_class_list(data, spec).names)
    builtin = resources.files("pipeline") / "classnames" / f"{spec}.json"
    if spec and "," not in spec and builtin.is_file():
        return list(builtin_class_list(spec).names)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError(f"empty vocabulary {spec!r}: give a JSON or text file of class names, "
                         "a built-in list name, or a comma-separated string of classes")
    return names
