"""The machinery of the params schema: a field that carries its allowed values, and the
check of one value or one section against its dataclass, with errors that name the key."""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import field
from typing import Any


class ParamsError(ValueError):
    """A params.yaml value that cannot be used; the message names the key."""


def spec(default, *, ge=None, gt=None, le=None, lt=None, choices=None, check=None, doc=""):
    """A dataclass field carrying its allowed range or choices; `check(key, value)`
    validates (and may normalise) what a list or mapping holds."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "check": check,
            "doc": doc}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def check_value(key: str, value: Any, tp, meta: dict) -> Any:
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"params: '{key}' must be a mapping of {type_name(tp)} keys")
        return build_section(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    # YAML reads 1e-3 without a dot as a string; accept it where a float is expected.
    if tp is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"params: '{key}' = {value!r}; must be a finite number")
    if tp is bool and not isinstance(value, bool) or (
        tp is not bool and (not isinstance(value, tp) or isinstance(value, bool))
    ):
        raise ParamsError(
            f"params: '{key}' must be {type_name(tp)}, got {value!r} ({type(value).__name__})"
        )
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ParamsError(f"params: '{key}' = {value!r}; allowed: {', '.join(meta['choices'])}")
    if meta.get("ge") is not None and value < meta["ge"]:
        raise ParamsError(f"params: '{key}' = {value!r}; must be >= {meta['ge']}")
    if meta.get("gt") is not None and value <= meta["gt"]:
        raise ParamsError(f"params: '{key}' = {value!r}; must be > {meta['gt']}")
    if meta.get("lt") is not None and value >= meta["lt"]:
        raise ParamsError(f"params: '{key}' = {value!r}; must be < {meta['lt']}")
    if meta.get("le") is not None and value > meta["le"]:
        raise ParamsError(f"params: '{key}' = {value!r}; must be <= {meta['le']}")
    if meta.get("check") is not None:
        value = meta["check"](key, value)
    return value


def build_section(cls, raw: dict, prefix: str = "", complete: bool = False):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"'{prefix}'" if prefix else "the top level"
        raise ParamsError(
            f"params: unknown key '{join_key(prefix, unknown[0])}' in {where}; "
            f"allowed: {', '.join(sorted(fields))}"
        )
    missing = [name for name in fields if name not in raw]
    if complete and missing:
        raise ParamsError(f"params: missing key '{join_key(prefix, missing[0])}'; a params file "
                          "sets every key (copy it from the committed params.yaml)")
    values = {}
    for name, value in raw.items():
        key, tp = join_key(prefix, name), hints[name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            values[name] = build_section(tp, value, key, complete)
        else:
            values[name] = check_value(key, value, tp, dict(fields[name].metadata))
    return cls(**values)


def join_key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
