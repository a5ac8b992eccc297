"""Benchmark proposal-net training steps at the paper's two settings (OVSeg §4.1, ov-seg's
configs/ovseg_R101c_vitB_bs32_120k.yaml and ovseg_swinB_vitL_bs32_120k.yaml) against the
synthetic world's net, measured in the same run: seconds per step and peak memory.

Random weights and random targets (171 COCO-Stuff classes, 8 segments per image); the
step is the real one: forward, Hungarian matching, focal + dice + CE over every decoder
layer, backward, gradient clipping and the AdamW update. Each setting runs in its own
process, so its peak resident memory (VmHWM) is its own.

    python -m benchmarks.bench_proposal_net                    # CPU, crop 512, 1 image
    python -m benchmarks.bench_proposal_net --batch 4 --steps 5 --device cuda
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from pipeline.params import ProposalParams
from pipeline.proposals.model import ProposalNet
from pipeline.proposals.training_loop import train_proposal_net
from pipeline.proposals.training_recipe import build_optimizer, loss_settings, net_config

# name -> (ProposalParams overrides, CLIP text width, crop)
SETTINGS = {
    "world (small_cnn, 64)": (dict(backbone="small_cnn", freeze_bn=False, hidden=64,
                                   queries=16, decoder_layers=2, heads=4,
                                   dim_feedforward=256, dropout=0.0), 64, 64),
    "R101c + ViT-B/16 text (512)": (dict(backbone="timm:resnet101c"), 512, 512),
    "Swin-B + ViT-L/14 text (512)": (dict(backbone="timm:swin_base_patch4_window12_384",
                                          backbone_lr_multiplier=1.0, lr=6e-5,
                                          weight_decay=0.01), 768, 512),
}
CLASSES, SEGMENTS = 171, 8


def random_targets(n: int, size: int, g: torch.Generator) -> list[dict]:
    """Per image: SEGMENTS class masks partitioning the stride-4 grid, some pixels ignored."""
    h = size // 4
    out = []
    for _ in range(n):
        owner = F.interpolate(torch.rand(1, SEGMENTS, 4, 4, generator=g), size=(h, h),
                              mode="bilinear", align_corners=False)[0].argmax(0)
        masks = torch.stack([(owner == s).float() for s in range(SEGMENTS)])
        valid = (torch.rand(h, h, generator=g) > 0.05).float()
        out.append({"labels": torch.randperm(CLASSES, generator=g)[:SEGMENTS],
                    "masks": masks * valid, "valid": valid})
    return out


def run_one(name: str, batch: int, steps: int, device: str) -> dict:
    overrides, text_dim, crop = SETTINGS[name]
    p = ProposalParams(**{**overrides, "crop_size": crop, "steps": steps + 1,
                          "warmup_steps": 0})
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    dev = torch.device(device)
    model = ProposalNet(net_config(p, text_dim)).to(dev)
    text = F.normalize(torch.randn(CLASSES, text_dim, generator=g), dim=-1).to(dev)
    images = torch.rand(batch, 3, crop, crop, generator=g).to(dev)
    targets = [{k: v.to(dev) for k, v in t.items()} for t in random_targets(batch, crop, g)]
    weights, mask_loss = loss_settings(p)
    times = []

    def on_step(log):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    times.append(time.perf_counter())
    train_proposal_net(model, lambda idx, step: (images, targets), batch, text, weights,
                       build_optimizer(model, p), steps + 1, batch, lambda s: p.lr, 0,
                       on_step=on_step, mask_loss=mask_loss, grad_clip_norm=p.grad_clip_norm,
                       precision="auto")
    per_step = [b - a for a, b in zip(times[1:], times[2:])]  # the first step warms up
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
                   if line.startswith("VmHWM"))
    gpu = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None
    return {"setting": name, "params_m": sum(q.numel() for q in model.parameters()) / 1e6,
            "s_per_step": sum(per_step) / len(per_step), "peak_rss_gib": peak_kb / 2**20,
            "peak_gpu_gib": gpu}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=1, help="images per step")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help=argparse.SUPPRESS)  # a child process: one setting
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.only:
        print(json.dumps(run_one(args.only, args.batch, args.steps, args.device)))
        return
    rows = []
    for name in SETTINGS:
        cmd = [sys.executable, "-m", "benchmarks.bench_proposal_net", "--only", name,
               "--batch", str(args.batch), "--steps", str(args.steps), "--device",
               args.device, "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    base = rows[0]["s_per_step"]
    print(f"proposal-net training step, {args.batch} image(s) per step, {args.device}, "
          f"{args.threads} threads, {args.steps} timed steps")
    print(f"{'setting':32} {'params (M)':>10} {'s/step':>8} {'x world':>8} "
          f"{'peak RSS GiB':>12} {'peak GPU GiB':>12}")
    for r in rows:
        gpu = "-" if r["peak_gpu_gib"] is None else f"{r['peak_gpu_gib']:.2f}"
        print(f"{r['setting']:32} {r['params_m']:10.1f} {r['s_per_step']:8.3f} "
              f"{r['s_per_step'] / base:8.1f} {r['peak_rss_gib']:12.2f} {gpu:>12}")


if __name__ == "__main__":
    main()
