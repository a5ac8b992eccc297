"""The class pairs an evaluation's mistakes fall on (metrics/eval/<set>_confusions.csv):
the off-diagonal cells of the confusion matrix holding the most pixels, each with the
similarity of the two names, so a reader tells name ambiguity ("building" labelled
"skyscraper", OVSeg §4.4.2) from real errors ("building" labelled "sky") at a glance."""

from __future__ import annotations

import numpy as np

CONFUSION_COLUMNS = ("rank", "ground_truth", "predicted", "pixels", "share_of_errors",
                     "share_of_class", "similarity")


def top_confusions(conf: np.ndarray, similarity: np.ndarray, names: list[str],
                   count: int) -> list[dict]:
    """The `count` off-diagonal cells of a (K, K) confusion matrix (rows: ground truth,
    columns: prediction) with the most pixels, most first (ties: ground truth, then
    prediction, in class order). share_of_errors: of all mislabelled pixels;
    share_of_class: of the ground-truth class's pixels."""
    conf = np.asarray(conf, dtype=np.int64)
    errors = conf.copy()
    np.fill_diagonal(errors, 0)
    total, per_class = int(errors.sum()), conf.sum(axis=1)
    cells = np.flatnonzero(errors)
    # stable sort on -pixels keeps row-major (ground truth, prediction) order within ties
    cells = cells[np.argsort(-errors.ravel()[cells], kind="stable")][:count]
    rows = []
    for rank, cell in enumerate(cells, start=1):
        g, p = divmod(int(cell), len(conf))
        rows.append({"rank": rank, "ground_truth": names[g], "predicted": names[p],
                     "pixels": int(errors[g, p]),
                     "share_of_errors": errors[g, p] / total,
                     "share_of_class": errors[g, p] / per_class[g],
                     "similarity": float(similarity[g, p])})
    return rows


def confusions_csv(rows: list[dict]) -> bytes:
    """The pairs as CSV, shares and similarity to 6 decimals; names quoted (they hold
    commas: "road, route")."""
    lines = [",".join(CONFUSION_COLUMNS)]
    for r in rows:
        lines.append(",".join([str(r["rank"]), _quoted(r["ground_truth"]),
                               _quoted(r["predicted"]), str(r["pixels"]),
                               f"{r['share_of_errors']:.6f}", f"{r['share_of_class']:.6f}",
                               f"{r['similarity']:.6f}"]))
    return ("\n".join(lines) + "\n").encode()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
