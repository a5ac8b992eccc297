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
