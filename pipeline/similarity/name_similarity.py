"""The (K, K) similarity of an evaluation set's class names that Open mIoU weighs partly
right labels by (pipeline/segment/open_metrics.py), as `eval.open_similarity` names it:

- "wordnet_path": WordNet path similarity of the classes' synsets (the shipped synset
  files, pipeline/similarity/synsets.py); Zhou et al.'s default, a judge that does not
  depend on the model being scored.
- "clip_text": cosine of CLIP's text embeddings of the names (the prompt-ensembled zero-shot
  classifier, OVSeg §4.1), negatives set to 0 as Zhou et al.'s embedding matrices are. It
  is the scored model's own text tower: compare experiments under it only when they share
  the base CLIP.
- "identity": 1 on the diagonal, 0 elsewhere; Open mIoU is then mIoU.
- a path to a CSV file: the user's own K x K matrix, row i and column j the similarity of
  class i and class j in the set's class order, values in [0, 1]; an optional first row
  of class names is checked against the set's.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from pipeline.params.eval_schema import OPEN_SIMILARITY_MEASURES as MEASURES
from pipeline.params.eval_schema import open_similarity_error


class SimilarityError(ValueError):
    """A similarity matrix that cannot be used, with what is wrong and where."""


def text_cosine_similarity(text_features) -> np.ndarray:
    """(K, K) cosine of (K, D) unit text embeddings, clipped to [0, 1], diagonal 1."""
    f = np.asarray(text_features, dtype=np.float64)
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    out = np.clip(f @ f.T, 0.0, 1.0)
    np.fill_diagonal(out, 1.0)
    return out


def read_similarity_csv(path: str | Path, names: list[str]) -> np.ndarray:
    """A user's (K, K) similarity from CSV text, checked: K rows of K numbers in [0, 1]
    (an optional header row of the K class names first)."""
    path, k = Path(path), len(names)
    fix = (f"write {k} rows of {k} comma-separated numbers in [0, 1], one row and column "
           f"per class in the set's order, or set eval.open_similarity to one of "
           f"{', '.join(MEASURES)}")
    if not path.is_file():
        raise SimilarityError(f"{path}: no such similarity file ({fix})")
    rows = [r for r in csv.reader(io.StringIO(path.read_text("utf-8"))) if r]
    if rows and not _numeric(rows[0][0]):
        header = [c.strip() for c in rows.pop(0)]
        if header != list(names):
            raise SimilarityError(f"{path}: the header row names {header[:3]}... but the "
                                  f"set's {k} classes are {list(names)[:3]}... ({fix})")
    widths = sorted({len(r) for r in rows})
    if len(rows) != k or widths != [k]:
        raise SimilarityError(f"{path}: {len(rows)} rows of {widths} values, expected "
                              f"{k} x {k} for {k} classes ({fix})")
    try:
        m = np.array([[float(v) for v in r] for r in rows])
    except ValueError as e:
        raise SimilarityError(f"{path}: not a number: {e} ({fix})") from None
    bad = np.argwhere(~((m >= 0.0) & (m <= 1.0)))
    if len(bad):
        i, j = bad[0]
        raise SimilarityError(f"{path}: row {i + 1}, column {j + 1} is {m[i, j]}, outside "
                              f"[0, 1] ({len(bad)} such values; {fix})")
    return m


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def cached_path_similarity(synsets: list[str | None], cache_dir: str | Path,
                           wordnet_loader) -> np.ndarray:
    """`path_similarity_matrix` of the synsets, read from `cache_dir` when an entry for the
    same synset list exists, else computed (`wordnet_loader()` gives the WordNet reader
    only then) and written there atomically."""
    from pipeline.similarity.wordnet_similarity import path_similarity_matrix

    key = hashlib.sha256(json.dumps(["wordnet_path", synsets]).encode()).hexdigest()[:40]
    path = Path(cache_dir) / f"{key}.npy"
    if path.is_file():
        try:
            m = np.load(path)
            if m.shape == (len(synsets), len(synsets)):
                return m
        except (OSError, ValueError):  # a torn or foreign file: recompute it
            pass
    m = path_similarity_matrix(wordnet_loader(), synsets)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the process id in the name: under torchrun every rank may write the same entry at
    # once (atomic_write_bytes' one temporary name would be shared)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, m)
    os.replace(tmp, path)
    return m


@functools.cache
def _wordnet():
    """WordNet, read once per process (about 6 s): the automatic synset picks and the
    matrix both need it."""
    from pipeline.mining.nltk_setup import INSTALL_HELP, wordnet_reader

    wordnet = wordnet_reader()
    if wordnet is None:
        raise SimilarityError(f"eval.open_similarity wordnet_path needs WordNet. "
                              f"{INSTALL_HELP}")
    return wordnet


def class_name_similarity(choice: str, names: list[str], dataset: str, text_features,
                          cache_dir: str | Path) -> tuple[np.ndarray, dict]:
    """The (K, K) similarity `choice` gives the K class names of `dataset` (a canonical
    evaluation set name), and what the report says about it: the choice, and for
    WordNet how many names had no shipped synset (chosen automatically) and none at all.
    text_features: (K, D) CLIP text embeddings of the names, read for "clip_text" only."""
    from pipeline.similarity.synsets import class_synsets, shipped_synsets

    info = {"similarity": choice}
    if choice == "identity":
        return np.eye(len(names)), info
    if choice == "clip_text":
        return text_cosine_similarity(text_features), info
    if choice == "wordnet_path":
        shipped = shipped_synsets(dataset)
        needs_wordnet = any(n not in shipped for n in names)
        synsets, automatic = class_synsets(_wordnet() if needs_wordnet else None, names,
                                           dataset)
        info.update(automatic_synsets=automatic,
                    without_synset=[n for n, s in zip(names, synsets) if s is None])
        return cached_path_similarity(synsets, cache_dir, _wordnet), info
    why = open_similarity_error(choice)
    if why:
        raise SimilarityError(f"eval.open_similarity: {why}")
    return read_similarity_csv(choice, names), info
