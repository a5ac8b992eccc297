"""What the demo page computes, without the page: one image and a vocabulary in, the label
map, its overlay with a legend, each class's share of the image and the proposals out,
exactly as `ovseg segment` makes them for the same input and settings.

The networks run once per image and vocabulary: moving the λ slider re-fuses the cached
per-mask probabilities (OVSeg §3.1's ensemble, no network); moving the mask threshold
re-cuts the crops and runs CLIP on them again, not the proposal net (the threshold decides
which pixels each crop keeps, so CLIP must see the new crops).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pipeline.data.class_lists import load_vocabulary, parse_vocabulary_text
from pipeline.data.image_io import ImageReadError, read_rgb_within
from pipeline.segment.segmenter import (
    MaskPredictions,
    SegmenterModels,
    SegmenterSettings,
    image_tensor,
    segmenter_for_names,
)
from pipeline.segment.two_stage import crop_masks, ensemble

PROPOSALS_SHOWN = 12  # the proposal picture's masks, best scores first


class DemoInputError(ValueError):
    """Input the page cannot segment; the message says what to change."""


def vocabulary_from_text(text: str | None) -> list[str]:
    """The page's class-name box: one class per line (synonyms comma-separated, as in a
    classes file), or one line of comma-separated classes, or a built-in list's name
    ("ade20k_150"). Raises DemoInputError when it names no class."""
    text = (text or "").strip()
    if not text:
        raise DemoInputError("Type some class names first: one per line, or comma-separated "
                             "(e.g. \"sky, dog, teapot\").")
    try:
        names = (parse_vocabulary_text(text, "the class names") if "\n" in text
                 else load_vocabulary(text))
    except ValueError as e:
        raise DemoInputError(f"No class names in the box: {e}") from None
    for name in names:
        if not any(s.strip() for s in name.split(",")):
            raise DemoInputError(f"No class names in the box: the line {name!r} holds only "
                                 "commas.")
    return names


@dataclass
class LegendRow:
    index: int  # the class's index in the vocabulary, its value in the label map
    name: str
    colour: str  # "#rrggbb", the overlay's colour
    share: float  # fraction of the image's pixels


@dataclass
class DemoResult:
    overlay_png: bytes  # the image beside its label map, with a legend (`ovseg segment`'s)
    labels_png: bytes  # class index per pixel at the file's size (`ovseg segment`'s)
    legend: list[LegendRow]  # the classes present, largest share first
    proposals_png: bytes  # the best-scoring proposals, each alone
    note: str  # one line: what was segmented, at which size


class Recent(OrderedDict):
    """A dict that keeps the `size` most recently stored entries (a page's last images)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class DemoSession:
    """The pipeline's models serving one page. `segment` caches the networks' outputs of
    the last few images, vocabularies and thresholds, so that sliders answer at once."""

    def __init__(self, models: SegmenterModels, settings: SegmenterSettings,
                 max_pixels: int, variant: str = "ensemble"):
        self.models, self.settings = models, settings
        self.max_pixels, self.variant = max_pixels, variant
        self._segmenters = Recent(4)  # vocabulary -> Segmenter
        self._images = Recent(4)  # file digest -> (image, full size)
        self._net = Recent(4)  # (digest, vocabulary) -> net outputs
        self._clip = Recent(8)  # (digest, vocabulary, threshold) -> MaskPredictions

    def segment(self, image_path: str | None, names_text: str | None,
                ensemble_lambda: float, mask_threshold: float) -> DemoResult:
        """Raises DemoInputError for input the page should explain (no image, no class
        names, an image that does not decode)."""
        from pipeline.proposals.view import proposals_png
        from pipeline.segment.view import label_map_png, palette, segmentation_png

        if not image_path:
            raise DemoInputError("Upload an image, or pick one of the examples.")
        names = tuple(vocabulary_from_text(names_text))
        digest, image, full_size = self._image(image_path)
        segmenter = self._segmenter(names, mask_threshold)
        x = image_tensor(image)
        net_key = (digest, names)
        if net_key not in self._net:
            self._net.put(net_key, segmenter.net_outputs([x]))
        logits, mask_logits = self._net[net_key]
        clip_key = (digest, names, mask_threshold)
        if clip_key not in self._clip:
            self._clip.put(clip_key, segmenter.classify_proposals([x], logits, mask_logits)[0])
        predictions: MaskPredictions = self._clip[clip_key]
        labels = predictions.label_maps(ensemble_lambda)[0][self.variant].cpu().numpy()  # (h, w)
        colours = palette(len(names))
        counts = np.bincount(labels.ravel(), minlength=len(names))
        legend = [LegendRow(int(c), names[c].split(",")[0].strip(),
                            "#{:02x}{:02x}{:02x}".format(*colours[c]), counts[c] / labels.size)
                  for c in np.argsort(-counts, kind="stable") if counts[c]]
        masks, scores, titles = self._proposals(predictions, mask_threshold,
                                                 ensemble_lambda, names)
        (h, w), (fh, fw) = image.shape[:2], full_size
        note = f"{Path(image_path).name}: {len(names)} classes, {w}x{h}" + (
            "" if (h, w) == full_size else f" (scaled from {fw}x{fh}; the label map is at "
                                           f"{fw}x{fh})")
        return DemoResult(segmentation_png(image, labels, list(names)),
                          label_map_png(labels, len(names), full_size), legend,
                          proposals_png(image, masks, scores, titles), note)

    def _image(self, path: str) -> tuple[str, np.ndarray, tuple[int, int]]:
        """(digest of the file, (h, w, 3) uint8 within max_pixels, the file's (H, W)),
        read as `ovseg segment` reads it; DemoInputError when it does not decode."""
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as e:
            raise DemoInputError(f"Cannot read the uploaded file: {e.strerror or e}") from None
        if digest not in self._images:
            try:
                self._images.put(digest, read_rgb_within(path, self.max_pixels))
            except ImageReadError as e:
                raise DemoInputError(f"Cannot read the image {e}. Upload a JPEG, PNG or "
                                     "other image file.") from None
        return (digest, *self._images[digest])

    def _segmenter(self, names: tuple[str, ...], mask_threshold: float):
        if names not in self._segmenters:
            self._segmenters.put(names, segmenter_for_names(self.models, list(names),
                                                            self.settings))
        return replace(self._segmenters[names], mask_threshold=mask_threshold)

    @staticmethod
    def _proposals(predictions: MaskPredictions, mask_threshold: float,
                   ensemble_lambda: float, names) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The best-scoring masks (sigmoid > threshold, as CLIP's crops), their scores
        (1 - p(no object) over the vocabulary) and titles naming each one's ensemble class."""
        scores = predictions.p_maskformer.sum(-1).cpu()  # (Q,)
        masks = crop_masks(predictions.mask_logits, mask_threshold).cpu()  # (Q, h, w)
        order = [int(q) for q in torch.argsort(scores, descending=True, stable=True)
                 if masks[q].any()][:PROPOSALS_SHOWN]
        best = ensemble(predictions.p_maskformer, predictions.p_clip, predictions.valid,
                        ensemble_lambda).argmax(-1).cpu()
        titles = [f"#{q} score {scores[q]:.2f}: {names[best[q]].split(',')[0]}"
                  for q in order]
        return masks[order].numpy(), scores[order].numpy(), titles
