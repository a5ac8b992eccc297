"""Write outputs so that an interrupted stage never leaves a half-written file or folder
behind, and so that the same content always gives the same bytes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path


def remove_path(path: Path) -> None:
    """Remove a file, link or folder if there is one (a link is removed, not followed)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def staged_outputs(*finals: str | Path, staging: str | Path | None = None):
    """All-or-nothing outputs: yield a temporary path for each final path, `.<name>.tmp`
    beside it (or in `staging`, on the same file system, when nothing may be written
    beside it, e.g. inside a folder that DVC tracks), for the block to write a file or a
    folder at. Only when the block finishes are they renamed into place, one after another
    in the order given (so a stage lists its metrics last: they never describe a model
    that is not yet there). When the block raises, the temporaries are removed and every
    output is left as it was. An output the block did not write is left as it was.

    A folder cannot be renamed over another one, so the old folder is first renamed
    aside (`.<name>.old`) and deleted only after every new output is in place: the window
    without an output is two renames, not the deletion of a large folder."""
    finals = [Path(f) for f in finals]
    temps = [(Path(staging) if staging is not None else f.parent) / f".{f.name}.tmp"
             for f in finals]
    olds = [f.with_name(f".{f.name}.old") for f in finals]
    for path in temps + olds:  # left behind by a run that was killed
        remove_path(path)
    for path in temps + finals:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temps
    except BaseException:
        for tmp in temps:
            remove_path(tmp)
        raise
    for tmp, final, old in zip(temps, finals, olds):
        if not (tmp.exists() or tmp.is_symlink()):
            continue
        if final.is_dir() and not final.is_symlink() or tmp.is_dir() and final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    for old in olds:
        remove_path(old)


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """A hard link of `src` at `dst` (no bytes copied), or a copy where the file system
    has no hard links."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
    except BaseException:  # e.g. a full disk: no partial file left beside the output
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def json_bytes(obj) -> bytes:
    """Canonical JSON: sorted keys, fixed indentation, trailing newline."""
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, json_bytes(obj))
