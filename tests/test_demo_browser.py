"""The demo page in a real headless browser (Debian's Chromium): after a segmentation the
rendered page shows the legend, one row per class of the label map, and the overlay."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.demo.browser_check import chromium_path, segment_in_browser
from tests.test_demo import WORDS, legend_rows, segment, serve

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="no Chromium: `make test` installs Debian's chromium "
    "where it can (root and apt-get), or install it yourself")


def test_rendered_page_shows_the_legend(tiny_models, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(5).random((48, 64, 3)) * 255).astype(np.uint8)
                    ).save(photo)
    blocks, client = serve(tiny_models, tmp_path)
    try:
        seen = segment_in_browser(blocks.local_url, photo, WORDS, tmp_path / "page.png")
        _, _, legend, _, _ = segment(client, photo)  # the same request through the client
    finally:
        blocks.close()
    names = [w.split(",")[0] for w in WORDS.splitlines()]
    want = [f"{name} {100 * share:.1f}%" for _, share, name in legend_rows(legend)]
    assert want and seen.legend == want
    assert all(row.rsplit(" ", 1)[0] in names for row in seen.legend)
    assert seen.overlay_shown and "photo.png" in seen.message
    assert Image.open(tmp_path / "page.png").size[0] >= 1280
