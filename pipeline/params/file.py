"""Reading params.yaml: strictly (malformed YAML and duplicate keys stop with the file and
line; PyYAML alone keeps the last of two equal keys, silently), then every key validated
against the schema."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from pipeline.params.fields import ParamsError, build_section
from pipeline.params.schema import Params


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


def parse_params(raw: dict | None, complete: bool = False) -> Params:
    """Validate a params mapping (as read from YAML) into `Params`; `complete`: every key
    must be present (a file), otherwise missing keys take the dataclass defaults (tests)."""
    return build_section(Params, raw or {}, complete=complete)


def load_params(path: str | Path = "params.yaml") -> Params:
    """The complete params of a file, each key validated. The checks across sections, which
    need the CLIP's model config, are pipeline/params/checks.py's (the check_params stage)."""
    return parse_params(read_params_yaml(path), complete=True)


def to_dict(params) -> dict:
    return dataclasses.asdict(params)
