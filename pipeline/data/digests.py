"""Digests of files and folders, and the fingerprint of what a run depends on (params and
input digests): a chunk store, a resume checkpoint or a cache entry is reused only under
the same fingerprint."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.data.files import json_bytes


def fingerprint(**parts) -> str:
    """A short hash of `parts` (JSON-able: params, input digests, settings)."""
    return hashlib.sha256(json_bytes(parts)).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read a few MB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def input_digest(path: str | Path) -> str:
    """SHA-256 of a file's or folder's names and bytes, for a fingerprint."""
    path = Path(path)
    return tree_digest(path)["sha256"] if path.is_dir() else file_digest(path)


def tree_digest(root: str | Path) -> dict:
    """{"files", "bytes", "sha256"} of every file under `root`: SHA-256 over the sorted
    relative paths and contents, so it changes whenever any byte or name does."""
    root = Path(root)
    h, files, size = hashlib.sha256(), 0, 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        rel = path.relative_to(root).as_posix().encode()
        h.update(len(rel).to_bytes(8, "little") + rel + len(data).to_bytes(8, "little"))
        h.update(data)
        files, size = files + 1, size + len(data)
    return {"files": files, "bytes": size, "sha256": h.hexdigest()}
