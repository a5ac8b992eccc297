"""Stage train_proposals: train the open-vocabulary proposal net on the labelled training
split, with the base CLIP's text embeddings of the training class names as its classifier.

    python -m stages.train_proposals --params params.yaml --index data/index
        --clip models/clip_base --text-cache .cache/text_classifiers
        --resume data/tmp/train_proposals/last.pt --out models/proposals
        --live-log metrics/live/train_proposals --loss-png metrics/proposals_loss.png

Resumable: a checkpoint is written every `proposals.checkpoint_every` steps to --resume
and picked up by the next run with the same params. Several processes or GPUs:
`torchrun --nproc_per_node 4 -m stages.train_proposals` with the same arguments.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tqdm import tqdm

from pipeline.clip.model import load_clip, tokenizer_for
from pipeline.clip.text_classifier import TEMPLATE_SETS, cached_text_classifier
from pipeline.data.digests import fingerprint
from pipeline.data.files import staged_outputs
from pipeline.data.layouts import iter_index, read_splits
from pipeline.distributed.process_group import main_first
from pipeline.params import to_dict
from pipeline.proposals.model import save_proposal_net
from pipeline.proposals.training_loop import (
    LOSS_COLUMNS,
    train_proposal_net,
    write_proposal_loss_png,
)
from pipeline.proposals.training_recipe import (
    batch_loader,
    build_net,
    build_optimizer,
    loss_settings,
    lr_schedule,
    training_classes,
)
from pipeline.training.checkpoint import resume_training, save_training
from pipeline.training.live_log import training_log
from stages._start import start_stage

PATHS = ("--index", "--clip", "--text-cache", "--resume", "--out", "--live-log", "--loss-png")


def main(argv=None) -> None:
    run = start_stage("stages.train_proposals", __doc__, argv, PATHS, "proposals",
                      torchrun=True, networks=True)
    args, params, p, device, ddp = run.args, run.params, run.params.proposals, run.device, \
        run.ddp
    split = read_splits(args.index / "splits.json")["train"]
    rows = list(iter_index(split.index))
    names, lut = training_classes(split)
    text = main_first(ddp, lambda: cached_text_classifier(  # once, not by every rank
        load_clip(args.clip).eval(), tokenizer_for(args.clip), names, args.text_cache,
        TEMPLATE_SETS[params.clip.templates])).to(device)
    model = build_net(p, text.shape[1]).to(device)
    optimizer = build_optimizer(model, p)
    run_key = fingerprint(params=to_dict(p), classes=names)
    start, logs = resume_training(args.resume, model, optimizer, run_key, device)
    bar = tqdm(total=p.steps, initial=start, desc="train proposals", unit="step",
               mininterval=2, disable=not ddp.main)

    def on_step(log):
        logs.append(dataclasses.asdict(log))
        step_log.log(logs[-1])  # the DVCLive log, opened below
        bar.update(1)
        bar.set_postfix(loss=f"{log.loss:.3f}", refresh=False)
        done = log.step + 1
        if ddp.main and done % p.checkpoint_every == 0 and done < p.steps:
            save_training(args.resume, model, optimizer, done, logs, run_key)

    weights, mask_loss = loss_settings(p)
    # the step log through DVCLive, written as the steps run (rank 0's), from the
    # checkpoint's steps on a resume
    with training_log(args.live_log if ddp.main else None, LOSS_COLUMNS) as step_log:
        step_log.replay(logs)
        loader = batch_loader(rows, split, lut, p, device, p.loader_workers)
        train_proposal_net(model, loader, len(rows), text, weights, optimizer, p.steps,
                           p.batch_size, lr_schedule(p), p.seed, start, ddp, on_step,
                           mask_loss, p.grad_clip_norm, p.precision)
    bar.close()
    if not ddp.main:
        return
    model.eval()
    with staged_outputs(args.out, args.loss_png) as (out, loss_png):
        out.mkdir()
        save_proposal_net(out, model, text, names)
        write_proposal_loss_png(logs, loss_png)
    args.resume.unlink(missing_ok=True)  # only now: a failed write can still resume
    print(f"trained {p.steps} steps; final loss {np.mean([r['loss'] for r in logs[-20:]]):.3f}")


if __name__ == "__main__":
    main()
