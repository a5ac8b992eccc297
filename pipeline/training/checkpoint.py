"""Resumable training checkpoints: one dict per run, tagged with a fingerprint of
everything that defines the run, so a later run continues only a run of the same inputs
and params and any other run starts afresh.

Saving writes the whole file to a temporary sibling and renames it over the old one, so
a run killed mid-save leaves the previous checkpoint intact rather than a torn one.
Loading uses weights_only=True: a checkpoint holds tensors, numbers, strings, lists and
dicts only, and unpickling nothing else keeps a stray file from running code.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from pipeline.data.files import atomic_write_bytes


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write `state` (which holds the run's "fingerprint") to `path` atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, fingerprint: str, device) -> dict | None:
    """The state saved at `path` by a run with this fingerprint, tensors on `device`;
    None when there is no checkpoint, or it belongs to another run."""
    path = Path(path)
    if not path.is_file():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("fingerprint") != fingerprint:
        print(f"ignoring {path}: it belongs to a run with other inputs or params")
        return None
    print(f"resuming from step {state['step']} ({path})")
    return state
