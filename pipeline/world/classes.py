"""The synthetic world's vocabulary: classes, their names, and how each one looks.

Class identity lives in appearance only (texture pattern, palette, scale): a from-scratch
tiny CLIP learns colour and texture in minutes but not shape, and a class tied to an
outline would let a mask alone classify it (the outline-only control in
pipeline/clip/region_probe.py checks this). So every thing class draws
its outline from one shared blob distribution (see `pipeline/world/render.py` `blob_mask`) and every
stuff class from one shared region partition.

Some classes are never labelled in the training split ("unseen"): their pixels are 255
there, but they appear in training images and captions, as COCO's captions name objects
outside COCO-Stuff's 171 classes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Appearance:
    pattern: str  # one of world_render.PATTERNS
    color_a: tuple[int, int, int]
    color_b: tuple[int, int, int]
    period: float = 6.0  # pixels at 64x64; scaled with the image size
    angle: float = 0.0  # degrees, for oriented patterns


@dataclass(frozen=True)
class WorldClass:
    names: tuple[str, ...]  # names[0] is the primary name; the rest are synonyms
    plurals: tuple[str, ...]  # plural of each name, same order
    isthing: bool
    seen: bool  # labelled in the training split
    colour_word: str  # an adjective captions may use
    look: Appearance

    @property
    def name(self) -> str:
        return self.names[0]


def _c(names, plurals, isthing, seen, colour_word, look):
    return WorldClass(tuple(names), tuple(plurals), isthing, seen, colour_word, look)


A = Appearance
# Stuff first, then things. The order is the world id (0..K-1) used internally.
WORLD_CLASSES: tuple[WorldClass, ...] = (
    _c(["sky"], ["skies"], False, True, "blue",
       A("gradient", (110, 170, 235), (205, 228, 250))),
    _c(["grass", "lawn"], ["grass", "lawns"], False, True, "green",
       A("speckle", (70, 160, 50), (35, 105, 30), period=1.5)),
    _c(["water", "lake"], ["water", "lakes"], False, True, "blue",
       A("waves", (25, 70, 165), (75, 135, 215), period=6)),
    _c(["sand"], ["sand"], False, True, "tan",
       A("speckle", (225, 205, 145), (195, 170, 105), period=1.0)),
    _c(["road", "street"], ["roads", "streets"], False, True, "gray",
       A("blotch", (70, 70, 78), (100, 100, 108), period=10)),
    _c(["wall"], ["walls"], False, True, "beige",
       A("bricks", (200, 150, 120), (140, 95, 75), period=8)),
    _c(["snow"], ["snow"], False, False, "white",
       A("speckle", (245, 246, 252), (205, 215, 235), period=2.0)),
    _c(["dirt", "soil"], ["dirt", "soils"], False, False, "brown",
       A("blotch", (125, 85, 50), (85, 55, 35), period=6)),
    _c(["dog", "puppy"], ["dogs", "puppies"], True, True, "brown",
       A("blotch", (170, 115, 60), (95, 60, 30), period=5)),
    _c(["cat", "kitten"], ["cats", "kittens"], True, True, "gray",
       A("stripes", (160, 160, 160), (80, 80, 85), period=5, angle=0)),
    _c(["car", "automobile"], ["cars", "automobiles"], True, True, "red",
       A("solid", (205, 30, 40), (120, 10, 20))),
    _c(["bus"], ["buses"], True, True, "yellow",
       A("stripes", (245, 205, 30), (35, 35, 40), period=9, angle=0)),
    _c(["apple"], ["apples"], True, True, "red",
       A("dots", (185, 20, 35), (250, 150, 150), period=6)),
    _c(["banana"], ["bananas"], True, True, "yellow",
       A("solid", (250, 230, 80), (200, 170, 30))),
    _c(["zebra"], ["zebras"], True, True, "striped",
       A("stripes", (245, 245, 245), (20, 20, 20), period=5, angle=90)),
    _c(["giraffe"], ["giraffes"], True, True, "spotted",
       A("checker", (235, 185, 80), (130, 75, 30), period=5)),
    _c(["traffic light", "stoplight"], ["traffic lights", "stoplights"], True, True, "black",
       A("dots", (35, 35, 40), (70, 220, 70), period=7)),
    _c(["umbrella", "parasol"], ["umbrellas", "parasols"], True, True, "purple",
       A("rays", (125, 40, 165), (225, 205, 245), period=8)),
    _c(["boat", "ship"], ["boats", "ships"], True, True, "white",
       A("stripes", (250, 250, 250), (30, 60, 160), period=9, angle=0)),
    _c(["pizza"], ["pizzas"], True, True, "cheesy",
       A("dots", (230, 190, 110), (190, 40, 30), period=8)),
    _c(["tiger"], ["tigers"], True, False, "orange",
       A("stripes", (245, 130, 30), (30, 20, 10), period=6, angle=45)),
    _c(["teddy bear", "teddy"], ["teddy bears", "teddies"], True, False, "fluffy",
       A("rings", (190, 130, 80), (230, 190, 140), period=5)),
    _c(["kite"], ["kites"], True, False, "colorful",
       A("checker", (40, 165, 210), (245, 90, 165), period=7)),
    _c(["fire hydrant", "hydrant"], ["fire hydrants", "hydrants"], True, False, "red",
       A("stripes", (225, 45, 30), (250, 210, 200), period=4, angle=90)),
)

STUFF_IDS = tuple(i for i, c in enumerate(WORLD_CLASSES) if not c.isthing)
THING_IDS = tuple(i for i, c in enumerate(WORLD_CLASSES) if c.isthing)
SEEN_IDS = tuple(i for i, c in enumerate(WORLD_CLASSES) if c.seen)


@dataclass(frozen=True)
class SplitVocabulary:
    """How one split names the world's classes: label index -> world id and display name."""

    name: str
    world_ids: tuple[int, ...]
    names: tuple[str, ...]

    def label_lut(self, ignore: int = 255) -> list[int]:
        """world id -> label value in this split (255 = ignore for classes not listed)."""
        lut = [ignore] * len(WORLD_CLASSES)
        for label, wid in enumerate(self.world_ids):
            lut[wid] = label
        return lut


def _synonyms(wid: int) -> str:
    return ", ".join(WORLD_CLASSES[wid].names)


# Training: the closed, COCO-Stuff-like list of classes labelled in training.
TRAIN_VOCAB = SplitVocabulary(
    "train", SEEN_IDS, tuple(WORLD_CLASSES[i].name for i in SEEN_IDS)
)

# Evaluation splits, in the detectron2 semantic-segmentation layout.
# world_full (ADE-150-like): every class, names with comma-separated synonyms.
# world_things (Pascal-VOC-like): things only, some named only by a synonym the training
# labels never used; all other pixels are ignored, as VOC-20 ignores background.
_ALL = tuple(range(len(WORLD_CLASSES)))
_THINGS_SUBSET = tuple(
    i for i in THING_IDS
    if WORLD_CLASSES[i].name in
    ("dog", "car", "bus", "zebra", "boat", "umbrella", "tiger", "teddy bear", "kite",
     "fire hydrant")
)
_SYNONYM_ONLY = {"dog": "puppy", "car": "automobile", "boat": "ship", "fire hydrant": "hydrant"}
EVAL_VOCABS = (
    SplitVocabulary("world_full", _ALL, tuple(_synonyms(i) for i in _ALL)),
    SplitVocabulary(
        "world_things",
        _THINGS_SUBSET,
        tuple(_SYNONYM_ONLY.get(WORLD_CLASSES[i].name, WORLD_CLASSES[i].name)
              for i in _THINGS_SUBSET),
    ),
)
