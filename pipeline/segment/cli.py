"""The `ovseg` commands that segment your own images with your own class names and look at
what the pipeline produced (pipeline/ovseg.py puts them and the demo together).

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


MAX_PIXELS = 1024 * 1024  # larger images are segmented at this many pixels (see --max-pixels)


def vocabulary(args) -> list[str] | None:
    """The class names asked for, or None after printing why there are none."""
    from pipeline.data.class_lists import load_vocabulary

    if not args.classes_file and args.classes is None:
        print("give the class names: --classes \"sky, dog, teapot\" or --classes-file F",
              file=sys.stderr)
        return None
    try:
        return load_vocabulary(args.classes_file or args.classes)
    except (ValueError, OSError) as e:
        print(f"vocabulary: {e}", file=sys.stderr)
        return None


def params_or_defaults(path: str):
    """The params file `segment` and `demo` read eval.* and compute.device from; without
    one (no params.yaml here), the schema's defaults."""
    from pipeline.params import ParamsError, load_params, parse_params

    try:
        return load_params(path)
    except ParamsError:
        return parse_params({})


def segmenter_for(args, names: list[str]):
    """The pipeline's models set up for `names`, or None after printing, in one line, why
    they cannot be loaded (missing, or a corrupt file: re-running its stage fixes both)."""
    from safetensors import SafetensorError

    from pipeline.distributed.device import select_device
    from pipeline.segment.segmenter import load_segmenter, segmenter_settings

    params = params_or_defaults(args.params)
    try:
        return load_segmenter(names, segmenter_settings(params), args.proposals, args.adapted,
                              args.base_clip, dtype=params.eval.dtype,
                              templates=params.clip.templates,
                              device=select_device(params.compute.device))
    except FileNotFoundError as e:
        print(f"model missing: {e}", file=sys.stderr)
    except ValueError as e:  # the loaders' errors for corrupt files name the file
        print(f"model unusable: {(str(e).splitlines() or [type(e).__name__])[0]}",
              file=sys.stderr)
    except SafetensorError as e:  # weights of the proposal net or a CLIP
        print(f"model unusable: a weights file under {args.proposals}, {args.adapted} or "
              f"{args.base_clip} is not a safetensors file ({e}): re-run its stage "
              "(`dvc repro`)", file=sys.stderr)
    return None


def segment_file(segmenter, path: str, names: list[str], out: Path, variant: str,
                 max_pixels: int) -> str:
    """Segment one image file and write its two PNGs; returns the line to print.
    Raises ImageReadError (unreadable image) or OSError (outputs not written)."""
    import numpy as np

    from pipeline.data.image_io import read_rgb_within
    from pipeline.segment.segmenter import image_tensor
    from pipeline.segment.view import label_map_png, segmentation_png

    image, full_size = read_rgb_within(path, max_pixels)  # (h, w, 3) within the bound
    labels = segmenter.predict(image_tensor(image))[variant].numpy()  # (h, w) int64
    # the overlay at the working size, since the figure is drawn at about 800 pixels wide
    pngs = {"labels": label_map_png(labels, len(names), full_size),
            "overlay": segmentation_png(image, labels, names)}
    stem = Path(path).stem
    for kind, data in pngs.items():  # each written to a temporary name, then renamed
        atomic_write_bytes(out / f"{stem}_{kind}.png", data)
    present = ", ".join(names[c] for c in np.unique(labels))
    (h, w), (fh, fw) = image.shape[:2], full_size
    scaled = "" if (h, w) == full_size else f" (segmented at {w}x{h}, labels at {fw}x{fh})"
    return f"{path}: {present} -> {out / (stem + '_overlay.png')}, " \
           f"{out / (stem + '_labels.png')}{scaled}"


def segment(args) -> int:
    """Segment every image given; one that cannot be read or written is reported in one
    line and skipped. Exit status 1 if any was skipped, 2 if nothing could start."""
    from pipeline.data.image_io import ImageReadError

    names = vocabulary(args)
    if names is None:
        return 2
    segmenter = segmenter_for(args, names)
    if segmenter is None:
        return 2
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"cannot create the output folder {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    done, stems = 0, {}
    for path in args.images:
        stem = Path(path).stem
        if stem in stems:  # a.jpg and a.png would write the same a_labels.png
            print(f"skipped {path}: its outputs would overwrite those of {stems[stem]}",
                  file=sys.stderr)
            continue
        stems[stem] = path
        try:
            print(segment_file(segmenter, path, names, out, args.variant, args.max_pixels))
            done += 1
        except ImageReadError as e:
            print(f"cannot read image {e}", file=sys.stderr)
        except OSError as e:
            print(f"cannot write the outputs of {path}: {e}", file=sys.stderr)
    print(f"segmented {done} of {len(args.images)} images")
    return 0 if done == len(args.images) else 1


def add_model_args(parser) -> None:
    """The model folders and params that `segment` (and `demo`) serve."""
    parser.add_argument("--proposals", default="models/proposals", help="proposal net folder")
    parser.add_argument("--adapted", default="models/mask_prompts",
                        help="adapted CLIP (folder with adapted.json)")
    parser.add_argument("--base-clip", default="models/clip_base",
                        help="the CLIP whose text space the proposal net was trained in")
    parser.add_argument("--params", default="params.yaml", help="eval.* settings, if present")
    parser.add_argument("--max-pixels", type=pixel_count, default=MAX_PIXELS,
                        help="segment larger images scaled down to this many pixels (labels "
                        "still at full size), so memory stays bounded; 0: no bound")


def pixel_count(text: str) -> int:
    """argparse type of --max-pixels: a whole number >= 0."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def add_commands(sub) -> None:
    """`show-proposals` and `segment` on an argparse subparsers object (pipeline/ovseg.py
    adds them to the `ovseg` command)."""
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
    add_model_args(sg)
    sg.set_defaults(func=segment)


def main(argv=None) -> int:
    """`show-proposals` and `segment` alone (the `ovseg` command has the demo too)."""
    ap = argparse.ArgumentParser(prog="ovseg", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_commands(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
