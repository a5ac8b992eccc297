"""Stage extract_proposals: run the proposal net over the caption (training) images and
write every image's proposals to parquet; score class-agnostic recall
(pipeline/proposals/extract.py).

    python -m stages.extract_proposals --params params.yaml --index data/index
        --net models/proposals --out data/proposals --metrics metrics/proposals.json

`proposals.source: gt` writes the ground-truth segments in the same schema instead (oracle
and ablation runs). Work splits into `proposals.parts` contiguous runs of images; on
several machines run the same command with `--part i` on each (the metrics are written by
a run without --part).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.data.class_lists import load_class_list
from pipeline.data.files import staged_outputs, write_json
from pipeline.data.layouts import iter_index, read_splits
from pipeline.data.proposal_table import ProposalWriter, part_name
from pipeline.params import load_params
from pipeline.proposals.extract import iter_split_proposals, recall_counts, split_recall, summarize
from pipeline.proposals.model import load_proposal_net


def progress(batches, desc: str):
    return tqdm(batches, desc=desc, unit="batch", mininterval=2)


def write_part(path: Path, part: int, train, rows, seen, net, text, p, counts: dict,
               n_props: list) -> int:
    """Write part `part` of the images' proposals to `path`; the recall of the first
    `proposals.recall_images` images of part 0 is counted into counts and n_props."""
    lo, hi = part * len(rows) // p.parts, (part + 1) * len(rows) // p.parts
    with ProposalWriter(path, p.row_group_size) as writer:
        for k, (row, props) in enumerate(iter_split_proposals(
                train, rows[lo:hi], net, text, p, f"proposals part {part}", progress)):
            writer.add(props)
            if part == 0 and k < p.recall_images:
                recall_counts(train, row, props, seen, counts)
                n_props.append(len(props.masks))
    return writer.rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("--params", "--index", "--net", "--out", "--metrics"):
        ap.add_argument(flag, type=Path, required=True)
    ap.add_argument("--part", type=int, default=None, help="write only this part")
    args = ap.parse_args(argv)
    p = load_params(args.params).proposals
    torch.set_num_threads(p.threads)
    splits = read_splits(args.index / "splits.json")
    net, text = None, None
    if p.source == "net":
        net, text, _ = load_proposal_net(args.net)
    train = splits["train"]
    rows = list(iter_index(train.index))
    seen = load_class_list(train.classes).seen
    counts, n_props = {}, []
    if args.part is not None:
        if not 0 <= args.part < p.parts:
            raise SystemExit(f"--part {args.part} is outside 0..{p.parts - 1} (proposals.parts)")
        # The folder is shared with the other machines' parts: this part is staged beside
        # it, never inside it, and renamed in when complete.
        with staged_outputs(args.out / part_name(args.part, p.parts),
                            staging=args.out.parent) as (path,):
            n = write_part(path, args.part, train, rows, seen, net, text, p, counts, n_props)
        print(f"wrote {n} proposals of part {args.part} to {args.out}")
        return
    # A full run writes a new folder (no parts of an older layout survive) and its metrics,
    # and puts both in place only when everything is written.
    with staged_outputs(args.out, args.metrics) as (out, metrics_path):
        out.mkdir()
        total = sum(write_part(out / part_name(part, p.parts), part, train, rows, seen, net,
                               text, p, counts, n_props) for part in range(p.parts))
        print(f"wrote {total} proposals for {len(rows)} images")
        metrics = {"source": p.source, "iou_threshold": 0.5, "train": summarize(counts, n_props)}
        for name, split in splits.items():
            if split.role == "eval":
                eval_rows = list(iter_index(split.index))[:p.recall_images]
                metrics[name] = split_recall(split, eval_rows, load_class_list(split.classes).seen,
                                             net, text, p, progress)
        write_json(metrics_path, metrics)
    print({k: {g: round(v[g]["recall"], 3) for g in ("seen", "unseen") if g in v}
           for k, v in metrics.items() if isinstance(v, dict)})


if __name__ == "__main__":
    main()
