"""Mining mask-noun pairs over the training split (OVSeg §3.2): the nouns of each image's
captions (or, for the Table 2 ablation, the names of its labelled classes), then each
noun paired with the proposal whose masked-crop CLIP embedding is most similar to the
noun's text embedding. The pair arithmetic is in `pairs`.

`progress(iterable, desc)` wraps each pass over the images (the stage's progress bar).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.clip.mask_classifier import crops_for_clip
from pipeline.clip.mask_prompts import encode_image
from pipeline.data import rle_device
from pipeline.data.class_lists import load_class_list
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import Split
from pipeline.data.proposal_table import gt_proposals, proposals_for_rows
from pipeline.data.read_ahead import depth_on, read_ahead
from pipeline.distributed.precision import autocast
from pipeline.distributed.transfers import HostCopy, to_device
from pipeline.mining.pairs import PAIR_SCHEMA, best_proposals, lemma_classes, segment_hits
from pipeline.params import MineParams

# Images decoded ahead of CLIP on a GPU: at 640x480 with 100 proposals an image's masks are
# about 30 MB, so 8 ahead hold about 240 MB per process.
READ_AHEAD_IMAGES = 8


def _quiet(iterable, desc: str):
    return iterable


def class_names_with_synonyms(splits: dict[str, Split], train_names: list[str]) -> list[str]:
    """The training class names, with the synonyms another split's list gives the same
    class (the synthetic world's evaluation lists carry ADE-style "dog, puppy")."""
    synonyms = {}
    for split in splits.values():
        for name in load_class_list(split.classes).names:
            synonyms.setdefault(name.split(",")[0].strip(), name)
    return [synonyms.get(n.split(",")[0].strip(), n) for n in train_names]


def image_nouns(row, p: MineParams, extractor, train_names, labels, ignore: int
                ) -> list[tuple[int, str, str]]:
    """(caption index, noun, lemma) to pair in one image."""
    if p.nouns == "gt_classes":
        present = [int(c) for c in np.unique(labels) if c != ignore]
        return [(-1, train_names[c], train_names[c]) for c in present]
    out = []
    for ci, caption in enumerate(row.captions[:p.captions_per_image]):
        out += [(ci, noun, lemma) for noun, lemma in extractor.extract(caption)]
    return out


def caption_nouns(rows, split: Split, p: MineParams, extractor, train_names: list[str],
                  progress=_quiet) -> dict[int, list[tuple[int, str, str]]]:
    """image_id -> the nouns to pair in that image (captions only; cheap)."""
    nouns = {}
    for row in progress(rows, "caption nouns"):
        labels = read_labels(Path(split.label_dir) / row.label_file) \
            if p.nouns == "gt_classes" else None
        nouns[row.image_id] = image_nouns(row, p, extractor, train_names, labels,
                                          split.ignore_label)
    return nouns


@dataclass
class Vocabulary:
    """What a mining run pairs: each image's nouns, their sorted lemmas (one text feature
    each) and the lemma -> training class map that checks pairs against the labels."""

    nouns: dict[int, list[tuple[int, str, str]]]
    lemmas: list[str]
    lemma_to_class: dict[str, int]


def mining_vocabulary(rows, splits: dict[str, Split], p: MineParams, extractor,
                      progress=_quiet) -> Vocabulary:
    """Every row's nouns: the whole run's vocabulary, whichever chunks a rank mines."""
    train = splits["train"]
    train_names = list(load_class_list(train.classes).names)
    nouns = caption_nouns(rows, train, p, extractor, train_names, progress)
    return Vocabulary(nouns, sorted({lemma for ns in nouns.values() for _, _, lemma in ns}),
                      lemma_classes(class_names_with_synonyms(splits, train_names),
                                    extractor.extract))


def mine_pairs(clip, text: torch.Tensor, lemmas: list[str], nouns: dict, lemma_to_class: dict,
               rows, split: Split, p: MineParams, proposals_dir: Path, progress=_quiet,
               read_ahead_images: int | None = None, device_rle: bool | None = None
               ) -> tuple[dict[str, list], int, int]:
    """Masked crops of each image's proposals (`p.masks`: the proposal table's, or the
    ground-truth segments) -> CLIP -> the best proposal of each of its nouns; `text` (V, D)
    holds the unit text embeddings of `lemmas`. Returns the PAIR_SCHEMA columns, and the
    pairs checked against the labels and found right (precision at IoU 0.5).

    Crops and CLIP run on the device of `text` (bf16 autocast as `mine.precision` says:
    pipeline/distributed/precision.py), `mine.crop_batch_size` crops per forward over consecutive
    images: the batches depend only on `rows`, so a chunk's pairs do not depend on which
    process mined it. `read_ahead_images` (default: READ_AHEAD_IMAGES on CUDA, 0 on the
    CPU) images are read and decoded ahead on a thread; the pairs are the same either way.
    `device_rle` (default: off the CPU) decodes the proposals' RLE strings on the device
    (`rle_device`: the masks never cross from the host); on the CPU pycocotools does, faster
    there. The pairs are the same either way. Nothing is read back from the device while
    a batch is queued (crops: masked_crops' "whole"; copies: `transfers`): a batch's pairs
    come down once the next batch is queued behind it, so the host cuts the next crops
    while CLIP runs."""
    device = text.device
    if device_rle is None:
        device_rle = rle_device.used_on(device)
    lemma_index = {lemma: i for i, lemma in enumerate(lemmas)}
    columns = {name: [] for name in PAIR_SCHEMA.names}
    counts = [0, 0]  # pairs checked against the labels, and found right
    batch = []  # (row, labels, masks, crops, crop validity) until CROP_BATCH crops

    def launch():
        """Queue CLIP on the batch's crops, each noun's best proposal and the checks of
        the checkable pairs; nothing read back (the results come down in a HostCopy)."""
        with torch.no_grad(), autocast(device, p.precision):
            feats = encode_image(clip, torch.cat([b[3] for b in batch]))
        feats = F.normalize(feats.float(), dim=-1)
        start, chosen, hits, images, checked = 0, [], [], [], 0
        for row, labels, masks, crops, valid in batch:
            region = feats[start:start + len(crops)] * valid[:, None]  # invalid: never best
            start += len(crops)
            pairs = nouns[row.image_id]
            wanted = to_device(np.array([lemma_index[lemma] for _, _, lemma in pairs]), device)
            best, sim, margin = best_proposals(region, text[wanted])
            chosen.append((best, sim, margin))
            # pairs whose noun names a class labelled here: chosen mask vs that segment
            checks = [(k, c) for k, (_, _, lemma) in enumerate(pairs)
                      if (c := lemma_to_class.get(lemma)) is not None and (labels == c).any()]
            if checks:
                ks, cs = (np.array(x) for x in zip(*checks))
                hits.append(segment_hits(masks[best[to_device(ks, device)]],
                                         to_device(labels, device), to_device(cs, device)))
            checked += len(checks)
            images.append((row, pairs))
        batch.clear()
        return images, checked, HostCopy([
            *(torch.cat(parts) for parts in zip(*chosen)),
            torch.cat(hits) if hits else torch.zeros(0, dtype=torch.bool, device=device)])

    def finish(launched) -> None:
        """The launched batch's pairs into `columns`, in image order."""
        images, checked, copy = launched
        best, sim, margin, hits = (t.tolist() for t in copy.wait())
        i = 0
        for row, pairs in images:
            for ci, noun, lemma in pairs:
                for key, v in zip(PAIR_SCHEMA.names,
                                  (row.image_id, ci, noun, lemma, best[i], sim[i], margin[i])):
                    columns[key].append(v)
                i += 1
        counts[0] += checked
        counts[1] += sum(hits)

    streamed = proposals_for_rows(rows, proposals_dir, device if device_rle else None) \
        if p.masks == "proposals" else None
    label_dir, image_dir = Path(split.label_dir), Path(split.image_dir)

    def read_rows():  # (row, labels (H, W), masks (N, H, W) bool, image (3, H, W) uint8)
        for row in progress(rows, "mine pairs"):
            labels = read_labels(label_dir / row.label_file)
            masks = next(streamed) if streamed is not None else \
                torch.from_numpy(gt_proposals(row.image_id, labels, split.ignore_label).masks)
            if nouns[row.image_id] and len(masks):
                image = torch.from_numpy(read_rgb(image_dir / row.file_name).copy())
                yield row, labels, masks, image.permute(2, 0, 1)

    # On a GPU the next images and their masks are decoded on a thread while CLIP runs,
    # and a batch's results are read back only once the next batch is queued behind it.
    if read_ahead_images is None:
        read_ahead_images = depth_on(device, READ_AHEAD_IMAGES)
    pending = None
    for row, labels, masks, image in read_ahead(read_rows(), read_ahead_images):
        masks = to_device(masks, device)  # numpy from pycocotools, or on the device
        crops, _, valid = crops_for_clip(clip, to_device(image, device).float() / 255, masks,
                                         p.fill, p.expand_ratio)
        batch.append((row, labels, masks, crops, valid))
        if sum(len(b[3]) for b in batch) >= p.crop_batch_size:
            pending, launched = launch(), pending
            if launched is not None:
                finish(launched)
    for launched in (pending, launch() if batch else None):
        if launched is not None:
            finish(launched)
    return columns, counts[0], counts[1]


def mining_metrics(columns: dict[str, list], rows, p: MineParams, noun_method: str,
                   checked: int, correct: int, seconds: float,
                   nouns: dict[int, list] | None = None) -> dict:
    """Counts, similarity and margin statistics, and the precision of the checkable pairs.
    Per caption: the nouns found in it, and the pairs made of them (fewer where an image
    had no proposal to pair a noun with)."""
    n = len(columns["image_id"])
    captions = sum(min(len(r.captions), p.captions_per_image) for r in rows)
    found = sum(len(nouns.get(r.image_id, ())) for r in rows) if nouns is not None else None
    per_caption = p.nouns == "captions"
    counts = Counter(columns["lemma"])
    sims, margins = np.array(columns["similarity"]), np.array(columns["margin"])
    return {
        "masks": p.masks, "nouns": p.nouns, "captions_per_image": p.captions_per_image,
        "noun_method": noun_method,
        "pairs": n, "unique_nouns": len(counts),
        "pairs_per_caption": n / max(captions, 1) if per_caption else None,
        "nouns_found_per_caption": found / max(captions, 1) if per_caption and
        found is not None else None,
        "similarity": {"mean": float(sims.mean()) if n else 0.0,
                       "median": float(np.median(sims)) if n else 0.0},
        "margin": {"mean": float(margins.mean()) if n else 0.0,
                   "median": float(np.median(margins)) if n else 0.0},
        "precision_iou50": {"pairs_checked": checked,
                            "precision": correct / checked if checked else None,
                            "note": "pairs whose noun names a class labelled in the image; "
                                    "chosen proposal vs that class's segment, IoU >= 0.5"},
        "top_nouns": counts.most_common(20),
        "seconds": round(seconds, 1),
    }


def empty_mining_warning(metrics: dict, images: int) -> str | None:
    """What a run that paired nothing says, with the likely cause; None for a run that
    paired something."""
    if metrics["pairs"]:
        return None
    found = metrics.get("nouns_found_per_caption")
    if found == 0:
        return (f"mine_pairs: no noun found in the captions of {images} images: is WordNet "
                "installed (`make nltk`) and are the captions English?")
    return (f"mine_pairs: no pairs from {images} images although their captions hold nouns: "
            "no image had a proposal to pair them with. The proposal net is likely "
            "undertrained (metrics/proposals.json, proposals_per_image; proposals.steps) "
            "or proposals.min_score too high; finetune will have nothing to train on")
