"""Render synthetic scenes: stuff regions, thing blobs, per-pixel world-id labels.

Pure numpy. Every random draw comes from the `rng` passed in, so a scene is a function of
its seed alone (prepare_data seeds one generator per image: identical bytes on re-run,
whatever the number of worker processes). Trigonometry goes through portable_math, not
numpy's CPU-dependent kernels, so the bytes are also the same on every CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from pipeline.world import portable_math as pm
from pipeline.world.classes import STUFF_IDS, THING_IDS, WORLD_CLASSES, Appearance

PATTERNS = (
    "solid", "gradient", "speckle", "blotch", "stripes", "checker", "dots", "rings", "rays",
    "waves", "bricks",
)


@dataclass
class SceneObject:
    world_id: int
    mask: np.ndarray  # (H, W) bool, visible pixels after occlusion


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H, W) uint8 world ids
    things: list[SceneObject]
    stuff: list[SceneObject]


@cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel row and column coordinates, (H, W) float32 each; read-only, built once per size
    (every texture, blob and partition of every scene reads them)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _upsampled_noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """Uniform noise on a coarse grid of `cell`-pixel cells, bilinearly upsampled: (H, W)."""
    n = max(2, int(np.ceil(size / max(cell, 1.0))) + 2)
    coarse = rng.random((n, n), dtype=np.float32)
    pos = np.arange(size, dtype=np.float32) / max(cell, 1.0) + rng.random(dtype=np.float32)
    i0 = np.clip(pos.astype(int), 0, n - 2)
    f = pos - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]  # (H, n)
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def texture(look: Appearance, rng: np.random.Generator, size: int, center) -> np.ndarray:
    """A full-frame (H, W, 3) float32 texture of one class instance, in 0..255."""
    yy, xx = _grid(size)
    scale = size / 64.0
    period = look.period * scale * rng.uniform(0.9, 1.1)
    theta = np.deg2rad(look.angle + rng.uniform(-12, 12))
    cy, cx = center
    cos_t, sin_t = pm.cos(theta), pm.sin(theta)
    u = xx * cos_t + yy * sin_t
    v = -xx * sin_t + yy * cos_t
    phase = rng.uniform(0, 2 * np.pi)
    p = look.pattern
    if p == "solid":
        # shading across the object so "solid" is not a flat colour
        t = 0.25 * (((u - u.min()) / max(np.ptp(u), 1.0)) + rng.uniform(-0.2, 0.2))
    elif p == "gradient":
        t = np.clip(yy / size + rng.uniform(-0.2, 0.2), 0, 1)
    elif p == "speckle":
        t = (_upsampled_noise(rng, size, period) > 0.5).astype(np.float32)
    elif p == "blotch":
        t = (_upsampled_noise(rng, size, period) > 0.55).astype(np.float32)
    elif p == "stripes":
        t = (pm.sin(2 * np.pi * u / period + phase) > 0).astype(np.float32)
    elif p == "checker":
        t = ((np.floor(u / period + phase) + np.floor(v / period)) % 2).astype(np.float32)
    elif p == "dots":
        du = (u + phase * period) % period - period / 2
        dv = (v + phase * period) % period - period / 2
        t = (du**2 + dv**2 < (0.3 * period) ** 2).astype(np.float32)
    elif p == "rings":
        d = pm.hypot(yy - cy, xx - cx)
        t = (pm.sin(2 * np.pi * d / period + phase) > 0).astype(np.float32)
    elif p == "rays":
        ang = pm.arctan2(yy - cy, xx - cx)
        t = (pm.sin(period * ang + phase) > 0).astype(np.float32)
    elif p == "waves":
        t = (pm.sin(2 * np.pi * (yy + 2 * scale * pm.sin(2 * np.pi * xx / (4 * period) + phase))
                    / period) > 0).astype(np.float32)
    elif p == "bricks":
        row = np.floor(yy / period)
        mortar_h = (yy % period) < 1.2 * scale
        mortar_v = ((xx + (row % 2) * period) % (2 * period)) < 1.2 * scale
        t = (mortar_h | mortar_v).astype(np.float32)
    else:
        raise ValueError(f"unknown texture pattern {p!r}; known: {', '.join(PATTERNS)}")
    jitter = rng.normal(0, 8, size=3)
    a = np.asarray(look.color_a, np.float32) + jitter
    b = np.asarray(look.color_b, np.float32) + jitter
    # Mixed channel-first (inner loops over a row, not over 3 channels: 3x faster), the
    # same elementwise operations as a * (1 - t) + b * t, then scaled.
    img = a[:, None, None] * (1 - t) + b[:, None, None] * t  # (3, H, W)
    img *= rng.uniform(0.9, 1.1)
    return np.moveaxis(img, 0, -1)


def blob_mask(rng: np.random.Generator, size: int, center, radius: float) -> np.ndarray:
    """A random star-shaped blob, (H, W) bool. One distribution for every thing class, so
    a thing's outline carries no information about its class (pipeline/world/classes.py)."""
    yy, xx = _grid(size)
    cy, cx = center
    ang = pm.arctan2(yy - cy, xx - cx)
    dist = pm.hypot(yy - cy, xx - cx)
    # r(angle) = 1 + sum_k a_k / k cos(k angle + phase_k), k = 1..4: the four cosines in
    # one call (elementwise, so the same bits as four), the draws in their order a_k, phase_k.
    amps, args = [], []
    for k in range(1, 5):
        amps.append(rng.uniform(-0.3, 0.3) / k)
        args.append(k * ang + rng.uniform(0, 2 * np.pi))
    r = np.ones_like(ang)
    for amp, harmonic in zip(amps, pm.cos(np.stack(args))):
        r += amp * harmonic
    return dist < radius * np.clip(r, 0.35, None)


def stuff_partition(rng: np.random.Generator, size: int, k: int) -> np.ndarray:
    """Split the frame into k regions with smooth random borders: (H, W) int in [0, k)."""
    yy, xx = _grid(size)
    # Each region's field is a sum of 3 weighted plane waves. The draws keep their order
    # (frequency, sign, weight, phase); the 3k cosines are one elementwise call.
    weights, args = [], []
    for _ in range(3 * k):
        freq = rng.uniform(0.3, 1.5, size=2) * rng.choice([-1, 1], size=2)
        weights.append(rng.uniform(0.5, 1.0))
        args.append(2 * np.pi * (freq[0] * xx + freq[1] * yy) / size + rng.uniform(0, 2 * np.pi))
    waves = pm.cos(np.stack(args))  # (3k, H, W)
    fields = np.zeros((k, size, size), np.float32)
    for i in range(3 * k):
        fields[i // 3] += weights[i] * waves[i]
    return np.argmax(fields, axis=0)


def render_scene(
    rng: np.random.Generator,
    size: int,
    thing_ids: list[int],
    num_stuff: int,
    min_stuff_fraction: float = 0.05,
) -> Scene:
    """Paint stuff regions, then thing blobs in order (later ones occlude earlier ones)."""
    stuff_ids = [int(s) for s in rng.choice(STUFF_IDS, size=num_stuff, replace=False)]
    part = stuff_partition(rng, size, num_stuff)
    # Regions too small to name are merged into the largest one.
    counts = np.bincount(part.ravel(), minlength=num_stuff)
    largest = int(np.argmax(counts))
    for r in range(num_stuff):
        if counts[r] < min_stuff_fraction * size * size:
            part[part == r] = largest
    labels = np.asarray(stuff_ids, np.uint8)[part]
    image = np.zeros((size, size, 3), np.float32)
    for r, wid in enumerate(stuff_ids):
        region = part == r
        if region.any():
            tex = texture(WORLD_CLASSES[wid].look, rng, size, (size / 2, size / 2))
            image[region] = tex[region]

    scale = size / 64.0
    masks = []
    for wid in thing_ids:
        center = (rng.uniform(0.15, 0.85) * size, rng.uniform(0.15, 0.85) * size)
        mask = blob_mask(rng, size, center, rng.uniform(6, 14) * scale)
        tex = texture(WORLD_CLASSES[wid].look, rng, size, center)
        image[mask] = tex[mask]
        labels[mask] = wid
        masks.append(mask)

    things = []
    for i, wid in enumerate(thing_ids):
        visible = masks[i].copy()
        for later in masks[i + 1:]:
            visible &= ~later
        things.append(SceneObject(wid, visible))
    stuff = [SceneObject(w, labels == w) for w in stuff_ids if (labels == w).any()]
    image += rng.normal(0, 4, size=image.shape).astype(np.float32)  # sensor noise
    return Scene(np.clip(image, 0, 255).astype(np.uint8), labels, things, stuff)


def sample_training_scene(rng: np.random.Generator, size: int, max_things: int) -> Scene:
    """A COCO-like scene: 1-3 stuff regions, 1..max_things things of uniformly drawn
    classes (a class may repeat: "two dogs")."""
    num_stuff = int(rng.choice([1, 2, 3], p=[0.25, 0.45, 0.30]))
    n = int(rng.integers(1, max_things + 1))
    thing_ids = [int(t) for t in rng.choice(THING_IDS, size=n)]
    return render_scene(rng, size, thing_ids, num_stuff)


def sample_probe_scene(rng: np.random.Generator, size: int, thing_id: int) -> Scene:
    """A single-object scene on 1-2 stuff regions, for the zero-shot probe."""
    return render_scene(rng, size, [thing_id], int(rng.integers(1, 3)))
