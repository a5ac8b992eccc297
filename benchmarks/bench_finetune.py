"""FT training throughput against open_clip's own training entrypoint, measured in one run on
the same model, shards, batch size, threads and precision.

    python -m benchmarks.bench_finetune                   # tiny CLIP of `dvc repro`
    python -m benchmarks.bench_finetune --model ViT-B-16  # random-init ViT-B/16 (GPU)

- ours: `train_adaptation` fed by `ShardBatches` (joint crop/mask augmentation, background
  fill, noun text features computed once, since the text tower is frozen);
- open_clip_train: `python -m open_clip_train.main --lock-text` on the same tars (its own
  webdataset pipeline and augmentation; it runs the frozen text tower every step).

Samples/s is the median over steps after the first `--warmup` of batch size / step time,
where a step time includes waiting for data, as open_clip_train's "Batch (t)" does. On a
GPU the table adds model FLOP utilisation: 3 x the forward FLOPs of the image tower (from
torch's FLOP counter) x samples/s over the GPU's peak dense bf16 rate (`--peak-tflops`).

open_clip_train 3.3.0 does not understand webdataset 1.0.2's end-of-shard marker (an
empty dict; KeyError 'fname'). The benchmark runs it through a two-line shim that drops
those markers before its own grouping; nothing else of it is changed.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pipeline.adapt.phases import noun_text_features
from pipeline.adapt.shard_loader import Augment, ShardBatches, ShardList, batch_loader
from pipeline.adapt.train import (
    AdaptPlan,
    MaskedCropEncoder,
    adaptation_optimizer,
    train_adaptation,
)
from pipeline.clip.mask_classifier import crop_size
from pipeline.clip.model import create_clip, load_clip, pixel_stats, tokenizer_for

SHIM = """
import sys
import open_clip_train.data as data
grouped = data.group_by_keys_nothrow
data.group_by_keys_nothrow = lambda files, **kw: grouped((f for f in files if f), **kw)
from open_clip_train.main import main
main(sys.argv[1:])
"""
RATE = re.compile(r"Batch \(t\): [0-9.]+, ([0-9.e+]+)/s,")


def load_model(name: str):
    return load_clip(name) if Path(name).is_dir() else create_clip(name)


def ours(args, device) -> list[float]:
    model = load_model(args.model)
    shards = ShardList.from_dir(args.shards)
    nouns, text = noun_text_features(model, tokenizer_for(args.model), shards,
                                     Path(".cache/text_classifiers"))
    mean, std = pixel_stats(model)
    aug = Augment(crop_size(model), (0.9, 1.0), fill="mean", mean=tuple(mean.tolist()),
                  std=tuple(std.tolist()))
    steps = args.steps
    data = ShardBatches(shards, aug, args.batch_size, steps, seed=0)
    plan = AdaptPlan(True, False, steps, 2, clip_lr=5e-6, clip_weight_decay=0.2)
    encoder = MaskedCropEncoder(model).to(device)
    times = [time.perf_counter()]

    def on_step(log):
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    train_adaptation(encoder, batch_loader(data, args.workers, device.type == "cuda"),
                     text.to(device), {n: i for i, n in enumerate(nouns)},
                     adaptation_optimizer(encoder, plan), plan, precision=args.precision,
                     on_step=on_step)
    return [args.batch_size / (b - a) for a, b in zip(times, times[1:])]


def open_clip_train(args, device) -> list[float]:
    shards = ShardList.from_dir(args.shards)
    numbers = [Path(p).stem.split("-")[1] for p in shards.paths]  # shard-000000.tar
    pattern = str(Path(shards.paths[0]).parent / f"shard-{{{numbers[0]}..{numbers[-1]}}}.tar")
    model = f"local-dir:{args.model}" if Path(args.model).is_dir() else args.model
    precision = "amp_bf16" if args.precision != "fp32" and device.type == "cuda" else "fp32"
    with tempfile.TemporaryDirectory() as logs:
        cmd = [sys.executable, "-c", SHIM, "--train-data", pattern,
               "--dataset-type", "webdataset",
               "--train-num-samples", str(args.steps * args.batch_size),
               "--model", model, "--lock-text", "--lock-text-freeze-layer-norm",
               "--batch-size", str(args.batch_size), "--epochs", "1",
               "--workers", str(max(1, args.workers)), "--lr", "5e-6", "--wd", "0.2",
               "--warmup", "2", "--precision", precision, "--log-every-n-steps", "1",
               "--logs", logs, "--name", "bench", "--report-to", "", "--save-frequency", "0",
               "--seed", "0", "--device", device.type]
        res = subprocess.run(cmd, capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
    rates = [float(m) for m in RATE.findall(res.stdout + res.stderr)]
    if res.returncode != 0 or not rates:
        raise RuntimeError(f"open_clip_train failed (exit {res.returncode}):\n"
                           f"{(res.stdout + res.stderr)[-3000:]}")
    return rates


def image_tower_flops(model_name: str, device) -> float:
    """Forward FLOPs of the image tower for one image."""
    from torch.utils.flop_counter import FlopCounterMode

    model = load_model(model_name).to(device)
    size = crop_size(model)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.visual(torch.zeros(1, 3, size, size, device=device))
    return float(counter.get_total_flops())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/clip_base",
                    help="CLIP checkpoint folder, or an open_clip architecture (random init)")
    ap.add_argument("--shards", default="data/shards")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3, help="steps left out of the median")
    ap.add_argument("--workers", type=int, default=1, help="loader processes, both sides")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="GPU peak dense bf16 TFLOP/s for MFU (H100 SXM: 989)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for name, fn in (("ours (finetune stage)", ours), ("open_clip_train", open_clip_train)):
        rates = fn(args, device)[args.warmup:]
        rows.append((name, statistics.median(rates), len(rates)))
    base = rows[1][1]
    flops = image_tower_flops(args.model, device) if device.type == "cuda" else None
    print(f"\nFT throughput, {args.model} on {device.type}"
          f"{' ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}, batch "
          f"{args.batch_size}, {args.workers} loader worker(s), {args.threads} threads\n")
    head = f"{'trainer':<24}{'samples/s':>11}{'steps':>7}{'vs open_clip':>14}"
    print(head + ("  MFU" if flops else ""))
    for name, rate, n in rows:
        line = f"{name:<24}{rate:>11.1f}{n:>7}{rate / base:>13.2f}x"
        if flops:
            line += f"  {3 * flops * rate / (args.peak_tflops * 1e12):.1%}"
        print(line)


if __name__ == "__main__":
    main()
