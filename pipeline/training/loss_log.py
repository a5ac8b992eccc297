"""A PNG of a training stage's curves, drawn the same way by every training stage (base
CLIP pretraining, the proposal net, FT and MPT) from the rows of its step log, for reading
offline: the values are in the stage's DVCLive log (pipeline/training/live_log.py), whose
`dvc plots` HTML loads Vega from a CDN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.data.files import atomic_write_bytes
from pipeline.training.plots import curves_png


def write_loss_png(png_path: str | Path, rows: Sequence[Mapping], curves: Sequence[str],
                   title: str, empty_title: str | None = None) -> None:
    """Write to png_path one panel per name in `curves` against the rows' "step". With no
    rows and an `empty_title`, the PNG is a flat placeholder of the first curve titled
    empty_title, so that a stage that trained nothing still leaves a picture that says so."""
    if not rows and empty_title is not None:
        png = curves_png([0], {curves[0]: [0.0]}, "step", empty_title)
    else:
        png = curves_png([r["step"] for r in rows], {k: [r[k] for r in rows] for k in curves},
                         "step", title)
    atomic_write_bytes(png_path, png)
