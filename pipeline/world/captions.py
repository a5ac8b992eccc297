"""COCO-style captions for synthetic scenes.

Captions name a random subset of the visible things (as COCO annotators do), with
synonyms, counts, size and colour adjectives, spatial relations read off the masks, and
the stuff they stand on. They also carry the non-visual words real captions have ("a
photo of", "a view of", "in the scene") that the noun miner must learn to drop.
"""

from __future__ import annotations

import numpy as np

from pipeline.world.classes import WORLD_CLASSES
from pipeline.world.render import Scene

OPENERS = ("", "", "", "a photo of ", "an image of ", "a picture of ", "a view of ",
           "a close up of ", "a group of ")
STUFF_PREPOSITIONS = {
    "sky": ("under the", "below a clear", "against the"),
    "grass": ("on the", "in the", "on some"),
    "water": ("in the", "near the", "by the"),
    "sand": ("on the", "in the"),
    "road": ("on the", "in the middle of the", "beside the"),
    "wall": ("in front of a", "by the", "next to a"),
    "snow": ("in the", "on the"),
    "dirt": ("on the", "in the"),
}
NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}
MIN_VISIBLE_PIXELS_AT_64 = 25  # smaller fragments are not named


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(rng, wid: int, count: int, area_fraction: float) -> str:
    cls = WORLD_CLASSES[wid]
    k = int(rng.integers(len(cls.names))) if rng.random() < 0.35 else 0
    noun = cls.plurals[k] if count > 1 else cls.names[k]
    adj = ""
    roll = rng.random()
    if roll < 0.25:
        adj = cls.colour_word
    elif roll < 0.45:
        if area_fraction < 0.04:
            adj = str(rng.choice(["small", "little", "tiny"]))
        elif area_fraction > 0.09:
            adj = str(rng.choice(["large", "big", "huge"]))
    head = f"{adj} {noun}" if adj else noun
    if count > 1:
        qty = NUMBER_WORDS.get(count, "several") if rng.random() < 0.7 else "some"
        return f"{qty} {head}"
    det = "the" if rng.random() < 0.15 else _article(head)
    return f"{det} {head}"


def _relation(a: np.ndarray, b: np.ndarray, rng) -> str:
    """Spatial relation of mask a to mask b from their centroids (image y grows down)."""
    ya, xa = np.argwhere(a).mean(axis=0)
    yb, xb = np.argwhere(b).mean(axis=0)
    dy, dx = ya - yb, xa - xb
    if max(abs(dx), abs(dy)) < 8 * a.shape[0] / 64:
        return str(rng.choice(["next to", "near", "beside"]))
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def caption_scene(scene: Scene, rng: np.random.Generator, num: int) -> list[str]:
    """`num` captions for one scene."""
    size = scene.labels.shape[0]
    min_px = MIN_VISIBLE_PIXELS_AT_64 * (size / 64.0) ** 2
    # group visible things by class: (world id, count, union mask)
    groups: dict[int, list[np.ndarray]] = {}
    for obj in scene.things:
        if obj.mask.sum() >= min_px:
            groups.setdefault(obj.world_id, []).append(obj.mask)
    items = [(wid, len(ms), np.logical_or.reduce(ms)) for wid, ms in groups.items()]
    stuff = [s for s in scene.stuff if s.mask.mean() >= 0.1]
    captions = []
    for _ in range(num):
        captions.append(_one_caption(rng, items, stuff, size))
    return captions


def _one_caption(rng, items, stuff, size) -> str:
    order = rng.permutation(len(items))
    picked = [items[i] for i in order[: int(rng.integers(1, min(3, len(items)) + 1))]] if items \
        else []
    phrases = [_noun_phrase(rng, wid, n, m.sum() / size**2) for wid, n, m in picked]
    stuff_phrase = ""
    if stuff and (rng.random() < 0.6 or not phrases):
        s = stuff[int(rng.integers(len(stuff)))]
        cls = WORLD_CLASSES[s.world_id]
        prep = str(rng.choice(STUFF_PREPOSITIONS[cls.name]))
        noun = cls.names[int(rng.integers(len(cls.names)))]
        stuff_phrase = f" {prep} {noun}"
    if not phrases:
        text = f"an empty scene{stuff_phrase}"
    elif len(phrases) == 2 and rng.random() < 0.7:
        rel = _relation(picked[0][2], picked[1][2], rng)
        text = f"{phrases[0]} {rel} {phrases[1]}{stuff_phrase}"
    elif len(phrases) >= 2:
        text = ", ".join(phrases[:-1]) + f" and {phrases[-1]}{stuff_phrase}"
    else:
        text = f"{phrases[0]}{stuff_phrase}"
    form = rng.random()
    if form < 0.15 and phrases:
        plural = picked[0][1] > 1 or len(phrases) > 1
        text = f"there {'are' if plural else 'is'} {text}"
    elif form < 0.25 and phrases:
        text = f"{text} in the scene"
    else:
        text = str(rng.choice(OPENERS)) + text
    if rng.random() < 0.7:
        text = text[0].upper() + text[1:]
    return text + ("." if rng.random() < 0.8 else "")
