"""Throughput of each heavy stage's per-image work at the paper's shapes (640x480 images,
100 proposals each, 224-pixel crops), on the CPU or a GPU, with the model FLOP utilisation
(MFU) of its network against the matmul rate of the same dtype measured in the same run,
and against the GPU's datasheet peak when given (--peak-tflops).

Rows (random weights: speed does not depend on them):
- extract_proposals: the proposal net (R101c at short side 512, Swin-B at 640) on a batch
  of images, then each image's masks upsampled, thresholded and RLE-encoded (CPU).
- mine_pairs: 100 proposal masks RLE-decoded (CPU), masked crops and CLIP (ViT-B/16 or
  ViT-L/14; bf16 autocast on CUDA, fp32 on CPU) on the device.
- evaluate: the two-stage segmenter (R101c + ViT-B/16 or Swin-B + ViT-L/14, 150 classes)
  on one image: proposals, 100 crops through CLIP, the ensemble and the label map.
- write_shards: 100 unfilled crops cut, JPEG- and PNG-encoded and packed as tar members.
The "full min" column projects the stage at full scale from the rate measured, on --gpus
devices like this one (`compute.processes` = --gpus): COCO's 118K images (100 proposals
each, so ~12M crops to mine; ~5 pairs each to shard), ADE20K-150's 2000 for evaluate.

    python -m benchmarks.bench_heavy_stages                            # CPU, 2 threads, ~10 min
    python -m benchmarks.bench_heavy_stages --only mine_pairs --settings "Swin-B + ViT-L/14"
    python -m benchmarks.bench_heavy_stages --device cuda --peak-tflops 989 --gpus 8
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.bench_mask_clip import matmul_rate, random_masks, table, timed
from benchmarks.bench_proposal_net import SETTINGS
from pipeline.clip.mask_classifier import crop_size, crops_for_clip
from pipeline.clip.mask_prompts import encode_image
from pipeline.clip.masked_crops import masked_crops
from pipeline.clip.model import create_clip
from pipeline.data.image_io import encode_jpeg, encode_png
from pipeline.data.proposal_table import (
    ImageProposals,
    decode_masks,
    encode_masks,
    proposal_columns,
)
from pipeline.data.shard_writer import sample_members
from pipeline.distributed.precision import autocast
from pipeline.params import ProposalParams, parse_params
from pipeline.proposals.inference import masks_to_image, net_batch
from pipeline.proposals.model import ProposalNet, image_proposals, predict_proposals
from pipeline.proposals.training_recipe import net_config
from pipeline.segment.segmenter import Segmenter, segmenter_settings

H, W, PROPOSALS, CLASSES, COCO_IMAGES, ADE_IMAGES = 480, 640, 100, 150, 118_287, 2000
# (proposal net setting of bench_proposal_net, its inference short side, CLIP)
PAIRINGS = {"R101c + ViT-B/16": ("R101c + ViT-B/16 text (512)", 512, "ViT-B-16"),
            "Swin-B + ViT-L/14": ("Swin-B + ViT-L/14 text (512)", 640, "ViT-L-14")}


@dataclass
class Bench:
    device: str
    repeats: int
    baseline: float  # matmul FLOP/s of the networks' dtype on the device, this run
    peak_tflops: float  # the device's datasheet peak, 0: unknown
    devices: int  # for the full-scale projection

    def row(self, stage: str, setting: str, unit: str, rate: float, flops_per_item: float,
            achieved: float, note: str, full_items: int) -> list:
        nan = float("nan")
        return [stage, setting, f"{rate:.4g} {unit}/s", flops_per_item / 1e9, achieved / 1e12,
                achieved / self.baseline if achieved else nan,
                achieved / (self.peak_tflops * 1e12) if self.peak_tflops and achieved else nan,
                full_items / (rate * self.devices) / 60, note]


def flops_of(fn) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def inference(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, no parameter asking for gradients (torch's FLOP counter tracks modules
    with autograd hooks, which fail on a parameter fed to a module under no_grad)."""
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval()


def proposal_net(setting: str, short_side: int, device: str) -> tuple[ProposalNet, torch.Tensor]:
    overrides, text_dim, crop = SETTINGS[setting]
    p = ProposalParams(**{**overrides, "crop_size": crop, "short_side": short_side})
    net = inference(ProposalNet(net_config(p, text_dim))).to(device)
    return net, F.normalize(torch.randn(171, text_dim, device=device), dim=-1)


def extract_row(b: Bench, name: str, batch: int) -> list:
    device = b.device
    setting, short_side, _ = PAIRINGS[name]
    net, text = proposal_net(setting, short_side, device)
    x, sizes = net_batch([torch.rand(3, H, W) for _ in range(batch)], short_side, 32)
    x = x.to(device)
    flops = flops_of(lambda: net(x[:1])) * batch

    def forward():
        with torch.no_grad(), autocast(device, "auto"):
            return predict_proposals(net, x, text)

    net_s = timed(forward, device, b.repeats)
    logits, scores = forward()

    def postprocess():  # each image's masks at its size, thresholded, RLE-encoded
        for lg, sc, size in zip(logits, scores.float(), sizes):
            masks, kept = image_proposals(masks_to_image(lg, size, (H, W)), sc, (H, W))
            proposal_columns(ImageProposals(0, masks.cpu().numpy(), kept.cpu().numpy()))

    post_s = timed(postprocess, device, b.repeats)
    rate = batch / (net_s + post_s)
    return b.row("extract_proposals", name, "images", rate, flops / batch, flops / net_s,
                 f"net {batch / net_s:.3g}/s, masks+RLE {batch / post_s:.3g}/s", COCO_IMAGES)


def mine_row(b: Bench, arch: str, crops: int) -> list:
    device = b.device
    model = inference(create_clip(arch)).to(device)
    size = crop_size(model)
    flops_per_crop = flops_of(lambda: model.visual(torch.randn(1, 3, size, size,
                                                               device=device)))
    masks = random_masks(crops, H, W).numpy()
    rles = encode_masks(masks)
    image = torch.rand(3, H, W)

    def decode():  # what each image costs the CPU before the device sees it
        return torch.from_numpy(decode_masks(rles, H, W))

    def clip_part():
        m = decode().to(device)
        batch, _, _ = crops_for_clip(model, image.to(device), m)
        with torch.no_grad(), autocast(device, "auto"):
            return encode_image(model, batch)

    decode_s = timed(decode, "cpu", b.repeats)
    total_s = timed(clip_part, device, b.repeats)
    return b.row("mine_pairs", arch, "crops", crops / total_s, flops_per_crop,
                 flops_per_crop * crops / total_s,
                 f"RLE decode {decode_s / total_s:.0%} of the time; on CUDA mine_pairs "
                 f"decodes on a reader thread, ahead: {crops / (total_s - decode_s):.3g} "
                 "crops/s if fully overlapped", COCO_IMAGES * PROPOSALS)


def evaluate_row(b: Bench, name: str) -> list:
    device = b.device
    setting, short_side, arch = PAIRINGS[name]
    net, _ = proposal_net(setting, short_side, device)
    clip = inference(create_clip(arch)).to(device)
    text_dim = SETTINGS[setting][1]
    segmenter = Segmenter(net, F.normalize(torch.randn(CLASSES, text_dim, device=device), dim=-1),
                          clip, F.normalize(torch.randn(CLASSES, clip.visual.output_dim,
                                                        device=device), dim=-1),
                          **{**dataclasses.asdict(segmenter_settings(parse_params({}))),
                             "short_side": short_side, "batch_size": PROPOSALS})
    image = torch.rand(3, H, W)

    def segment():
        with autocast(device, "auto"):
            return segmenter.predict(image)

    flops = flops_of(segment)
    seconds = timed(segment, device, b.repeats)
    return b.row("evaluate", name, "images", 1 / seconds, flops, flops / seconds,
                 f"fusion on {device} too", ADE_IMAGES)


def shards_row(b: Bench, crops: int) -> list:
    masks = random_masks(crops, H, W)
    image = torch.rand(3, H, W)

    def write():
        cut, cut_masks, _ = masked_crops(image, masks, 224, fill="none")
        pixels = (cut * 255).round().byte().permute(0, 2, 3, 1).numpy()
        binary = cut_masks.numpy().astype(np.uint8) * 255
        for k in range(crops):
            sample_members(f"{k:012d}", encode_jpeg(pixels[k], 95), encode_png(binary[k]),
                           "noun", {"k": k})

    seconds = timed(write, "cpu", b.repeats)
    return b.row("write_shards", "224 crops", "crops", crops / seconds, 0.0, 0.0,
                 "CPU: JPEG + PNG + tar", COCO_IMAGES * 5)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--crops", type=int, default=None,
                    help="crops per mining measurement (default: 100 on GPU, 8 on CPU)")
    ap.add_argument("--batch", type=int, default=None,
                    help="images per proposal-net forward (default: 8 on GPU, 1 on CPU)")
    ap.add_argument("--peak-tflops", type=float, default=0.0,
                    help="the device's dense bf16 peak, e.g. 989 for an H100 or H200 SXM")
    ap.add_argument("--gpus", type=int, default=8, help="devices for the COCO projection")
    ap.add_argument("--settings", nargs="*", default=None, choices=list(PAIRINGS),
                    help="default: both on GPU; R101c + ViT-B/16 on CPU, where Swin-B and "
                         "ViT-L/14 take many minutes per image")
    ap.add_argument("--only", nargs="*", default=None,
                    help="stages to run (extract_proposals mine_pairs evaluate write_shards)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    gpu = args.device == "cuda"
    crops, batch = args.crops or (100 if gpu else 8), args.batch or (8 if gpu else 1)
    dtype = torch.bfloat16 if gpu else torch.float32
    b = Bench(args.device, args.repeats,
              matmul_rate(dtype, args.device, 8192 if gpu else 1024) * 1e9, args.peak_tflops,
              args.gpus if gpu else 1)
    only = set(args.only or ("extract_proposals", "mine_pairs", "evaluate", "write_shards"))
    t0 = time.time()
    rows = []
    settings = args.settings or (list(PAIRINGS) if gpu else ["R101c + ViT-B/16"])
    for name in settings:
        if "extract_proposals" in only:
            rows.append(extract_row(b, name, batch))
        if "mine_pairs" in only:
            rows.append(mine_row(b, PAIRINGS[name][2], crops))
        if "evaluate" in only:
            rows.append(evaluate_row(b, name))
    if "write_shards" in only:
        rows.append(shards_row(b, crops))
    where = torch.cuda.get_device_name() if gpu else f"CPU, {args.threads} threads"
    table(f"Heavy stages at real shapes on {where} ({'bf16 autocast' if gpu else 'fp32'}); "
          f"matmul baseline {b.baseline / 1e12:.3g} TFLOP/s; full scale on {b.devices} "
          "such device(s)",
          ["stage", "setting", "rate", "GFLOP/item", "TFLOP/s", "vs matmul", "MFU (peak)",
           "full min", "note"], rows)
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
