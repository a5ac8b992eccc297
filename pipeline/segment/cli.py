"""The `ovseg` command: segment your own images with your own class names, and look at
what the pipeline produced.

    ovseg segment photo.jpg --classes "saturn v, teapot, sky" --out seg/
    ovseg show-proposals --image-id 12 --out proposals.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.data.files import atomic_write_bytes
from pipeline.data.image_io import read_rgb
from pipeline.data.layouts import iter_index, read_splits
from pipeline.data.proposal_table import iter_image_proposals
from pipeline.proposals.view import proposals_png


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


def segment(args) -> int:
    import numpy as np
    import torch

    from pipeline.data.class_lists import load_vocabulary
    from pipeline.params import ParamsError, load_params
    from pipeline.segment.segmenter import load_segmenter
    from pipeline.segment.view import segmentation_png

    try:
        if args.classes_file:
            names = load_vocabulary(args.classes_file)
        elif args.classes is not None:
            names = load_vocabulary(args.classes)
        else:
            print("give the class names: --classes \"sky, dog, teapot\" or --classes-file F",
                  file=sys.stderr)
            return 2
    except (ValueError, OSError) as e:
        print(f"vocabulary: {e}", file=sys.stderr)
        return 2
    try:
        params = load_params(args.params)
        p, net_size = params.eval, params.proposals.image_size
        settings = dict(mask_threshold=p.mask_threshold, ensemble_lambda=p.ensemble_lambda,
                        fill=p.fill, batch_size=p.batch_size)
        dtype = p.dtype
    except ParamsError:  # no params.yaml here: the defaults
        net_size, settings, dtype = 64, {}, "float32"
    try:
        segmenter = load_segmenter(names, args.proposals, args.adapted, args.base_clip,
                                   dtype=dtype, net_size=net_size, **settings)
    except FileNotFoundError as e:
        print(f"model missing: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        try:
            image = read_rgb(path)
        except Exception as e:  # PIL raises several types for unreadable files
            print(f"cannot read image {path}: {e}", file=sys.stderr)
            return 2
        x = torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255
        labels = segmenter.predict(x)[args.variant].numpy()
        stem = Path(path).stem
        dtype_out = np.uint8 if len(names) <= 255 else np.uint16
        from pipeline.data.files import encode_png

        atomic_write_bytes(out / f"{stem}_labels.png", encode_png(labels.astype(dtype_out)))
        atomic_write_bytes(out / f"{stem}_overlay.png", segmentation_png(image, labels, names))
        present = ", ".join(names[c] for c in np.unique(labels))
        print(f"{path}: {present} -> {out / (stem + '_overlay.png')}, "
              f"{out / (stem + '_labels.png')}")
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
    sg = sub.add_parser("segment", help="segment images into the given classes",
                        description="Two-stage OVSeg inference with the pipeline's models. "
                        "Writes <name>_overlay.png (colours and a legend) and <name>_labels.png "
                        "(class index per pixel, in --classes order) for each image.")
    sg.add_argument("images", nargs="+", help="image files")
    sg.add_argument("--classes", help='comma-separated class names, e.g. "saturn v, sky", '
                    "or a built-in list such as ade20k_150")
    sg.add_argument("--classes-file", help="one class per line (synonyms comma-separated), "
                    "or a JSON class list")
    sg.add_argument("--out", default="segmentations")
    sg.add_argument("--variant", default="ensemble", choices=("ensemble", "clip", "maskformer"))
    sg.add_argument("--proposals", default="models/proposals", help="proposal net folder")
    sg.add_argument("--adapted", default="models/mask_prompts",
                    help="adapted CLIP (folder with adapted.json)")
    sg.add_argument("--base-clip", default="models/clip_base",
                    help="the CLIP whose text space the proposal net was trained in")
    sg.add_argument("--params", default="params.yaml", help="eval.* settings, if present")
    sg.set_defaults(func=segment)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
