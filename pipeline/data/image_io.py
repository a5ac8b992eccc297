"""Read dataset images and label maps as numpy arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def read_rgb(path: str | Path, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8; resized bicubic to `size` (side, or (height, width)) if given."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None:
            h, w = (size, size) if isinstance(size, int) else size
            if im.size != (w, h):
                im = im.resize((w, h), Image.BICUBIC)
        return np.asarray(im)


def read_labels(path: str | Path, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) uint8 label map; resized nearest to `size` if given (labels never blend)."""
    with Image.open(path) as im:
        if size is not None:
            h, w = (size, size) if isinstance(size, int) else size
            if im.size != (w, h):
                im = im.resize((w, h), Image.NEAREST)
        return np.asarray(im)
