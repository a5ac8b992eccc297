"""Every segmentation picture names its colours: the legend's swatches are the label
colours of exactly the classes the picture shows."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.segment.view import (
    classes_shown,
    palette,
    prediction_panels_png,
    segmentation_png,
)

NAMES = [f"class{k}, synonym{k}" for k in range(30)]
IGNORE = 255


def pixels(png: bytes) -> set[tuple[int, int, int]]:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    return set(map(tuple, np.unique(rgb, axis=0).tolist()))


def swatch_classes(png: bytes, num_classes: int) -> set[int]:
    """Classes whose exact palette colour appears in the picture: the overlays blend the
    colours with the image (alpha 0.6 over a black image here), so only a legend swatch
    holds a class's pure colour. Grey colours (r = g = b: tab20's two greys) are left out,
    since the anti-aliased black text holds greys too."""
    present = pixels(png)
    return {c for c, colour in enumerate(palette(num_classes).tolist())
            if tuple(colour) in present and len(set(colour)) > 1}


GREY = {c for c, colour in enumerate(palette(len(NAMES)).tolist()) if len(set(colour)) == 1}


def test_classes_shown_leaves_out_ignore_and_unknown_labels():
    a = np.array([[0, 3], [IGNORE, 3]])
    b = np.array([[7, 40], [0, 0]])  # 40: outside a 30-class vocabulary
    assert classes_shown([a, b], 30, IGNORE) == [0, 3, 7]
    assert classes_shown([a], 30) == [0, 3]  # 255 >= 30 is no class either
    assert classes_shown([], 30) == []


def test_segmentation_overlay_has_a_swatch_per_class_present():
    labels = np.zeros((48, 64), np.int64)
    labels[:, 20:40], labels[30:, 40:] = 5, 11
    png = segmentation_png(np.zeros((48, 64, 3), np.uint8), labels, NAMES)
    assert swatch_classes(png, len(NAMES)) == {0, 5, 11}


@pytest.mark.parametrize("rows_classes", [[(1, 2, 4)], [(0, 9), (3, 9, 21)]])
def test_prediction_panels_have_a_legend_per_row(rows_classes):
    """Each row's legend holds the union of its ground truth and predictions, not the
    ignore label; a class no row shows has no swatch."""
    rows, expected = [], set()
    for classes in rows_classes:
        gt = np.full((32, 32), IGNORE, np.int64)
        gt[:16] = classes[0]
        pred = np.full((32, 32), classes[0], np.int64)
        for k, c in enumerate(classes[1:]):
            pred[k * 4:(k + 1) * 4] = c
        rows.append({"image": np.zeros((32, 32, 3), np.uint8), "gt": gt,
                     "clip": pred, "ensemble": pred})
        expected |= set(classes)
    png = prediction_panels_png(rows, NAMES, IGNORE)
    assert swatch_classes(png, len(NAMES)) == expected


def test_many_classes_fit_in_columns():
    """A row predicting 30 classes gets a legend of several columns, every class in it."""
    labels = np.arange(30).repeat(4)[None].repeat(8, 0)  # (8, 120)
    row = {"image": np.zeros((8, 120, 3), np.uint8), "gt": labels, "ensemble": labels}
    assert swatch_classes(prediction_panels_png([row], NAMES, IGNORE), 30) == set(range(30)) - GREY
