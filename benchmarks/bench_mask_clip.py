"""Benchmark CLIP on masked regions; prints one table per measurement, each with its
baseline measured in the same run.

1. Mask prompt tuning overhead: MPT forward (prompts at every depth up to `--depth`,
   random masks) over open_clip's plain forward. Goal: at most 1.03.
2. Masked-crop classification throughput (crops -> CLIP -> softmax) in fp32 and bf16
   weights, as crops/s and achieved GFLOP/s, against the matmul rate of the same dtype.
   Goal: bf16 crops reach at least half of the bf16 matmul rate.
3. Masked crops alone: batched matrix-product resize vs one box at a time.

    python -m benchmarks.bench_mask_clip                  # CPU, 2 threads
    python -m benchmarks.bench_mask_clip --device cuda --threads 16
Weights are random (no pretrained weights here); speed does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pipeline.clip.mask_classifier import DTYPES, classify_masks, crop_size
from pipeline.clip.mask_prompts import MaskPrompts, encode_image
from pipeline.clip.masked_crops import masked_crops
from pipeline.clip.model import create_clip


def timed(fn, device, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def random_masks(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Blobby masks: random boxes of random pixels, like proposals of mixed sizes."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        bh, bw = (int(torch.randint(max(1, s // 8), s + 1, (1,), generator=g)) for s in (h, w))
        y0 = int(torch.randint(0, h - bh + 1, (1,), generator=g))
        x0 = int(torch.randint(0, w - bw + 1, (1,), generator=g))
        masks[i, y0:y0 + bh, x0:x0 + bw] = torch.rand(bh, bw, generator=g) > 0.2
    return masks


def table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [header] + [[c if isinstance(c, str) else f"{c:.4g}" for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for k, r in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def mpt_overhead(arch: str, batch: int, depth: int, device: str, repeats: int) -> list:
    """Plain and MPT forwards alternate, so machine noise hits both alike; best of each."""
    model = create_clip(arch).eval().to(device)
    size = crop_size(model)
    depth = min(depth, len(model.visual.transformer.resblocks))
    prompts = MaskPrompts.for_model(model, depth).prompts.detach().normal_().to(device)
    x = torch.randn(batch, 3, size, size, device=device)
    masks = random_masks(batch, size, size).to(device)
    plain, mpt = [], []
    with torch.inference_mode():
        for _ in range(repeats):
            plain.append(timed(lambda: model.visual(x), device, 1))
            mpt.append(timed(lambda: encode_image(model, x, masks, prompts), device, 1))
        # the time MPT adds by construction: its token replacements, as the profiler sees
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            encode_image(model, x, masks, prompts)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total + e.self_device_time_total for e in events)
    added = sum(e.self_cpu_time_total + e.self_device_time_total for e in events
                if e.key in ("aten::where", "aten::max_pool2d_with_indices", "aten::pad"))
    ratios = sorted(m / p for p, m in zip(plain, mpt))
    return [arch, str(batch), str(depth), min(plain) * 1e3, min(mpt) * 1e3,
            min(mpt) / min(plain), ratios[len(ratios) // 2], 1 + added / (total - added)]


def matmul_rate(dtype: torch.dtype, device: str, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n x n product in nn.Linear's layout (x @ W^T), the layout of
    every ViT projection; on CPU it takes oneDNN's fast path where plain `a @ b` in bf16
    may not."""
    a = torch.randn(n, n, device=device).to(dtype)
    w = torch.randn(n, n, device=device).to(dtype)
    with torch.inference_mode():
        return 2 * n ** 3 / timed(lambda: F.linear(a, w), device, repeats) / 1e9


def crop_throughput(arch: str, n_masks: int, image_hw: tuple[int, int], dtypes, device: str,
                    repeats: int) -> list:
    model = create_clip(arch).eval()
    size = crop_size(model)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.visual(torch.randn(1, 3, size, size))
    flops_per_crop = counter.get_total_flops()
    image = torch.rand(3, *image_hw, device=device)
    masks = random_masks(n_masks, *image_hw).to(device)
    text = F.normalize(torch.randn(150, model.visual.output_dim, device=device), dim=-1)
    rows = []
    for name in dtypes:
        model = model.to(device=device, dtype=DTYPES[name])
        peak = matmul_rate(DTYPES[name], device)
        seconds = timed(partial(classify_masks, model, image, masks, text,
                                batch_size=n_masks), device, repeats)
        rate = flops_per_crop * n_masks / seconds / 1e9
        rows.append([arch, name, f"{image_hw[0]}x{image_hw[1]}", n_masks / seconds,
                     flops_per_crop / 1e9, rate, peak, rate / peak])
    return rows


def crop_methods(cases, device: str, repeats: int) -> list:
    rows = []
    for h, w, size, n in cases:
        image = torch.rand(3, h, w, device=device)
        masks = random_masks(n, h, w).to(device)
        fill = torch.tensor([0.48, 0.46, 0.41], device=device)
        ms = {m: timed(partial(masked_crops, image, masks, size, "mean", fill, method=m),
                       device, repeats) / n * 1e3 for m in ("loop", "matmul", "auto")}
        rows.append([f"{h}x{w}", str(size), str(n), ms["loop"], ms["matmul"], ms["auto"],
                     ms["loop"] / ms["matmul"]])
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--depth", type=int, default=3, help="MPT depth (OVSeg default 3)")
    ap.add_argument("--big-arch", default="ViT-B-16", help="real-scale CLIP (random weights)")
    ap.add_argument("--crops", type=int, default=8, help="masks per big-arch image")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = args.device
    big_batch = 64 if dev == "cuda" else 8
    print(f"device {dev}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}")

    table("1. MPT forward vs plain open_clip forward (fp32, best of alternating runs; "
          "goal ratio <= 1.03)",
          ["arch", "batch", "depth", "plain ms", "MPT ms", "best ratio", "median ratio",
           "op ratio"],
          [mpt_overhead("ovseg-tiny-vit", 256, args.depth, dev, args.repeats),
           mpt_overhead(args.big_arch, big_batch, args.depth, dev, args.repeats),
           mpt_overhead(args.big_arch, big_batch, 12, dev, args.repeats)])
    print("best/median ratio: wall clock of alternating runs (noisy on a shared machine); "
          "op ratio: 1 + profiled time of MPT's own ops (patch mask, token selects) over "
          "the rest of the forward")

    crops = args.crops * (8 if dev == "cuda" else 1)
    dtypes = ["float32", "bfloat16"]
    table("2. Masked-crop classification (crop + CLIP + softmax over 150 classes) vs matmul "
          "rate of the same dtype (goal: bf16 ratio >= 0.5)",
          ["arch", "dtype", "image", "crops/s", "GFLOP/crop", "GFLOP/s", "linear GFLOP/s",
           "ratio"],
          crop_throughput("ovseg-tiny-vit", 256, (64, 64), dtypes, dev, args.repeats)
          + crop_throughput(args.big_arch, crops, (480, 640), dtypes, dev, 1))

    table("3. Masked crops only: ms per mask, one box at a time vs batched matrix products",
          ["image", "size", "masks", "loop ms", "matmul ms", "auto ms", "loop/matmul"],
          crop_methods([(64, 64, 64, 100), (160, 160, 224, 32), (480, 640, 224, 32)], dev,
                       args.repeats))


if __name__ == "__main__":
    main()
