"""Stage train_proposals: train the open-vocabulary proposal net on the labelled training
split, with the base CLIP's text embeddings of the training class names as its classifier.

deps: data/index (train split), models/clip_base, params proposals
outs: models/proposals/ (proposal_net.safetensors, config.json),
      metrics/proposals_loss.csv (+ .png)

Resumable: a checkpoint is written every `proposals.checkpoint_every` steps to
data/tmp/train_proposals/last.pt and picked up by the next run with the same params.
Several processes or GPUs: `torchrun --nproc_per_node 4 -m stages.train_proposals`.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.clip.model import load_clip, tokenizer_for
from pipeline.clip.text_classifier import cached_text_classifier
from pipeline.data.class_lists import load_class_list
from pipeline.data.files import atomic_dir, atomic_write_bytes
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import iter_index, read_splits
from pipeline.params import load_params, to_dict
from pipeline.proposals.loss import LossWeights, segment_targets
from pipeline.proposals.model import ProposalNet, ProposalNetConfig, save_proposal_net
from pipeline.proposals.train import train_proposal_net
from pipeline.training.distributed import init_distributed
from pipeline.training.plots import curves_png

SPLITS = Path("data/index/splits.json")
CLIP_DIR = Path("models/clip_base")
OUT_DIR = Path("models/proposals")
RESUME = Path("data/tmp/train_proposals/last.pt")
LOSS_CSV = Path("metrics/proposals_loss.csv")
LOSS_PNG = Path("metrics/proposals_loss.png")
TEXT_CACHE = Path(".cache/text_classifiers")


def net_config(p, text_dim: int) -> ProposalNetConfig:
    return ProposalNetConfig(backbone=p.backbone, width=p.width, hidden=p.hidden,
                             queries=p.queries, decoder_layers=p.decoder_layers, heads=p.heads,
                             text_dim=text_dim, temperature=p.temperature)


def build_net(p, text_dim: int) -> ProposalNet:
    model = ProposalNet(net_config(p, text_dim),
                        pretrained_backbone=p.backbone_weights == "download")
    if p.backbone_weights not in ("", "download"):
        from safetensors.torch import load_file

        path = p.backbone_weights
        state = load_file(path) if path.endswith(".safetensors") else \
            torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = model.backbone.body.load_state_dict(state, strict=False)
        print(f"backbone weights from {path}: {len(missing)} missing, "
              f"{len(unexpected)} unexpected keys")
    return model


def training_classes(split) -> tuple[list[str], torch.Tensor]:
    """Names of the classes labelled in training, and label value -> class index (-1: not
    trained on)."""
    classes = load_class_list(split.classes)
    seen = [i for i, s in enumerate(classes.seen) if s]
    lut = torch.full((256,), -1, dtype=torch.long)
    lut[seen] = torch.arange(len(seen))
    return [classes.names[i] for i in seen], lut


def save_resume(path: Path, model, optimizer, step: int, logs: list, fingerprint: str) -> None:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "step": step, "logs": logs, "fingerprint": fingerprint}, buf)
    atomic_write_bytes(path, buf.getvalue())


def write_loss_curve(logs: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "loss", "ce", "mask", "dice", "lr"])
    for r in logs:
        w.writerow([r["step"]] + [f"{r[k]:.5f}" for k in ("loss", "ce", "mask", "dice")]
                   + [f"{r['lr']:.6g}"])
    atomic_write_bytes(LOSS_CSV, buf.getvalue().encode())
    atomic_write_bytes(LOSS_PNG, curves_png(
        [r["step"] for r in logs], {k: [r[k] for r in logs] for k in ("loss", "ce", "dice")},
        "step", "proposal net training loss"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    p = load_params(args.params).proposals
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ddp = init_distributed(device)
    if device.type == "cuda":
        device = torch.device("cuda", ddp.rank % torch.cuda.device_count())
    torch.set_num_threads(p.threads)
    torch.manual_seed(p.seed)
    split = read_splits(SPLITS)["train"]
    rows = list(iter_index(split.index))
    names, lut = training_classes(split)

    clip = load_clip(CLIP_DIR).eval()
    text = cached_text_classifier(clip, tokenizer_for(CLIP_DIR), names, TEXT_CACHE).to(device)
    del clip
    model = build_net(p, text.shape[1]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    fingerprint = json.dumps({"params": to_dict(p), "classes": names}, sort_keys=True)
    start, logs = 0, []
    if RESUME.is_file():
        state = torch.load(RESUME, map_location=device, weights_only=True)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start, logs = state["step"], state["logs"]
            print(f"resuming from step {start} ({RESUME})")
    size = (p.image_size, p.image_size)
    pred_size = (p.image_size // 4, p.image_size // 4)
    image_dir, label_dir = Path(split.image_dir), Path(split.label_dir)

    def load_batch(idx: np.ndarray):
        images = np.stack([read_rgb(image_dir / rows[i].file_name, size) for i in idx])
        images = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).to(device)
        targets = []
        for i in idx:
            labels = torch.from_numpy(read_labels(label_dir / rows[i].label_file, size).copy())
            t = segment_targets(labels, lut, pred_size, split.ignore_label)
            targets.append({k: v.to(device) for k, v in t.items()})
        return images, targets

    bar = tqdm(total=p.steps, initial=start, desc="train proposals", unit="step",
               mininterval=2, disable=not ddp.main)

    def on_step(log):
        logs.append(dataclasses.asdict(log))
        bar.update(1)
        bar.set_postfix(loss=f"{log.loss:.3f}", refresh=False)
        done = log.step + 1
        if ddp.main and done % p.checkpoint_every == 0 and done < p.steps:
            save_resume(RESUME, model, optimizer, done, logs, fingerprint)

    weights = LossWeights(p.no_object_weight, 1.0, p.mask_weight, p.dice_weight)
    train_proposal_net(model, load_batch, len(rows), text, weights, optimizer, p.steps,
                       p.batch_size, p.lr, p.warmup_steps, p.seed, start, ddp, on_step)
    bar.close()
    if not ddp.main:
        return
    model.eval()
    with atomic_dir(OUT_DIR) as out:
        save_proposal_net(out, model, text, names)
    write_loss_curve(logs)
    RESUME.unlink(missing_ok=True)
    print(f"trained {p.steps} steps; final loss {np.mean([r['loss'] for r in logs[-20:]]):.3f}")


if __name__ == "__main__":
    main()
