"""Read dataset images and label maps as numpy arrays, and users' own images (any file
name on a command line) with a one-line reason when one cannot be read; encode arrays as
JPEG and PNG bytes (the same array, the same bytes)."""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageReadError(ValueError):
    """An image file that cannot be read; the message is one line naming the file."""


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


def bounded_size(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) scaled down, aspect kept, to at most `max_pixels` pixels; as is
    when it already fits or max_pixels is 0. A bound on the pixel count, not the short
    side, so that a very long thin image is bounded too."""
    if not max_pixels or height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    h = max(1, math.floor(height * scale))
    return h, max(1, min(math.floor(width * scale), max_pixels // h))  # h may round up to 1


def read_rgb_within(path: str | Path, max_pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(image (h, w, 3) uint8 of at most `max_pixels` pixels, the file's own (H, W)).

    Images that fit come back exactly as `read_rgb` reads them. Larger ones are resized
    bicubic; a JPEG is first decoded at 1/2 to 1/8 scale (PIL's draft mode), so its
    full-size pixels are never held. Raises ImageReadError with the reason in one line.
    """
    try:
        if os.path.getsize(path) == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            # PIL warns above ~89M pixels; such images are read at the bounded size here,
            # and PIL's own DecompressionBombError (above ~179M pixels) still refuses larger
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                full = (im.height, im.width)
                h, w = bounded_size(*full, max_pixels)
                if (h, w) == full:
                    return np.asarray(im.convert("RGB")), full  # as read_rgb reads it
                im.draft("RGB", (w, h))  # JPEG only: decode at the smallest scale >= (w, h)
                if im.mode not in ("RGB", "L"):  # palette, 1-bit, ...: no bicubic of their own
                    im = im.convert("RGB")
                # resized before any conversion: no second full-size copy (PNG has no draft)
                return np.asarray(im.resize((w, h), Image.BICUBIC).convert("RGB")), full
    except ImageReadError:
        raise
    except Exception as e:  # PIL's decoders raise many types (OSError, SyntaxError, ...)
        raise ImageReadError(f"{path}: {read_failure(e)}") from e


def read_failure(e: Exception) -> str:
    """Why an image could not be read, in a few words and one line."""
    first_line = (str(e).splitlines() or [""])[0]
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, IsADirectoryError):
        return "is a folder, not an image file"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, UnidentifiedImageError):
        return "not an image (no format PIL reads recognises it)"
    if isinstance(e, Image.DecompressionBombError):
        return f"refused as too large: {first_line}"
    if isinstance(e, MemoryError):
        return "out of memory while decoding"
    return f"truncated or corrupt ({type(e).__name__}: {first_line})"


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 or uint16 label map -> (H, W) = size, nearest (labels never blend)."""
    if labels.shape == tuple(size):
        return labels
    h, w = size
    return np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))


def encode_jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    """(H, W, 3) uint8 -> JPEG bytes, no chroma subsampling."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def encode_png(array: np.ndarray) -> bytes:
    """(H, W) or (H, W, 3) uint8 -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()
