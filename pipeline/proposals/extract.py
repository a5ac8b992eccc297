"""The proposals of a split's images, from the trained net or (`proposals.source: gt`, the
oracle and ablation runs) the ground-truth segments in the same form, and their
class-agnostic recall of the labelled segments, seen and unseen classes apart.

`progress(iterable, desc)` wraps the pass over the batches (the stage's progress bar).

On a GPU (issue 31) the masks stay there from the network to the RLE strings (`rle_device`:
only the counts cross to the host, not 100 x H x W bytes an image) and the next batch's
images are decoded on a thread while the net runs, and the strings and parquet rows are
built on another (`write_behind`) while the host waits for the net; on the CPU
pycocotools encodes numpy masks, which is faster there. The strings, and so the parquet
bytes, are the same.
"""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from pipeline.data import rle_device
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import Split
from pipeline.data.proposal_table import (
    ImageProposals,
    ProposalWriter,
    gt_proposals,
    host_masks,
    proposals_for_rows,
)
from pipeline.data.read_ahead import depth_on, read_ahead
from pipeline.data.segments import label_segments
from pipeline.data.write_behind import write_behind
from pipeline.distributed.precision import autocast
from pipeline.params import ProposalParams
from pipeline.proposals.inference import masks_to_image, net_batch, unit_image
from pipeline.proposals.model import image_proposals, predict_proposals
from pipeline.proposals.recall import segment_recall

# Batches of images decoded ahead of the net on a GPU: 2 x 64 images of 640x480 as uint8
# arrays are about 120 MB of host memory.
READ_AHEAD_BATCHES = 2
# Threads decoding each batch's files on a GPU: a 640x480 JPEG is ~7 ms of one core
# (bench_heavy_stages' "host ms"), so at the 150 images/s goal one reader thread alone
# would be the stage's limit (PIL decodes without the GIL)
DECODE_THREADS = 4
# Images whose run lengths wait for the writer thread on a GPU (two batches of 64; a few
# MB: ~100 masks of a few hundred runs each)
WRITE_BEHIND_IMAGES = 128
# ... and where full masks wait instead (device RLE off): ~30 MB an image
WRITE_BEHIND_MASKS = 2


def _quiet(iterable, desc: str):
    return iterable


def read_image(path: Path) -> torch.Tensor:
    """An image file as a (3, H, W) uint8 tensor, as decoded."""
    return torch.from_numpy(read_rgb(path).copy()).permute(2, 0, 1)


def read_images(rows, image_dir: Path, pool: Executor | None = None) -> list[torch.Tensor]:
    """The rows' images as (3, H, W) uint8 tensors, as decoded (on `pool`'s threads when
    given, in order): scaled to [0, 1] and resized where the net runs
    (`proposals_of_images`)."""
    paths = [image_dir / r.file_name for r in rows]
    return list(pool.map(read_image, paths) if pool else map(read_image, paths))


def proposals_of_images(net, text, rows, images: list[torch.Tensor], p: ProposalParams,
                        device_rle: bool | None = None) -> list[ImageProposals]:
    """Proposals of a batch of index rows and their (3, H, W) uint8 images, each at its
    image's own size: the images go to the net's device (pinned, without waiting: on a
    GPU the host only decodes files), are scaled to [0, 1] there and go in at short side
    `proposals.short_side`, aspect kept, padded to `proposals.size_divisor` (inference.py).
    The net runs on the device of its weights (`text`'s), in bf16 autocast on CUDA when
    `proposals.autocast` is bf16; the class logits (model.class_logits) and the mask
    upsampling are float32 there. `device_rle` (default: off the CPU) counts the masks'
    run lengths on that device (`rle_device`): only the lengths come to the host, where
    the strings are built."""
    return batch_proposals(rows, *net_outputs(net, text, images, p), p, device_rle)


def net_outputs(net, text, images: list[torch.Tensor], p: ProposalParams
                ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """The net's mask logits (B, Q, h, w) and scores (B, Q) float32 of a batch of uint8
    images, and each image's size at the net's input: queued on the device, nothing read
    back (`proposals_of_images`)."""
    device = text.device
    x, sizes = net_batch([unit_image(im, device) for im in images], p.short_side,
                         p.size_divisor)
    with autocast(device, p.precision):  # (no_grad inside)
        logits, scores = predict_proposals(net, x, text)  # scores: float32
    return logits, scores, sizes


def batch_proposals(rows, logits: torch.Tensor, scores: torch.Tensor, sizes,
                    p: ProposalParams, device_rle: bool | None = None) -> list[ImageProposals]:
    """Each row's proposals from `net_outputs`: masks at the image's size, thresholded,
    kept by score; numpy masks, or (`device_rle`, default off the CPU) their run lengths
    counted on the device. This is where the host waits for the net."""
    if device_rle is None:
        device_rle = rle_device.used_on(logits.device)
    out = []
    for r, lg, sc, size in zip(rows, logits, scores.float(), sizes):
        image_size = (r.height, r.width)
        masks, kept = image_proposals(masks_to_image(lg, size, image_size), sc, image_size,
                                      p.min_score)
        masks = rle_device.RunLengths(rle_device.rle_counts(masks), *image_size) \
            if device_rle else masks.cpu().numpy()
        out.append(ImageProposals(r.image_id, masks, kept.cpu().numpy().astype(np.float32)))
    return out


def net_proposals(net, text, rows, image_dir: Path, p: ProposalParams,
                  device_rle: bool | None = None) -> list[ImageProposals]:
    """`proposals_of_images` of the rows' image files."""
    return proposals_of_images(net, text, rows, read_images(rows, image_dir), p, device_rle)


def iter_split_proposals(split: Split, rows, net, text, p: ProposalParams, desc: str,
                         progress=_quiet, device_rle: bool | None = None,
                         decode_threads: int | None = None):
    """(index row, proposals) for each row, in batches of `proposals.extract_batch_size`;
    on CUDA the next batches' images are read on a thread while the net runs, each
    batch's files decoded by `decode_threads` threads (default: DECODE_THREADS on CUDA,
    none elsewhere). A batch's proposals are handed on only once the next batch's forward
    is queued: on a GPU the caller builds their strings (`encode_masks` of the run
    lengths) while the net runs."""
    bs = p.extract_batch_size
    batches = (rows[i:i + bs] for i in progress(range(0, len(rows), bs), desc))
    if p.source == "gt":
        for batch in batches:
            yield from zip(batch, [gt_proposals(
                r.image_id, read_labels(Path(split.label_dir) / r.label_file),
                split.ignore_label) for r in batch])
        return
    depth = depth_on(text.device, READ_AHEAD_BATCHES)
    if decode_threads is None:
        decode_threads = depth_on(text.device, DECODE_THREADS)
    image_dir = Path(split.image_dir)
    with ThreadPoolExecutor(decode_threads, "decode") if decode_threads else \
            nullcontext() as pool:
        read = ((batch, read_images(batch, image_dir, pool)) for batch in batches)
        pending = []
        for batch, images in read_ahead(read, depth):
            outputs = net_outputs(net, text, images, p)
            yield from pending
            pending = list(zip(batch, batch_proposals(batch, *outputs, p, device_rle)))
        yield from pending


def recall_counts(split: Split, row, masks: np.ndarray, seen: tuple[bool, ...],
                  counts: dict) -> None:
    """Add the row's segments found (IoU >= 0.5) by its proposal masks (N, H, W) and its
    segments in total, by group, to `counts`."""
    labels = read_labels(Path(split.label_dir) / row.label_file)
    segs = label_segments(row.image_id, labels, split.ignore_label)
    if not segs:
        return
    hit = segment_recall(masks, np.stack([s.mask for s in segs]))
    for s, h in zip(segs, hit):
        group = "seen" if seen[s.label] else "unseen"
        counts.setdefault(group, [0, 0])
        counts[group][0] += int(h)
        counts[group][1] += 1


def summarize(counts: dict, n_props: list[int]) -> dict:
    out = {g: {"recall": hits / total, "segments": total} for g, (hits, total) in counts.items()}
    hits = sum(c[0] for c in counts.values())
    total = sum(c[1] for c in counts.values())
    out["all"] = {"recall": hits / max(total, 1), "segments": total}
    out["proposals_per_image"] = float(np.mean(n_props)) if n_props else 0.0
    return out


def split_recall(split: Split, rows, seen: tuple[bool, ...], net, text, p: ProposalParams,
                 progress=_quiet) -> dict:
    """Recall summary of the proposals of `rows` of `split`."""
    counts, n_props = {}, []
    for row, props in iter_split_proposals(split, rows, net, text, p, split.name, progress):
        recall_counts(split, row, host_masks(props.masks), seen, counts)
        n_props.append(len(props.masks))
    return summarize(counts, n_props)


def write_proposal_chunk(path: Path, split: Split, rows, net, text, p: ProposalParams,
                         device_rle: bool | None = None, write_behind_images: int | None = None,
                         decode_threads: int | None = None) -> int:
    """The proposals of `rows` (one chunk of images) as one parquet file; its row count.
    On CUDA (or with `write_behind_images` > 0) the strings and parquet rows are built on a
    thread, up to WRITE_BEHIND_IMAGES images behind the net (`write_behind`); the file is
    the same. decode_threads: as `iter_split_proposals`."""
    if write_behind_images is None:
        write_behind_images = 0 if text is None else depth_on(  # (no net: gt proposals)
            text.device, WRITE_BEHIND_MASKS if device_rle is False else WRITE_BEHIND_IMAGES)
    with ProposalWriter(path, p.row_group_size) as writer, \
            write_behind(writer.add, write_behind_images) as add:
        for _, props in iter_split_proposals(split, rows, net, text, p, "",
                                             device_rle=device_rle,
                                             decode_threads=decode_threads):
            add(props)
    return writer.rows


def written_recall(split: Split, rows, proposals_dir: Path, seen) -> dict:
    """Recall of the written proposals of `rows` (read back from the parquet parts)."""
    counts, n_props = {}, []
    for row, masks in zip(rows, proposals_for_rows(rows, proposals_dir)):
        recall_counts(split, row, masks, seen, counts)
        n_props.append(len(masks))
    return summarize(counts, n_props)


def empty_proposals_warning(proposals: int, images: int, p: ProposalParams) -> str | None:
    """What a run that proposed no mask for any image says, with the likely cause."""
    if proposals or not images or p.source != "net":
        return None
    return (f"extract_proposals: the proposal net proposed no mask for any of {images} images "
            "(every query scored below proposals.min_score or had an empty mask): it is "
            f"likely undertrained (proposals.steps = {p.steps}) or proposals.min_score "
            f"= {p.min_score} too high; mine_pairs will find nothing to pair")
