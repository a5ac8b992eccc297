"""Training augmentation of the proposal net, as MaskFormer trains semantic segmentation
(its MaskFormerSemanticDatasetMapper over detectron2 transforms; OVSeg §4.1 keeps it):
random short-side resize, a random crop kept off single-class crops, SSD colour jitter,
horizontal flip, then padding up to the square crop.

numpy in, numpy out. Every draw comes from the `rng` passed in, never a global RNG, so the
trainer can key it by (seed, step, image) and a resumed run sees the same batches.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# the net's normalisation mean (model.IMAGENET_MEAN) in 0-255: padded pixels become ~0
# after it, as detectron2's zero padding of normalised images (MaskFormer pads 128)
PAD_RGB = (124, 116, 104)
# long side at most this x the short side (training: x crop_size); MaskFormer:
# MAX_SIZE_TRAIN / MAX_SIZE_TEST 2048 at 512, 2560 at 640
MAX_LONG_SIDE = 4
CROP_TRIES = 10  # detectron2 RandomCrop_CategoryAreaConstraint


def short_side_choices(crop_size: int, scale_min: float, scale_max: float) -> list[int]:
    """Short sides to draw from: crop_size * x / 10 for x in 10*scale_min..10*scale_max
    (MaskFormer: int(x * 0.1 * crop) for x in 5..20, "choice" sampling)."""
    lo, hi = round(scale_min * 10), round(scale_max * 10)
    if lo > hi or lo < 1:
        raise ValueError(f"no short side between {scale_min} and {scale_max} x {crop_size}")
    return [crop_size * x // 10 for x in range(lo, hi + 1)]


def short_side_shape(h: int, w: int, short: int, max_long: int) -> tuple[int, int]:
    """(h, w) scaled, aspect kept, to short side `short`, then down so the long side is at
    most `max_long`; rounded to the nearest pixel (detectron2 ResizeShortestEdge)."""
    scale = short / min(h, w)
    if max(h, w) * scale > max_long:
        scale = max_long / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_pair(image: np.ndarray, labels: np.ndarray, shape: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) bilinear, labels (H, W) nearest, both to `shape` (h, w); as they are
    when already that size. Labels never blend: a pixel keeps one class."""
    if image.shape[:2] == shape:
        return image, labels
    size = (shape[1], shape[0])  # PIL: (width, height)
    return (np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)),
            np.asarray(Image.fromarray(labels).resize(size, Image.NEAREST)))


def crop_window(labels: np.ndarray, crop_size: int, rng: np.random.Generator,
                max_area: float = 1.0, ignore: int = 255) -> tuple[int, int, int, int]:
    """(y0, x0, height, width) of a random crop of at most crop_size a side (the whole side
    when shorter). Below max_area 1, up to 10 windows are drawn until one has two or more
    classes and none covering max_area of its labelled pixels; else the last one is kept
    (detectron2 RandomCrop_CategoryAreaConstraint)."""
    h, w = labels.shape
    ch, cw = min(crop_size, h), min(crop_size, w)
    for _ in range(1 if max_area >= 1.0 else CROP_TRIES):
        y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        classes, counts = np.unique(labels[y0:y0 + ch, x0:x0 + cw], return_counts=True)
        counts = counts[classes != ignore]
        if len(counts) > 1 and counts.max() < counts.sum() * max_area:
            break
    return y0, x0, ch, cw


def _scaled(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 with SSD's photometric distortions, each with probability 1/2:
    brightness +-32, then contrast x[0.5, 1.5] before or after saturation x[0.5, 1.5] and
    hue +-18 of 180 (MaskFormer's ColorAugSSDTransform)."""
    if rng.random() < 0.5:
        image = _scaled(image, beta=rng.uniform(-32, 32))
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        image = _scaled(image, alpha=rng.uniform(0.5, 1.5))
    saturation = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else None
    hue = int(rng.integers(-18, 19)) if rng.random() < 0.5 else None
    if saturation is not None or hue is not None:
        hsv = np.array(Image.fromarray(image).convert("HSV"))  # PIL: hue in 0-255
        if saturation is not None:
            hsv[..., 1] = _scaled(hsv[..., 1], alpha=saturation)
        if hue is not None:
            hsv[..., 0] = (hsv[..., 0].astype(np.int32) + round(hue * 256 / 180)) % 256
        image = np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))
    if not contrast_first and rng.random() < 0.5:
        image = _scaled(image, alpha=rng.uniform(0.5, 1.5))
    return image


def pad_to(image: np.ndarray, labels: np.ndarray, size: int, ignore: int = 255
           ) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom and right up to (size, size): the image with PAD_RGB, labels with
    `ignore`, so padding never enters a loss (MaskFormer's semantic dataset mapper)."""
    h, w = labels.shape
    if (h, w) == (size, size):
        return image, labels
    out_image = np.empty((size, size, 3), dtype=np.uint8)
    out_image[:] = PAD_RGB
    out_image[:h, :w] = image
    out_labels = np.full((size, size), ignore, dtype=labels.dtype)
    out_labels[:h, :w] = labels
    return out_image, out_labels


def augment(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
            crop_size: int, scale_min: float = 1.0, scale_max: float = 1.0,
            max_area: float = 1.0, flip: bool = False, color_jitter: bool = False,
            ignore: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """image (H, W, 3) uint8, labels (H, W) uint8 -> (C, C, 3), (C, C) with C = crop_size:
    resize, crop, colour, flip, pad, in MaskFormer's order. With scale 1/1 and no flip or
    colour, a C x C input comes back as it is."""
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and labels {labels.shape} differ in size")
    short = short_side_choices(crop_size, scale_min, scale_max)
    shape = short_side_shape(*labels.shape, short[int(rng.integers(len(short)))],
                             MAX_LONG_SIDE * crop_size)
    image, labels = resize_pair(image, labels, shape)
    y0, x0, ch, cw = crop_window(labels, crop_size, rng, max_area, ignore)
    image, labels = image[y0:y0 + ch, x0:x0 + cw], labels[y0:y0 + ch, x0:x0 + cw]
    if color_jitter:
        image = photometric_jitter(image, rng)
    if flip and rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    image, labels = pad_to(image, labels, crop_size, ignore)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)
