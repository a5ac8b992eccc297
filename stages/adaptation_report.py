"""Stage adaptation_report: zero-shot top-1 on the ground-truth masked crops of each
evaluation split, seen and unseen classes apart, for the base CLIP, FT, MPT and the
pipeline's adapted CLIP (FT then MPT by default), beside an outline-only control.

    python -m stages.adaptation_report --params params.yaml --index data/index
        --base-clip models/clip_base --ft-clip models/clip_ft --adapted models/mask_prompts
        --shards data/shards --text-cache .cache/text_classifiers
        --resume data/tmp/adaptation_report --metrics metrics/adaptation.json

--index: the evaluation splits whose ground-truth crops are classified; --shards and
--resume: for a row trained here (below).

Rows the pipeline did not produce are trained here with the same params when cheap and
asked for: with FT and MPT both on, the "mpt" row (prompts on the base CLIP) is trained
here when `adapt.mpt_only_row` is true. A row that does not exist is null, with the reason.
"""

from __future__ import annotations

import shutil

from pipeline.adapt.adapted_model import load_adapted, was_finetuned
from pipeline.adapt.phases import tune_phases
from pipeline.adapt.region_accuracy import accuracy_line, split_region_accuracy
from pipeline.clip.model import load_clip, tokenizer_for
from pipeline.clip.text_classifier import TEMPLATE_SETS
from pipeline.data.files import staged_outputs, write_json
from pipeline.data.layouts import read_splits
from stages._start import start_stage, step_bars

PATHS = ("--index", "--base-clip", "--ft-clip", "--adapted", "--shards", "--text-cache",
         "--resume", "--metrics")


def variant_models(params, args, device, ddp) -> tuple[dict, dict]:
    """{row: (model, prompts)} of the rows that exist, {row: reason} of those that do not."""
    ft, mpt = params.ft, params.mpt
    adapted, prompts, manifest = load_adapted(args.adapted)
    models, missing = {"base": (load_clip(args.base_clip).eval(), None)}, {}
    ft_only = was_finetuned(args.ft_clip)
    if ft_only:
        models["ft"] = (load_clip(args.ft_clip).eval(), None)
    else:
        missing["ft"] = ("ft.enabled is false" if not ft.enabled else
                         f"mpt.order {mpt.order} finetunes CLIP only after or with the prompts")
    if manifest["phases"] == ["mpt"] and not manifest["clip_finetuned_before"]:
        models["mpt"] = (adapted, prompts)
    elif mpt.enabled and params.adapt.mpt_only_row:
        base = load_clip(args.base_clip)
        learned, _, _ = tune_phases(base, mpt.depth, ["mpt"], params, args.shards,
                                    args.base_clip, args.resume, args.text_cache, device, ddp,
                                    step_bars(ddp))
        models["mpt"] = (base.eval(), learned.prompts.detach())
    else:
        missing["mpt"] = "mpt.enabled is false" if not mpt.enabled else \
            "adapt.mpt_only_row is false"
    if ft.enabled and mpt.enabled:
        models[mpt.order] = (adapted, prompts)
    on_device = {row: (m.to(device), None if p is None else p.to(device))
                 for row, (m, p) in models.items()}  # the region probe runs on `device`
    return on_device, missing


def main(argv=None) -> None:
    run = start_stage("stages.adaptation_report", __doc__, argv, PATHS, "adapt", torchrun=True,
                      networks=True)
    args, params, device, ddp = run.args, run.params, run.device, run.ddp
    a = params.adapt
    models, missing = variant_models(params, args, device, ddp)
    if not ddp.main:
        return
    tokenizer = tokenizer_for(args.base_clip)
    splits = {name: s for name, s in read_splits(args.index / "splits.json").items()
              if s.role == "eval"}
    report = {"rows": list(models) + list(missing), "missing": missing, "fill": a.fill,
              "order": params.mpt.order, "splits": {}}
    for name, split in splits.items():
        result = split_region_accuracy(split, models, tokenizer, args.text_cache,
                                       TEMPLATE_SETS[params.clip.templates], a, device)
        report["splits"][name] = {**result, **{row: None for row in missing}}
        print(accuracy_line(name, result, list(models)))
    with staged_outputs(args.metrics) as (metrics_path,):
        write_json(metrics_path, report)
    shutil.rmtree(args.resume, ignore_errors=True)  # only now: a failed write can still resume


if __name__ == "__main__":
    main()
