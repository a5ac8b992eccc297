"""Stage train_proposals: train the open-vocabulary proposal net on the labelled training
split, with the base CLIP's text embeddings of the training class names as its classifier.

    python -m stages.train_proposals --params params.yaml --index data/index
        --clip models/clip_base --text-cache .cache/text_classifiers
        --resume data/tmp/train_proposals/last.pt --out models/proposals
        --loss-csv metrics/proposals_loss.csv --loss-png metrics/proposals_loss.png

Resumable: a checkpoint is written every `proposals.checkpoint_every` steps to --resume
and picked up by the next run with the same params. Several processes or GPUs:
`torchrun --nproc_per_node 4 -m stages.train_proposals` with the same arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.clip.model import load_clip, tokenizer_for
from pipeline.clip.text_classifier import TEMPLATE_SETS, cached_text_classifier
from pipeline.data.files import staged_outputs
from pipeline.data.layouts import iter_index, read_splits
from pipeline.distributed.device import start_ranks
from pipeline.distributed.launch import hand_over_to_torchrun
from pipeline.distributed.precision import uses_bf16
from pipeline.distributed.process_group import main_first
from pipeline.params import load_params, to_dict
from pipeline.proposals.backbones import load_backbone_weights
from pipeline.proposals.model import save_proposal_net
from pipeline.proposals.train import LOSS_COLUMNS, train_proposal_net
from pipeline.proposals.training_setup import (
    batch_loader,
    build_net,
    build_optimizer,
    loss_settings,
    lr_schedule,
    training_classes,
)
from pipeline.training.checkpoint import load_checkpoint, save_checkpoint
from pipeline.training.loss_log import write_loss_log


def save_resume(path: Path, model, optimizer, step: int, logs: list, fingerprint: str) -> None:
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "step": step, "logs": logs, "fingerprint": fingerprint})


def write_loss_curve(logs: list[dict], csv_path: Path, png_path: Path) -> None:
    write_loss_log(csv_path, png_path, logs, LOSS_COLUMNS, ("loss", "ce", "dice"),
                   "proposal net training loss")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for flag in ("--params", "--index", "--clip", "--text-cache", "--resume", "--out",
                 "--loss-csv", "--loss-png"):
        ap.add_argument(flag, type=Path, required=True)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    hand_over_to_torchrun("stages.train_proposals", argv, params.compute)
    p = params.proposals
    device, ddp = start_ranks(params.compute.device)
    torch.set_num_threads(p.threads)
    torch.manual_seed(p.seed)
    split = read_splits(args.index / "splits.json")["train"]
    rows = list(iter_index(split.index))
    names, lut = training_classes(split)

    clip = load_clip(args.clip).eval()
    text = main_first(ddp, lambda: cached_text_classifier(  # once, not by every rank
        clip, tokenizer_for(args.clip), names, args.text_cache,
        TEMPLATE_SETS[params.clip.templates])).to(device)
    clip = None  # only its text tower was needed
    model = build_net(p, text.shape[1])
    if p.backbone_weights not in ("", "download"):
        load_backbone_weights(model.backbone, p.backbone_weights)  # ValueError: a bad file
    model = model.to(device)
    optimizer = build_optimizer(model, p)
    fingerprint = json.dumps({"params": to_dict(p), "classes": names}, sort_keys=True)
    start, logs = 0, []
    state = load_checkpoint(args.resume, fingerprint, device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, logs = state["step"], state["logs"]
    load_batch = batch_loader(rows, split, lut, p, device)
    bar = tqdm(total=p.steps, initial=start, desc="train proposals", unit="step",
               mininterval=2, disable=not ddp.main)

    def on_step(log):
        logs.append(dataclasses.asdict(log))
        bar.update(1)
        bar.set_postfix(loss=f"{log.loss:.3f}", refresh=False)
        done = log.step + 1
        if ddp.main and done % p.checkpoint_every == 0 and done < p.steps:
            save_resume(args.resume, model, optimizer, done, logs, fingerprint)

    weights, mask_loss = loss_settings(p)
    bf16 = uses_bf16(device, p.precision)
    train_proposal_net(model, load_batch, len(rows), text, weights, optimizer, p.steps,
                       p.batch_size, lr_schedule(p), p.seed, start, ddp, on_step, mask_loss,
                       p.grad_clip_norm, torch.bfloat16 if bf16 else None)
    bar.close()
    if not ddp.main:
        return
    model.eval()
    with staged_outputs(args.out, args.loss_csv, args.loss_png) as (out, loss_csv, loss_png):
        out.mkdir()
        save_proposal_net(out, model, text, names)
        write_loss_curve(logs, loss_csv, loss_png)
    args.resume.unlink(missing_ok=True)  # only now: a failed write can still resume
    print(f"trained {p.steps} steps; final loss {np.mean([r['loss'] for r in logs[-20:]]):.3f}")


if __name__ == "__main__":
    main()
