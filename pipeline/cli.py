"""The `ovseg` command: tools for looking at what the pipeline produced.

    ovseg show-proposals --image-id 12 --out proposals.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.files import atomic_write_bytes
from pipeline.image_io import read_rgb
from pipeline.layouts import iter_index, read_splits
from pipeline.proposal_table import iter_image_proposals
from pipeline.proposal_view import proposals_png


def show_proposals(args) -> int:
    split = read_splits(args.splits)[args.split]
    rows = {r.image_id: r for r in iter_index(split.index)}
    wanted = None if args.image_id is None else {args.image_id}
    props = next(iter_image_proposals(args.proposals, wanted), None)
    if props is None:
        which = "any image" if wanted is None else f"image {args.image_id}"
        print(f"no proposals for {which} in {args.proposals}", file=sys.stderr)
        return 1
    if props.image_id not in rows:
        print(f"image {props.image_id} is not in split {args.split!r} ({split.index})",
              file=sys.stderr)
        return 1
    image = read_rgb(Path(split.image_dir) / rows[props.image_id].file_name)
    order = props.scores.argsort()[::-1][:args.top]
    titles = [f"#{k} score {props.scores[k]:.2f}"
              + (f" label {props.labels[k]}" if props.labels is not None
                 and props.labels[k] >= 0 else "") for k in order]
    atomic_write_bytes(args.out, proposals_png(image, props.masks[order], props.scores[order],
                                               titles))
    print(f"image {props.image_id}: {len(props.masks)} proposals, top {len(order)} "
          f"drawn to {args.out}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ovseg", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("show-proposals", help="draw one image's proposals to a PNG")
    sp.add_argument("--proposals", default="data/proposals", help="parquet folder or file")
    sp.add_argument("--image-id", type=int, default=None, help="default: the first image")
    sp.add_argument("--splits", default="data/index/splits.json")
    sp.add_argument("--split", default="train", help="split the image belongs to")
    sp.add_argument("--top", type=int, default=22, help="draw at most this many, by score")
    sp.add_argument("--out", default="proposals.png")
    sp.set_defaults(func=show_proposals)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
