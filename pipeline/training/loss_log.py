"""The per-step training log of a stage as a CSV (a DVC plot) and a PNG of its curves
(DVC's HTML plots load Vega from a CDN, unreachable offline), written the same way by
every training stage: base CLIP pretraining, the proposal net, FT and MPT."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.data.files import atomic_write_bytes
from pipeline.training.plots import curves_png


def loss_csv_bytes(rows: Sequence[Mapping], columns: Mapping[str, str]) -> bytes:
    """CSV of `rows` (dicts of at least the keys of `columns`): a header of the column
    names, then one line per row with each value formatted by its column's format spec
    ("" for as-is). Fixed precision keeps the file the same for the same run."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([format(r[k], spec) for k, spec in columns.items()])
    return buf.getvalue().encode()


def write_loss_log(csv_path: str | Path, png_path: str | Path, rows: Sequence[Mapping],
                   columns: Mapping[str, str], curves: Sequence[str], title: str,
                   empty_title: str | None = None) -> None:
    """Write the CSV of `rows` (see loss_csv_bytes) to csv_path and to png_path one panel
    per name in `curves` against the rows' "step". With no rows and an `empty_title`, the
    PNG is a flat placeholder of the first curve titled empty_title, so that a stage that
    trained nothing still leaves a picture that says so."""
    atomic_write_bytes(csv_path, loss_csv_bytes(rows, columns))
    if not rows and empty_title is not None:
        png = curves_png([0], {curves[0]: [0.0]}, "step", empty_title)
    else:
        png = curves_png([r["step"] for r in rows], {k: [r[k] for r in rows] for k in curves},
                         "step", title)
    atomic_write_bytes(png_path, png)
