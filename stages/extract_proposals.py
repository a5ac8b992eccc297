"""Stage extract_proposals: run the proposal net over the caption (training) images and
write every image's proposals to parquet (DESIGN sec. 6); score class-agnostic recall.

deps: data/index, models/proposals, params proposals
outs: data/proposals/part-*.parquet, metrics/proposals.json

`proposals.source: gt` writes the ground-truth segments in the same schema instead (oracle
and ablation runs). Work splits into `proposals.parts` contiguous runs of images; on
several machines run `python -m stages.extract_proposals --part i` on each (the metrics
are written by a run without --part).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.clip.probe import label_segments
from pipeline.data.class_lists import load_class_list
from pipeline.data.files import write_json
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import iter_index, read_splits
from pipeline.data.proposal_table import ImageProposals, ProposalWriter, gt_proposals, part_name
from pipeline.params import load_params
from pipeline.proposals.model import image_proposals, load_proposal_net, predict_proposals
from pipeline.proposals.recall import segment_recall

SPLITS = Path("data/index/splits.json")
NET_DIR = Path("models/proposals")
OUT_DIR = Path("data/proposals")
METRICS = Path("metrics/proposals.json")


def net_proposals(net, text, rows, image_dir: Path, p) -> list[ImageProposals]:
    """Proposals of a batch of index rows, each at its image's own size."""
    size = (p.image_size, p.image_size)
    images = np.stack([read_rgb(image_dir / r.file_name, size) for r in rows])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    logits, scores = predict_proposals(net, x, text)
    out = []
    for r, lg, sc in zip(rows, logits, scores):
        masks, kept = image_proposals(lg, sc, (r.height, r.width), p.min_score)
        out.append(ImageProposals(r.image_id, masks.numpy(), kept.numpy().astype(np.float32)))
    return out


def iter_split_proposals(split, rows, net, text, p, desc: str):
    """(index row, proposals) for each row, in batches."""
    bs = p.extract_batch_size
    for i in tqdm(range(0, len(rows), bs), desc=desc, unit="batch", mininterval=2):
        batch = rows[i:i + bs]
        if p.source == "gt":
            props = [gt_proposals(r.image_id, read_labels(Path(split.label_dir) / r.label_file),
                                  split.ignore_label) for r in batch]
        else:
            props = net_proposals(net, text, batch, Path(split.image_dir), p)
        yield from zip(batch, props)


def recall_counts(split, row, props: ImageProposals, seen: tuple[bool, ...], counts: dict):
    labels = read_labels(Path(split.label_dir) / row.label_file)
    segs = label_segments(row.image_id, labels, split.ignore_label)
    if not segs:
        return
    hit = segment_recall(props.masks, np.stack([s.mask for s in segs]))
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--part", type=int, default=None, help="write only this part")
    args = ap.parse_args(argv)
    p = load_params(args.params).proposals
    torch.set_num_threads(p.threads)
    splits = read_splits(SPLITS)
    net, text = None, None
    if p.source == "net":
        net, text, _ = load_proposal_net(NET_DIR)
    train = splits["train"]
    rows = list(iter_index(train.index))
    parts = range(p.parts) if args.part is None else [args.part]
    if args.part is not None and not 0 <= args.part < p.parts:
        raise SystemExit(f"--part {args.part} is outside 0..{p.parts - 1} (proposals.parts)")
    if args.part is None:  # a full run owns the folder: drop parts of an older layout
        for old in OUT_DIR.glob("part-*.parquet"):
            if old.name not in {part_name(i, p.parts) for i in range(p.parts)}:
                old.unlink()
    train_seen = load_class_list(train.classes).seen
    counts, n_props, total_rows = {}, [], 0
    for part in parts:
        lo, hi = part * len(rows) // p.parts, (part + 1) * len(rows) // p.parts
        with ProposalWriter(OUT_DIR / part_name(part, p.parts), p.row_group_size) as writer:
            for k, (row, props) in enumerate(iter_split_proposals(
                    train, rows[lo:hi], net, text, p, f"proposals part {part}")):
                writer.add(props)
                if part == 0 and k < p.recall_images:
                    recall_counts(train, row, props, train_seen, counts)
                    n_props.append(len(props.masks))
        total_rows += writer.rows
    print(f"wrote {total_rows} proposals for {len(rows)} images to {OUT_DIR}")
    if args.part is not None:
        return
    metrics = {"source": p.source, "iou_threshold": 0.5, "train": summarize(counts, n_props)}
    for name, split in splits.items():
        if split.role != "eval":
            continue
        seen = load_class_list(split.classes).seen
        eval_rows = list(iter_index(split.index))[:p.recall_images]
        counts, n_props = {}, []
        for row, props in iter_split_proposals(split, eval_rows, net, text, p, name):
            recall_counts(split, row, props, seen, counts)
            n_props.append(len(props.masks))
        metrics[name] = summarize(counts, n_props)
    write_json(METRICS, metrics)
    print({k: {g: round(v[g]["recall"], 3) for g in ("seen", "unseen") if g in v}
           for k, v in metrics.items() if isinstance(v, dict)})


if __name__ == "__main__":
    main()
