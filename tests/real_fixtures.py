"""Real-shape dataset trees for tests (issue 17, item 4): COCO-Stuff for training, ADE20K-150
and Pascal Context (459 and 59) for evaluation, in exactly the detectron2-prepared layouts,
file formats, label encodings and image sizes of the real datasets, with procedurally drawn
content. The real data cannot be downloaded here; these trees let the real-data path
(data.source: coco, eval.datasets: [ade20k_150, ...]) run end to end.

Layout written by the command line (`python -m tests.real_fixtures --out OUT ...`); point
`data.coco.root` at OUT/coco and `eval.root` at OUT:

    OUT/coco/                                       data.coco.root (CocoPaths defaults)
        train2017/000000000009.jpg ...              RGB JPEG, quality 90, ~640x480
        annotations/captions_train2017.json         COCO captions: 5 per image
        stuffthingmaps_detectron2/train2017/000000000009.png ...
                                                    uint8 (mode L), 0..170 COCO-Stuff-171
                                                    contiguous ids, 255 = unlabelled
    OUT/ADEChallengeData2016/                       eval.root = OUT
        images/validation/ADE_val_00000001.jpg ...  ~683x512
        annotations_detectron2/validation/ADE_val_00000001.png ...
                                                    uint8, 0..149, 255 = ignore
    OUT/VOCdevkit/VOC2010/
        JPEGImages/2008_000002.jpg ...              every image "of the year": also images
                                                    with no label map, as the real folder
        annotations_detectron2/pc459_val/<stem>.tif uint16 TIFF (mode I;16), 0..458,
                                                    65535 = ignore
        annotations_detectron2/pc59_val/<stem>.png  uint8, 0..58, 255 = ignore (PC-459's
                                                    map with classes outside PC-59 ignored)

Scenes: two or three stuff bands with wavy borders (sky or wall over trees or buildings
over grass, road, floor ...) and several thing blobs drawn from one shared outline
distribution; an unlabelled rim on some blobs and the odd unlabelled patch, as in
COCO-Stuff. Each class is painted with its own colours and texture (stripes or checks at a
class-specific frequency and angle, keyed by the class name, so "grass" looks the same in
every dataset): a model could learn appearance. COCO captions name things present in the
label map (and a stuff region) by their class names ("A dog next to a bicycle on the
grass"), so caption-noun mining finds nouns that match proposals.

Everything is a function of (seed, dataset, image position): the same call writes the same
bytes, and the first n images of a larger tree are those of a smaller one.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.class_lists import builtin_class_list
from pipeline.data.eval_datasets import EVAL_LAYOUTS
from pipeline.params import CocoPaths

JPEG_QUALITY = 90
MIN_NAMED_FRACTION = 0.004  # a thing smaller than this share of the image is not named
CAPTIONS_PER_IMAGE = 5  # as COCO
# (width, height) drawn per image: the common sizes of each dataset
COCO_SIZES = ((640, 480), (480, 640), (640, 427), (500, 375), (640, 426), (427, 640),
              (612, 612), (640, 360))
ADE_SIZES = ((683, 512), (512, 683), (640, 480), (512, 512), (768, 512))
PASCAL_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 500))
_CODES = {"coco_stuff_171": 1, "ade20k_150": 2, "pascal_context": 3}  # per-dataset seed part

# Stuff bands, top to bottom, by class name (each dataset keeps the names it has).
TOP = ("sky-other", "clouds", "fog", "ceiling-other", "ceiling-tile", "wall-other", "wall-brick",
       "wall-concrete", "wall-tile", "wall-wood", "sky", "wall", "ceiling")
MIDDLE = ("tree", "building-other", "mountain", "hill", "bush", "fence", "house", "skyscraper",
          "bridge", "curtain", "cabinet", "shelf", "window-other", "leaves", "building",
          "mountain, mount", "bridge, span", "window")
BOTTOM = ("grass", "sand", "road", "pavement", "dirt", "snow", "sea", "river", "water-other",
          "floor-wood", "floor-tile", "floor-other", "carpet", "rug", "gravel", "playingfield",
          "mud", "railroad", "platform", "floor", "road, route", "sidewalk, pavement",
          "earth, ground", "water", "field", "ground", "sidewalk")


@dataclass(frozen=True)
class FixtureImage:
    """One image of a tree; `label` None for an image with no label map (Pascal)."""

    stem: str
    image: Path
    label: Path | None
    width: int
    height: int
    classes: tuple[int, ...] = ()  # label values present, ignore left out
    captions: tuple[str, ...] = ()
    named: tuple[int, ...] = ()  # classes the captions name, each present in the label map


@dataclass(frozen=True)
class FixtureTree:
    """A written tree. `root` is what the pipeline is pointed at (data.coco.root for COCO,
    eval.root for the evaluation sets); `images` are the labelled images in stem order."""

    name: str
    root: Path
    images: tuple[FixtureImage, ...]
    unlabelled: tuple[Path, ...] = ()
    seconds: float = field(default=0.0, compare=False)  # wall time of the writing


# ---- appearance and scenes -------------------------------------------------------------

TILE = 64  # texture period in pixels: every class's texture is a TILE x TILE tile


@cache
def textures(class_list: str) -> np.ndarray:
    """(K, TILE * TILE, 3) uint8: each class's texture tile, keyed by the class name (its
    first synonym): two colours in stripes or checks at a class-specific frequency and
    angle, and noise of a class-specific strength."""
    names = builtin_class_list(class_list).names
    y, x = np.mgrid[0:TILE, 0:TILE].astype(np.float32) / TILE
    tiles = np.empty((len(names), TILE * TILE, 3), dtype=np.uint8)
    for k, name in enumerate(names):
        r = np.random.default_rng(zlib.crc32(name.split(",")[0].encode()))
        base = r.uniform(30, 225, 3).astype(np.float32)
        second = np.clip(base + r.uniform(-80, 80, 3), 0, 255).astype(np.float32)
        fx, fy = r.integers(-6, 7, 2)  # whole cycles per tile: the tile repeats seamlessly
        fy = fy if fx or fy else 1
        t = np.sin(2 * np.pi * (fx * x + fy * y))
        if r.random() < 0.35:  # checks
            t = np.sign(t * np.sin(2 * np.pi * (fx * y - fy * x) + 0.5))
        img = base + (0.5 + 0.5 * t)[..., None] * (second - base)
        img += r.standard_normal((TILE, TILE, 1)).astype(np.float32) * r.uniform(3, 15)
        tiles[k] = np.clip(img, 0, 255).reshape(-1, 3)
    return tiles


@dataclass(frozen=True)
class Vocabulary:
    """Which label values a scene draws its stuff bands and things from."""

    top: np.ndarray
    middle: np.ndarray
    bottom: np.ndarray
    things: np.ndarray
    common_things: np.ndarray  # drawn 80% of the time (PC-459: those PC-59 keeps)


def _ids(names: tuple[str, ...], wanted) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    return np.asarray(sorted(index[n] for n in wanted if n in index), dtype=np.int64)


@cache
def vocabulary(class_list: str) -> Vocabulary:
    classes = builtin_class_list(class_list)
    names = classes.names
    top, middle, bottom = (_ids(names, group) for group in (TOP, MIDDLE, BOTTOM))
    stuff = set(top) | set(middle) | set(bottom)
    if class_list == "coco_stuff_171":  # things: the 80 COCO thing classes
        things = np.flatnonzero(classes.isthing)
    else:
        things = np.asarray([i for i in range(len(names)) if i not in stuff])
    common = things
    if class_list == "pascal_context_459":
        kept = set(builtin_class_list("pascal_context_59").names)
        common = np.asarray([i for i in things if names[i] in kept])
    assert min(len(top), len(middle), len(bottom), len(common)) > 0, class_list
    return Vocabulary(top, middle, bottom, things, common)


def _wavy(rng, n: int, amplitude: float) -> np.ndarray:
    """(n,) float32: a smooth random curve, a few low-frequency sines of `amplitude`."""
    x = np.arange(n, dtype=np.float32) / max(n, 1)
    y = np.zeros(n, dtype=np.float32)
    for f in (1, 2, 3):
        y += amplitude / f * np.sin(2 * np.pi * (f * x + rng.random()))
    return y


def _blob(rng, h: int, w: int, scale: float):
    """(box, inside, rim): a random blob, a rotated ellipse whose boundary wobbles
    smoothly; inside and rim are boolean masks of the image's `box` (a pair of slices),
    rim its outer edge. Every thing class draws its outline from this one distribution."""
    r0 = scale * min(h, w)
    su, sv = np.exp(rng.uniform(-0.4, 0.4, 2)).astype(np.float32)
    angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.3 * h, 0.95 * h), rng.uniform(0.05 * w, 0.95 * w)
    reach = r0 * max(su, sv) * 1.3  # sqrt(1 + the wobble's 0.6 at most)
    y0, y1 = int(max(0, cy - reach)), int(min(h, cy + reach + 1))
    x0, x1 = int(max(0, cx - reach)), int(min(w, cx + reach + 1))
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u, v = (dx * c + dy * s) / su, (dy * c - dx * s) / sv
    q = u * u + v * v
    limit = np.float32(r0 * r0) * (1 + _wavy(rng, y1 - y0, 0.15)[:, None]
                                   + _wavy(rng, x1 - x0, 0.15)[None, :])
    inside = q <= limit
    return (slice(y0, y1), slice(x0, x1)), inside, inside & (q > 0.85 * limit)


def draw_scene(rng, h: int, w: int, vocab: Vocabulary, ignore: int):
    """(labels (h, w) uint16 with `ignore` where unlabelled, paint (h, w) uint8: each
    pixel's position in `drawn`, drawn: the classes drawn (stuff bands top to bottom, then
    things), stuff: the stuff classes)."""
    n_bands = int(rng.integers(2, 4))
    groups = (vocab.top, vocab.bottom) if n_bands == 2 else (vocab.top, vocab.middle,
                                                             vocab.bottom)
    stuff = [int(rng.choice(g)) for g in groups]
    rows = np.arange(h, dtype=np.float32)[:, None]
    paint = np.zeros((h, w), dtype=np.uint8)
    for m in np.sort(rng.uniform(0.25, 0.75, n_bands - 1)):
        paint += rows >= (m * h + _wavy(rng, w, rng.uniform(0.02, 0.08) * h))[None, :]
    drawn = list(stuff)
    unlabelled = np.zeros((h, w), dtype=bool)
    for _ in range(int(rng.integers(3, 7))):
        pool = vocab.common_things if rng.random() < 0.8 else vocab.things
        drawn.append(int(rng.choice(pool)))
        box, inside, rim = _blob(rng, h, w, rng.uniform(0.05, 0.2))
        paint[box][inside] = len(drawn) - 1
        unlabelled[box][inside] = False
        if rng.random() < 0.5:  # COCO-Stuff leaves object borders unlabelled here and there
            unlabelled[box][rim] = True
    if rng.random() < 0.3:  # and the odd region nobody labelled
        box, inside, _ = _blob(rng, h, w, 0.06)
        unlabelled[box][inside] = True
    drawn = np.asarray(drawn)
    labels = drawn.astype(np.uint16)[paint]
    labels[unlabelled] = ignore
    return labels, paint, drawn, np.asarray(stuff)


def paint_image(rng, paint: np.ndarray, drawn: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8: each pixel from its class's texture tile, lit a little from above,
    with some camera noise."""
    h, w = paint.shape
    where = ((np.arange(h) % TILE)[:, None] * TILE + (np.arange(w) % TILE)[None, :])
    img = tiles[drawn].reshape(-1, 3)[paint.astype(np.int32) * (TILE * TILE) + where]
    light = (1.1 + rng.uniform(-0.1, 0.1) - 0.25 * np.arange(h) / h) * 128  # (h,)
    img = (img.astype(np.int16) * light.astype(np.int16)[:, None, None]) >> 7
    img += rng.integers(-4, 5, (h, w, 1), dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def render(rng, h: int, w: int, class_list: str, ignore: int):
    """(labels (h, w) uint16, image (h, w, 3) uint8, the stuff classes) of a new scene."""
    labels, paint, drawn, stuff = draw_scene(rng, h, w, vocabulary(class_list), ignore)
    return labels, paint_image(rng, paint, drawn, textures(class_list)), stuff


def present(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes present, their pixel counts), ignore left out."""
    counts = np.bincount(labels.ravel(), minlength=num_classes)[:num_classes]
    ids = np.flatnonzero(counts)
    return ids, counts[ids]


# ---- captions ---------------------------------------------------------------------------

CAPTION_WORDS = {"sports ball": "ball", "dining table": "table",
                 "playingfield": "playing field", "waterdrops": "raindrops",
                 "window-blind": "window blind", "wall-panel": "wall panel",
                 "structural-other": "structure", "solid-other": "solid object"}
MATERIAL_WORDS = {"wood": "wooden", "tile": "tiled"}
TEMPLATES = ("{A} next to {b} on the {s}", "{A} and {b} in front of the {s}",
             "a photo of {a} near the {s}", "there is {b} beside {a}",
             "{A} with {b} and the {s} behind it", "{A} on the {s}",
             "a view of {a} and {b}", "{A} close to {b} by the {s}")


def caption_word(name: str) -> str:
    """The words a caption uses for a COCO-Stuff class: "sky-other" -> "sky",
    "floor-wood" -> "wooden floor", "sports ball" -> "ball"."""
    if name in CAPTION_WORDS:
        return CAPTION_WORDS[name]
    if "-" in name:
        head, kind = name.split("-", 1)
        return head if kind in ("other", "stuff") else f"{MATERIAL_WORDS.get(kind, kind)} {head}"
    return name


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def captions_for(rng, names, labels: np.ndarray, stuff: np.ndarray, things: set[int]
                 ) -> tuple[list[str], list[int]]:
    """(5 captions, the classes they name): visible things by area, and a stuff band."""
    ids, counts = present(labels, len(names))
    big = counts >= MIN_NAMED_FRACTION * labels.size
    visible = [int(i) for i, _ in sorted(zip(ids[big], counts[big]), key=lambda p: -p[1])
               if i in things]
    shown_stuff = [int(s) for s in stuff if s in set(ids[big].tolist())] or [int(ids[0])]
    if len(visible) < 2:  # fill the second thing slot with stuff
        visible += [s for s in shown_stuff if s not in visible][: 2 - len(visible)]
    visible = visible or shown_stuff
    named: set[int] = set()
    captions = []
    for k in rng.permutation(len(TEMPLATES))[:CAPTIONS_PER_IMAGE]:
        pick = rng.permutation(min(len(visible), 3))
        a = visible[pick[0]]
        b = visible[pick[1]] if len(pick) > 1 else shown_stuff[-1]
        s = shown_stuff[int(rng.integers(len(shown_stuff)))]
        template = TEMPLATES[k]
        text = template.format(A=_a(caption_word(names[a])), a=_a(caption_word(names[a])),
                               b=_a(caption_word(names[b])), s=caption_word(names[s]))
        named.update(c for c, keys in ((a, ("{a}", "{A}")), (b, ("{b}",)), (s, ("{s}",)))
                     if any(key in template for key in keys))
        text = text[0].upper() + text[1:] + ("." if rng.random() < 0.5 else "")
        captions.append(text)
    return captions, sorted(named)


# ---- writers ----------------------------------------------------------------------------

def _save_jpeg(img: np.ndarray, path: Path) -> None:
    Image.fromarray(img).save(path, quality=JPEG_QUALITY)


def _sized_rng(seed: int, dataset: str, i: int, sizes):
    """The image's generator and its (width, height); the first draws are its size and
    the gap to its predecessor's id."""
    rng = np.random.default_rng([seed, _CODES[dataset], i])
    w, h = sizes[int(rng.integers(len(sizes)))]
    return rng, w, h, int(rng.integers(1, 4000))


def make_coco_stuff(root: str | Path, n_images: int, seed: int = 0,
                    paths: CocoPaths | None = None) -> FixtureTree:
    """A detectron2-prepared COCO-Stuff tree under `root` (= data.coco.root), at `paths`
    (CocoPaths' defaults: train2017/, annotations/captions_train2017.json,
    stuffthingmaps_detectron2/train2017/)."""
    start = time.perf_counter()
    root, paths = Path(root), paths or CocoPaths()
    image_dir, label_dir = root / paths.images, root / paths.labels
    for d in (image_dir, label_dir, (root / paths.captions).parent):
        d.mkdir(parents=True, exist_ok=True)
    names = builtin_class_list("coco_stuff_171").names
    things = set(vocabulary("coco_stuff_171").things.tolist())
    images, json_images, annotations, image_id = [], [], [], 9  # 9: COCO's first train id
    for i in range(n_images):
        rng, w, h, gap = _sized_rng(seed, "coco_stuff_171", i, COCO_SIZES)
        image_id += gap * (i > 0)
        stem = f"{image_id:012d}"
        labels, image, stuff = render(rng, h, w, "coco_stuff_171", 255)
        _save_jpeg(image, image_dir / f"{stem}.jpg")
        Image.fromarray(labels.astype(np.uint8), mode="L").save(label_dir / f"{stem}.png")
        captions, named = captions_for(rng, names, labels, stuff, things)
        json_images.append({"license": 1 + i % 8, "file_name": f"{stem}.jpg",
                            "coco_url": f"http://images.cocodataset.org/train2017/{stem}.jpg",
                            "height": h, "width": w, "date_captured": "2013-11-14 11:18:45",
                            "flickr_url": "", "id": image_id})
        annotations += [{"image_id": image_id, "id": 0, "caption": c} for c in captions]
        images.append(FixtureImage(stem, image_dir / f"{stem}.jpg", label_dir / f"{stem}.png",
                                   w, h, tuple(present(labels, len(names))[0].tolist()),
                                   tuple(captions), tuple(named)))
    # COCO's annotations come in no particular image order, with their own ids
    order = np.random.default_rng([seed, 0]).permutation(len(annotations))
    annotations = [dict(annotations[k], id=100000 + 7 * n) for n, k in enumerate(order)]
    doc = {"info": {"description": "OVSeg test fixture in the COCO 2017 captions format",
                    "version": "1.0", "year": 2017},
           "licenses": [{"url": "", "id": k, "name": f"license {k}"} for k in range(1, 9)],
           "images": json_images, "annotations": annotations}
    (root / paths.captions).write_text(json.dumps(doc), encoding="utf-8")
    return FixtureTree("coco_stuff_171", root, tuple(images),
                       seconds=time.perf_counter() - start)


def make_ade20k_150(root: str | Path, n_images: int, seed: int = 0) -> FixtureTree:
    """ADEChallengeData2016's validation images and detectron2 label maps under `root`
    (= eval.root): ADE_val_<8 digits>.jpg / .png, uint8 0..149, 255 = ignore."""
    start = time.perf_counter()
    lay, root = EVAL_LAYOUTS["ade20k_150"], Path(root)
    (root / lay.image_dir).mkdir(parents=True, exist_ok=True)
    (root / lay.label_dir).mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(n_images):
        rng, w, h, _ = _sized_rng(seed, "ade20k_150", i, ADE_SIZES)
        stem = f"ADE_val_{i + 1:08d}"
        labels, rgb, _ = render(rng, h, w, lay.classes, lay.ignore_label)
        image, label = root / lay.image_dir / f"{stem}.jpg", root / lay.label_dir / f"{stem}.png"
        _save_jpeg(rgb, image)
        Image.fromarray(labels.astype(np.uint8), mode="L").save(label)
        images.append(FixtureImage(stem, image, label, w, h,
                                   tuple(present(labels, 150)[0].tolist())))
    return FixtureTree("ade20k_150", root, tuple(images), seconds=time.perf_counter() - start)


def pascal_stem(number: int) -> str:
    """The n-th Pascal file name stem: 2008_000002, ... (8000 per year, from 2008)."""
    return f"{2008 + number // 8000}_{number % 8000:06d}"


def make_pascal_context(root: str | Path, n_images: int, seed: int = 0,
                        label_sets: tuple[str, ...] = ("pascal_context_459",
                                                       "pascal_context_59")
                        ) -> dict[str, FixtureTree]:
    """VOC2010's JPEGImages (n_images labelled, and every third image with no label map)
    and the detectron2 label maps of `label_sets` under `root` (= eval.root). Scenes are
    drawn in PC-459's classes; PC-59's map is that map with the other classes ignored, so
    the JPEGs are the same whichever sets are written. {set name: its tree}."""
    start = time.perf_counter()
    root = Path(root)
    lay459 = EVAL_LAYOUTS["pascal_context_459"]
    lays = {name: EVAL_LAYOUTS[name] for name in label_sets}
    image_dir = root / lay459.image_dir
    image_dir.mkdir(parents=True, exist_ok=True)
    for lay in lays.values():
        (root / lay.label_dir).mkdir(parents=True, exist_ok=True)
    names459 = builtin_class_list("pascal_context_459").names
    index59 = {n: i for i, n in enumerate(builtin_class_list("pascal_context_59").names)}
    to59 = np.asarray([index59.get(n, 255) for n in names459] + [255], dtype=np.uint8)
    images: dict[str, list[FixtureImage]] = {name: [] for name in lays}
    unlabelled, number, slot, labelled = [], 2, 0, 0
    while labelled < n_images or not unlabelled:
        rng, w, h, gap = _sized_rng(seed, "pascal_context", slot, PASCAL_SIZES)
        number += (gap % 40 + 1) * (slot > 0)
        stem = pascal_stem(number)
        labels, rgb, _ = render(rng, h, w, "pascal_context_459", lay459.ignore_label)
        image = image_dir / f"{stem}.jpg"
        _save_jpeg(rgb, image)
        if slot % 3 == 1:  # JPEGImages holds the year's other images too
            unlabelled.append(image)
        else:
            labelled += 1
            labels59 = to59[np.minimum(labels, len(names459))]
            for name, lay in lays.items():
                label = root / lay.label_dir / f"{stem}{lay.label_ext}"
                if name == "pascal_context_459":
                    Image.fromarray(labels.astype(np.uint16)).save(label)  # mode I;16
                    values = present(labels, len(names459))[0]
                else:
                    Image.fromarray(labels59, mode="L").save(label)
                    values = present(labels59, len(index59))[0]
                images[name].append(FixtureImage(stem, image, label, w, h,
                                                 tuple(values.tolist())))
        slot += 1
    seconds = time.perf_counter() - start
    return {name: FixtureTree(name, root, tuple(images[name]), tuple(unlabelled), seconds)
            for name in lays}


def make_pascal_context_459(root: str | Path, n_images: int, seed: int = 0) -> FixtureTree:
    """PC-459 under `root` (= eval.root): uint16 TIFF label maps, 65535 = ignore."""
    return make_pascal_context(root, n_images, seed, ("pascal_context_459",))[
        "pascal_context_459"]


def make_pascal_context_59(root: str | Path, n_images: int, seed: int = 0) -> FixtureTree:
    """PC-59 under `root` (= eval.root): uint8 PNG label maps, 255 = ignore."""
    return make_pascal_context(root, n_images, seed, ("pascal_context_59",))[
        "pascal_context_59"]


def make_all(out: str | Path, coco: int, ade: int, pascal: int,
             seed: int = 0) -> dict[str, FixtureTree]:
    """Every tree under one root, as the module docstring lays out: data.coco.root =
    out/coco, eval.root = out. {dataset name: its tree}; a count of 0 leaves one out."""
    out, trees = Path(out), {}
    if coco:
        trees["coco_stuff_171"] = make_coco_stuff(out / "coco", coco, seed)
    if ade:
        trees["ade20k_150"] = make_ade20k_150(out, ade, seed)
    if pascal:
        trees.update(make_pascal_context(out, pascal, seed))
    return trees


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description="Write real-layout COCO-Stuff, ADE20K-150 and Pascal Context trees "
                    "(data.coco.root = OUT/coco, eval.root = OUT).")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--coco", type=int, default=100, help="COCO-Stuff training images")
    ap.add_argument("--ade", type=int, default=20, help="ADE20K-150 validation images")
    ap.add_argument("--pc459", type=int, default=20,
                    help="Pascal Context validation images (PC-459 and PC-59 label maps)")
    args = ap.parse_args(argv)
    for t in make_all(args.out, args.coco, args.ade, args.pc459, args.seed).values():
        print(f"{t.name}: {len(t.images)} labelled images under {t.root} "
              f"({t.seconds / max(1, len(t.images)):.3f} s per image)")
    print(f"data.coco.root: {args.out / 'coco'}\neval.root: {args.out}")


if __name__ == "__main__":
    main()
