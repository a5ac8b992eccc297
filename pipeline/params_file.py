"""Read a params file strictly: malformed YAML and duplicate keys stop with the file and line
(PyYAML alone keeps the last of two equal keys, silently)."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.params import ParamsError


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key set twice in one mapping (PyYAML keeps the last)."""


def _construct_unique_mapping(loader, node, deep=False):
    first_line = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in first_line:
            raise ParamsError(f"{key_node.start_mark.name} line {line}: duplicate key {key!r} "
                              f"(first set on line {first_line[key]}); keep one")
        first_line[key] = line
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_params_yaml(path: str | Path) -> dict:
    """The raw mapping of a params file; malformed YAML or duplicate keys stop with the
    file and line."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path} (run from the repository root)")
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.YAMLError as e:
            raise ParamsError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections (data, clip, ...), got "
                          f"{type(raw).__name__}; restore it with `git checkout {path.name}`")
    return raw
