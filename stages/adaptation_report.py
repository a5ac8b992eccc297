"""Stage adaptation_report: zero-shot top-1 on the ground-truth masked crops of each
evaluation split, seen and unseen classes apart, for the base CLIP, FT, MPT and the
pipeline's adapted CLIP (FT then MPT by default), beside an outline-only control.

deps: models/clip_base, models/clip_ft, models/mask_prompts, data/shards, eval splits,
      params adapt, mpt, ft
outs: metrics/adaptation.json

Rows the pipeline did not produce are trained here with the same params when cheap and
asked for: with FT and MPT both on, the "mpt" row (prompts on the base CLIP) is trained
here when `adapt.mpt_only_row` is true. A row that does not exist is null, with the reason.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pipeline.adapt.adapted_model import load_adapted, was_finetuned
from pipeline.adapt.region_accuracy import Variant, region_accuracy, split_regions
from pipeline.adapt.run import start_adaptation_stage, tune_phases
from pipeline.clip.model import load_clip, tokenizer_for
from pipeline.clip.text_classifier import cached_text_classifier
from pipeline.data.class_lists import load_class_list
from pipeline.data.files import write_json
from pipeline.data.layouts import iter_index, read_splits

SPLITS = Path("data/index/splits.json")
BASE_DIR = Path("models/clip_base")
FT_DIR = Path("models/clip_ft")
ADAPTED_DIR = Path("models/mask_prompts")
SHARDS = Path("data/shards")
RESUME_DIR = Path("data/tmp/adaptation_report")
METRICS = Path("metrics/adaptation.json")
TEXT_CACHE = Path(".cache/text_classifiers")


def variant_models(params, device, ddp) -> tuple[dict, dict]:
    """{row: (model, prompts)} of the rows that exist, {row: reason} of those that do not."""
    ft, mpt = params.ft, params.mpt
    adapted, prompts, manifest = load_adapted(ADAPTED_DIR)
    models, missing = {"base": (load_clip(BASE_DIR).eval(), None)}, {}
    ft_only = was_finetuned(FT_DIR)
    if ft_only:
        models["ft"] = (load_clip(FT_DIR).eval(), None)
    else:
        missing["ft"] = ("ft.enabled is false" if not ft.enabled else
                         f"mpt.order {mpt.order} finetunes CLIP only after or with the prompts")
    if manifest["phases"] == ["mpt"] and not manifest["clip_finetuned_before"]:
        models["mpt"] = (adapted, prompts)
    elif mpt.enabled and params.adapt.mpt_only_row:
        base = load_clip(BASE_DIR)
        learned, _, _ = tune_phases(base, mpt.depth, ["mpt"], params, SHARDS, BASE_DIR,
                                    RESUME_DIR, TEXT_CACHE, device, ddp)
        models["mpt"] = (base.cpu().eval(), learned.prompts.detach().cpu())
    else:
        missing["mpt"] = "mpt.enabled is false" if not mpt.enabled else \
            "adapt.mpt_only_row is false"
    if ft.enabled and mpt.enabled:
        models[mpt.order] = (adapted, prompts)
    return models, missing


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params, device, ddp = start_adaptation_stage(args.params)
    a = params.adapt
    models, missing = variant_models(params, device, ddp)
    if not ddp.main:
        return
    tokenizer = tokenizer_for(BASE_DIR)
    splits = {name: s for name, s in read_splits(SPLITS).items() if s.role == "eval"}
    report = {"rows": list(models) + list(missing), "missing": missing, "fill": a.fill,
              "order": params.mpt.order, "splits": {}}
    for name, split in splits.items():
        classes = load_class_list(split.classes)
        variants = {row: Variant(m, p, cached_text_classifier(m, tokenizer, classes.names,
                                                               TEXT_CACHE))
                    for row, (m, p) in models.items()}
        regions = split_regions(iter_index(split.index), Path(split.image_dir),
                                Path(split.label_dir), split.ignore_label,
                                models["base"][0], a.fill)
        result = region_accuracy(regions, variants, classes, a.eval_batch_size,
                                 seed=a.seed)
        report["splits"][name] = {**result, **{row: None for row in missing}}
        print(f"{name}: " + ", ".join(
            f"{row} {result[row]['all']:.3f} (seen {result[row]['seen'] or 0:.3f}, unseen "
            f"{result[row]['unseen'] or 0:.3f})" for row in models)
            + f"; outline-only control {(result['outline_only_control'] or {}).get('accuracy')}")
    write_json(METRICS, report)
    shutil.rmtree(RESUME_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
