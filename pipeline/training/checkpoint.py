"""Resumable training checkpoints: one dict per run, tagged with a fingerprint of
everything that defines the run, so a later run continues only a run of the same inputs
and params and any other run starts afresh.

Saving writes the whole file to a temporary sibling and renames it over the old one, so
a run killed mid-save leaves the previous checkpoint intact rather than a torn one.
Loading uses weights_only=True: a checkpoint holds tensors, numbers, strings, lists and
dicts only, and unpickling nothing else keeps a stray file from running code.

A checkpoint that cannot be read (cut short by a full disk, overwritten, holding an
object outside that list) is worth nothing to resume from: the run warns, naming it, and
starts over from step 0; its next save replaces the file.
"""

from __future__ import annotations

import io
import pickle
import re
import sys
import warnings
from pathlib import Path

import torch

from pipeline.data.files import atomic_write_bytes


class CheckpointError(ValueError):
    """A resume checkpoint that cannot be read; the message is one line naming it."""


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write `state` (which holds the run's "fingerprint") to `path` atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: str | Path, device) -> dict:
    """The state saved at `path`, tensors on `device`. CheckpointError, in one line, for a
    file that is not a checkpoint of ours: torch's own errors run to many lines and advise
    weights_only=False, which would let the file run code."""
    try:
        with warnings.catch_warnings():  # torch warns about legacy (non-zip) pickles
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except (torch.OutOfMemoryError, OSError):  # the file may be fine: not ours to discard
        raise
    except Exception as e:  # the unpickler meets arbitrary bytes with any error type
        raise CheckpointError(f"{path} is not a readable checkpoint: {unreadable_why(e)}"
                              ) from e
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path} is not a checkpoint of this project (no step count)")
    return state


def unreadable_why(e: Exception) -> str:
    """torch.load's error, in a few words of our own (none of its advice to unpickle)."""
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
    if refused:
        return (f"it holds a {refused.group(1)}, which a checkpoint never holds (not "
                "loaded: unpickling it could run code)")
    if isinstance(e, pickle.UnpicklingError):
        return "its bytes are not a torch pickle"
    if isinstance(e, EOFError):
        return "it is empty or cut short"
    if "zip archive" in str(e):
        return "its zip archive is damaged (cut short or overwritten)"
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:100]}"


def load_checkpoint(path: str | Path, fingerprint: str, device) -> dict | None:
    """The state saved at `path` by a run with this fingerprint, tensors on `device`;
    None when there is no checkpoint, it belongs to another run, or it cannot be read
    (then with a one-line warning on stderr: the run starts over)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = read_checkpoint(path, device)
    except CheckpointError as e:
        print(f"warning: discarding the resume checkpoint: {e}; starting from step 0",
              file=sys.stderr)
        return None
    if state.get("fingerprint") != fingerprint:
        print(f"ignoring {path}: it belongs to a run with other inputs or params")
        return None
    print(f"resuming from step {state['step']} ({path})")
    return state


def save_training(path: str | Path, model: torch.nn.Module, optimizer, step: int, logs: list,
                  fingerprint: str, trainable_only: bool = False) -> None:
    """A resumable training state at `path`: the model's weights (its whole state, or with
    `trainable_only` the parameters that train: FT and MPT leave most of CLIP frozen), the
    optimizer's state, the steps done and the log so far."""
    weights = ({k: v.detach().cpu() for k, v in model.named_parameters() if v.requires_grad}
               if trainable_only else model.state_dict())
    save_checkpoint(path, {"model": weights, "optimizer": optimizer.state_dict(),
                           "step": step, "logs": logs, "fingerprint": fingerprint})


def resume_training(path: str | Path, model: torch.nn.Module, optimizer, fingerprint: str,
                    device) -> tuple[int, list]:
    """(steps done, log so far) of this run's checkpoint at `path`, its weights and
    optimizer state loaded into `model` and `optimizer`; (0, []) when there is none."""
    state = load_checkpoint(path, fingerprint, device)
    if state is None:
        return 0, []
    unexpected = model.load_state_dict(state["model"], strict=False).unexpected_keys
    if unexpected:
        raise CheckpointError(f"{path} holds weights this model does not have: {unexpected[:3]}")
    optimizer.load_state_dict(state["optimizer"])
    return state["step"], state["logs"]
