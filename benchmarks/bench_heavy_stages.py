"""Throughput of each heavy stage's per-image work at the paper's shapes (640x480 images,
100 proposals each, 224-pixel crops), on the CPU or a GPU, with the model FLOP utilisation
(MFU) of its network against the matmul rate of the same dtype measured in the same run,
and against the GPU's datasheet peak when given (--peak-tflops).

Rows (random weights: speed does not depend on them):
- extract_proposals: the proposal net (R101c at short side 512, Swin-B at 640) on a batch
  of images (their decoded bytes sent up, scaled and resized on the device, as the stage
  does), then each image's masks upsampled, thresholded and RLE-encoded as the stage
  does it: on a GPU by torch ops on the device (rle_device), on the CPU by pycocotools.
  The masks are solid regions' logits, not the random net's (noise: ~30x a real mask's
  runs, and RLE costs by the run).
- mine_pairs: 100 proposal masks RLE-decoded as the stage does it (on a GPU on the
  device, on the CPU by pycocotools), masked crops and CLIP (ViT-B/16 or ViT-L/14; bf16
  autocast and a bf16 image tower on CUDA, fp32 on CPU) on the device, one batch timed
  alone; and "stage loop": `mine_pairs` itself over image, label and proposal files
  written as the stages write them (40 images of 100 proposals on a GPU), with its
  reading ahead, 512-crop batches and read-backs deferred by a batch: what overlaps
  and what does not shows as the gap between the two rows.
- evaluate: the two-stage segmenter (R101c + ViT-B/16 or Swin-B + ViT-L/14, 150 classes)
  on a batch of images as the stage runs it (the presets' 4 per batch on a GPU, 1 on the
  CPU): proposals, each image's 100 crops through CLIP in shared batches of 256, the
  ensemble and the label maps; and "stage loop": the stage's own loop over image and
  label files (40 images on a GPU), with the params' λ sweep and bottleneck variants, the
  label maps counted on the device (issue 31).
- write_shards: 100 unfilled crops cut, JPEG- and PNG-encoded and packed as tar members.
- train_proposals: one training step of the proposal net (R101c at crop 512, Swin-B at
  640; forward, matching, losses over every decoder layer, backward, AdamW) on random
  images and targets, at the presets' per-GPU batch (32 images over 8 GPUs: 4; 1 on CPU).
- finetune, prompt_tune: one FT step (image tower trained) and one MPT step (depth-3
  prompts trained, CLIP frozen) of ViT-B/16 or ViT-L/14 on random masked crops, at the
  presets' per-GPU batch (FT 1024 or 256, MPT 256, over 8 GPUs; 4 crops on CPU).
  Training FLOPs are counted by torch's FLOP counter over forward and backward.
The "host ms" column is the CPU time (all threads, `time.process_time`) per item of the
work a GPU run still leaves on the host: decoding the image files (a 640x480 JPEG; for
evaluate also its PNG label map), the RLE strings built from the device's counts and the
parquet columns (extract), the strings parsed into counts (mine), the JPEG, PNG and tar
members (write_shards). It is measured on any machine, so it shows progress on the host
side without a GPU; the note gives the same work with pycocotools on host masks (the
CPU path, and the GPU path before issue 31).
The "goal (GPU)" column is issue 31's goal for the row per H200-class GPU under bf16 (a
rate, or an MFU against --peak-tflops), and "vs goal" the measured rate or MFU over it,
on CUDA only.
The "full min" column projects the stage at full scale from the rate measured, on --gpus
devices like this one (`compute.processes` = --gpus): COCO's 118K images (100 proposals
each, so ~12M crops to mine; ~5 pairs each to shard), ADE20K-150's 2000 for evaluate,
the presets' 120K proposal-net steps of 32 images, 5 FT epochs and 5 MPT epochs (OVSeg
§4.1) over COCO's ~440K pairs.

    python -m benchmarks.bench_heavy_stages                            # CPU, 2 threads, ~10 min
    python -m benchmarks.bench_heavy_stages --only mine_pairs --settings "Swin-B + ViT-L/14"
    python -m benchmarks.bench_heavy_stages --device cuda --peak-tflops 989 --gpus 8
    python -m benchmarks.bench_heavy_stages --only train_proposals finetune prompt_tune
    python -m benchmarks.bench_heavy_stages --device cuda --profile gpu-check/profiles

--profile DIR: one more call of each extract, mine and evaluate row under torch.profiler,
its ops by self time (device time on CUDA) in DIR/<stage>-<setting>.txt: where the time
goes, for the next change (issue 31, item 2).
--compile: the mine_pairs and evaluate rows with CLIP's image tower under torch.compile
(compiled in their untimed first call), to set beside a run without it (issue 31 item 2:
compile only where it measurably helps):

    python -m benchmarks.bench_heavy_stages --device cuda --only mine_pairs evaluate --compile
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.bench_mask_clip import matmul_rate, random_masks, table, timed
from benchmarks.bench_proposal_net import SETTINGS
from pipeline.clip.mask_classifier import cast_for_inference, crop_size, crops_for_clip
from pipeline.clip.mask_prompts import encode_image
from pipeline.clip.masked_crops import masked_crops
from pipeline.clip.model import create_clip
from pipeline.data import rle_device
from pipeline.data.class_lists import ClassList
from pipeline.data.image_io import encode_jpeg, encode_png
from pipeline.data.layouts import IndexRow, Split
from pipeline.data.proposal_table import (
    ImageProposals,
    ProposalWriter,
    decode_masks,
    encode_masks,
    mask_decoder,
    part_name,
    proposal_columns,
    string_columns,
)
from pipeline.data.read_ahead import depth_on
from pipeline.data.shard_writer import sample_members
from pipeline.distributed.precision import autocast, weights_dtype
from pipeline.distributed.transfers import to_device
from pipeline.mining.mine import mine_pairs
from pipeline.params import ProposalParams, parse_params
from pipeline.proposals.extract import net_outputs
from pipeline.proposals.inference import masks_to_image, net_batch
from pipeline.proposals.model import ProposalNet, image_proposals
from pipeline.proposals.training_recipe import net_config
from pipeline.segment.evaluation import READ_AHEAD_BATCHES, EvalSet, confusion_by_variant
from pipeline.segment.segmenter import Segmenter, segmenter_settings

H, W, PROPOSALS, CLASSES, COCO_IMAGES, ADE_IMAGES = 480, 640, 100, 150, 118_287, 2000
PROPOSAL_STEPS, PROPOSAL_BATCH, COCO_PAIRS, ADAPT_EPOCHS = 120_000, 32, 440_000, 5
# per-GPU batches of the presets over 8 GPUs: proposal net, FT (by CLIP), MPT
GPU_BATCH = {"proposals": 4, "ViT-B-16": 1024 // 8, "ViT-L-14": 256 // 8, "mpt": 256 // 8}
# the presets' evaluate: images per proposal-net forward, masked crops per CLIP forward
EVAL_IMAGES, EVAL_CROP_BATCH = 4, 256
# (proposal net setting of bench_proposal_net, its inference short side, CLIP)
PAIRINGS = {"R101c + ViT-B/16": ("R101c + ViT-B/16 text (512)", 512, "ViT-B-16"),
            "Swin-B + ViT-L/14": ("Swin-B + ViT-L/14 text (512)", 640, "ViT-L-14")}


# Issue 31's goals per H200-class GPU under bf16, by stage and the start of a row's
# setting: a rate in the row's unit per second, or an MFU against the datasheet peak
GOALS = {("extract_proposals", "R101c"): ("rate", 150),
         ("extract_proposals", "Swin-B"): ("rate", 80),
         ("mine_pairs", "ViT-B-16"): ("rate", 10_000),
         ("mine_pairs", "ViT-L-14"): ("rate", 4000),
         ("evaluate", "R101c"): ("rate", 50),
         ("evaluate", "Swin-B"): ("rate", 25),
         ("finetune", "ViT-L-14"): ("mfu", 0.40),
         ("train_proposals", "R101c"): ("mfu", 0.25),
         ("train_proposals", "Swin-B"): ("mfu", 0.25)}


def goal_of(stage: str, setting: str, unit: str) -> tuple[str, str, float] | None:
    """(the goal as text, "rate" or "mfu", its value) of a row, None where the issue set
    none."""
    for (goal_stage, start), (kind, value) in GOALS.items():
        if stage == goal_stage and setting.startswith(start):
            text = f"{value:g} {unit}/s" if kind == "rate" else f"{value:.0%} MFU"
            return text, kind, value
    return None


@dataclass
class Bench:
    device: str
    repeats: int
    baseline: float  # matmul FLOP/s of the networks' dtype on the device, this run
    peak_tflops: float  # the device's datasheet peak, 0: unknown
    devices: int  # for the full-scale projection
    profile_dir: Path | None = None  # --profile
    compile_clip: bool = False  # --compile

    def clip_tower(self, model: torch.nn.Module) -> str:
        """The mining and evaluation rows' CLIP image tower, compiled in place with --compile
        (`nn.Module.compile`: still open_clip's VisionTransformer, as mask prompts need):
        issue 31 asks for torch.compile only where it measurably helps. Returns the rows'
        setting suffix."""
        if not self.compile_clip:
            return ""
        model.visual.compile()
        return ", compiled"

    def profile(self, stage: str, setting: str, fn) -> None:
        """One call of `fn` under torch.profiler, its top ops written to profile_dir."""
        if self.profile_dir is None:
            return
        from torch.profiler import ProfilerActivity, profile

        cuda = torch.device(self.device).type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            fn()
            if cuda:
                torch.cuda.synchronize()
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() else "-" for c in f"{stage}-{setting}")
        (self.profile_dir / f"{name}.txt").write_text(prof.key_averages().table(
            sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=30))

    def row(self, stage: str, setting: str, unit: str, rate: float, flops_per_item: float,
            achieved: float, note: str, full_items: int, host_seconds: float) -> list:
        nan = float("nan")
        mfu = achieved / (self.peak_tflops * 1e12) if self.peak_tflops and achieved else nan
        goal, vs_goal = "", nan
        if (found := goal_of(stage, setting, unit)) is not None:
            goal, kind, value = found
            if self.device == "cuda":  # the goals are a GPU's; a CPU's ratio means nothing
                vs_goal = (rate if kind == "rate" else mfu) / value
        return [stage, setting, f"{rate:.4g} {unit}/s", flops_per_item / 1e9, achieved / 1e12,
                achieved / self.baseline if achieved else nan, mfu,
                host_seconds * 1e3, goal, vs_goal, full_items / (rate * self.devices) / 60,
                note]


def host_cpu(fn, repeats: int) -> float:
    """Median CPU seconds (every thread of this process) of `repeats` calls after one
    warm-up call: the host's share, whatever runs on the device meanwhile."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return float(np.median(times))


JPEG = encode_jpeg((np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8), 90)
LABELS = encode_png(np.random.default_rng(1).integers(0, CLASSES, (H, W), dtype=np.uint8))


def decode_image(data: bytes = JPEG) -> np.ndarray:
    """An image file's bytes -> (H, W, 3) uint8, as the stages read their inputs."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def flops_of(fn, training: bool = False) -> float:
    """FLOPs of one call of `fn`, by torch's FLOP counter; `training`: with gradients, so
    the backward is counted too."""
    with torch.set_grad_enabled(training), FlopCounterMode(display=False) as counter:
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
    images = [torch.randint(0, 256, (3, H, W), dtype=torch.uint8) for _ in range(batch)]
    x, _ = net_batch([images[0].float().div(255)], short_side, 32)
    flops = flops_of(lambda: net(x.to(device))) * batch
    p = ProposalParams(short_side=short_side, size_divisor=32)  # the stage's autocast too

    def forward():  # the stage's: decoded bytes up, scaled and resized there, the net
        return net_outputs(net, text, images, p)

    net_s = timed(forward, device, b.repeats)
    logits, scores, sizes = forward()
    # A random net's masks are noise (~3400 runs a mask at 640x480, measured), and RLE
    # costs by the run: the masks and RLE are timed on solid regions' logits (+-1, at the
    # net's 1/4 resolution), as a trained net's blobs are.
    logits = torch.from_numpy(np.stack([solid_masks(logits.shape[1], *logits.shape[-2:], b)
                                        for b in range(batch)])).float().mul(2).sub(1)
    logits = logits.to(device)

    on_device = rle_device.used_on(device)  # the stage's choice (extract.py)

    def postprocess():  # each image's masks at its size, thresholded, RLE-encoded
        for lg, sc, size in zip(logits, scores.float(), sizes):
            masks, kept = image_proposals(masks_to_image(lg, size, (H, W)), sc, (H, W))
            proposal_columns(ImageProposals(0, masks if on_device else masks.cpu().numpy(),
                                            kept.cpu().numpy()))

    post_s = timed(postprocess, device, b.repeats)
    masks = [image_proposals(masks_to_image(lg, size, (H, W)), sc, (H, W))
             for lg, sc, size in zip(logits, scores.float(), sizes)]
    masks = [(m.cpu(), s.cpu().numpy()) for m, s in masks]
    counts = [rle_device.rle_counts(m) for m, _ in masks]

    def host():  # the image files decoded; the strings of the device's counts, the columns
        for c, (_, s) in zip(counts, masks):
            decode_image()
            string_columns(0, H, W, rle_device.counts_strings(c), s)

    def host_pycocotools():  # the same with the masks encoded on the host
        for m, s in masks:
            decode_image()
            proposal_columns(ImageProposals(0, m.numpy(), s))

    b.profile("extract_proposals", name, lambda: (forward(), postprocess()))
    rate = batch / (net_s + post_s)
    return b.row("extract_proposals", name, "images", rate, flops / batch, flops / net_s,
                 f"net {batch / net_s:.3g}/s, masks+RLE {batch / post_s:.3g}/s; host with "
                 f"pycocotools {host_cpu(host_pycocotools, b.repeats) / batch * 1e3:.3g} ms",
                 COCO_IMAGES, host_cpu(host, b.repeats) / batch)


def solid_masks(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(n, h, w) bool: solid discs and boxes of mixed sizes, as the net's thresholded masks
    are. RLE costs by the run, and noise-filled boxes would have a hundred times a real
    mask's runs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(8, min(h, w) // 2)
        out[i] = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2 if rng.random() < 0.5 else \
            (abs(yy - cy) < r) & (abs(xx - cx) < 2 * r)
    return out


def mine_row(b: Bench, arch: str, crops: int) -> list:
    device = b.device
    model = inference(create_clip(arch)).to(device)
    size = crop_size(model)
    flops_per_crop = flops_of(lambda: model.visual(torch.randn(1, 3, size, size,
                                                               device=device)))
    cast_for_inference(model.visual, weights_dtype(device, "auto"))  # as stages/mine_pairs
    compiled = b.clip_tower(model)
    masks = solid_masks(crops, H, W)
    rles = encode_masks(masks)
    image = torch.rand(3, H, W)
    # the stage's choice (mine.py): decoded on the device off the CPU, by pycocotools on it
    decode_on = mask_decoder(device if rle_device.used_on(device) else None)

    def decode():
        return torch.as_tensor(decode_on(rles, H, W))

    def clip_part():
        m = decode().to(device)
        batch, _, _ = crops_for_clip(model, to_device(image, device), m)
        with torch.no_grad(), autocast(device, "auto"):
            return encode_image(model, batch)

    decode_s = timed(decode, device, b.repeats)
    total_s = timed(clip_part, device, b.repeats)
    b.profile("mine_pairs", arch, clip_part)
    # per crop: its RLE parsed into counts (the device runs the lengths out), and its share
    # of its image's file (PROPOSALS per image)
    image_s = host_cpu(decode_image, b.repeats) / PROPOSALS
    host_s = host_cpu(lambda: rle_device.strings_counts(rles), b.repeats) / crops
    coco_s = host_cpu(lambda: decode_masks(rles, H, W), b.repeats) / crops
    return b.row("mine_pairs", arch + compiled, "crops", crops / total_s, flops_per_crop,
                 flops_per_crop * crops / total_s,
                 f"RLE decode {decode_s / total_s:.0%} of the time; on CUDA mine_pairs "
                 f"decodes on a reader thread, ahead: {crops / (total_s - decode_s):.3g} "
                 f"crops/s if fully overlapped; host with pycocotools "
                 f"{(coco_s + image_s) * 1e3:.3g} ms", COCO_IMAGES * PROPOSALS,
                 host_s + image_s)


def mining_files(folder: Path, images: int, per_image: int) -> tuple[list, Split]:
    """`images` random JPEG images of H x W, label maps of 3 classes and `per_image` solid
    proposal masks each, in the layouts the stages read (index rows, a split, one proposal
    parquet part under folder/proposals)."""
    rng = np.random.default_rng(0)
    for name in ("images", "labels"):
        (folder / name).mkdir()
    rows = []
    with ProposalWriter(folder / "proposals" / part_name(0, 1), 8192) as writer:
        for i in range(images):
            labels = np.zeros((H, W), np.uint8)
            labels[:, W // 2:], labels[H // 4:H // 2, W // 8:W // 3] = 1, 2
            (folder / "images" / f"{i}.jpg").write_bytes(
                encode_jpeg(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)))
            (folder / "labels" / f"{i}.png").write_bytes(encode_png(labels))
            writer.add(ImageProposals(i, solid_masks(per_image, H, W, seed=i),
                                      np.ones(per_image, np.float32)))
            rows.append(IndexRow(i, f"{i}.jpg", f"{i}.png", H, W, ("a dog on the grass",)))
    return rows, Split("train", "train", str(folder / "images"), str(folder / "labels"), "",
                       "")


def wall_and_cpu(run, warm_up, device: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (every thread) of one call of a stage's loop, `run`,
    after `warm_up` (cuDNN, the allocator, a compile). The loop ends with a read-back,
    which waits for the device."""
    warm_up()
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def mine_loop_row(b: Bench, arch: str, images: int, per_image: int) -> list:
    """`mine_pairs` end to end over files (`mining_files`), as the stage calls it: the
    params' 512-crop batches and precision, the image tower cast as stages/mine_pairs
    casts it. One image first, untimed (cuDNN and allocator warm-up)."""
    device = b.device
    model = inference(create_clip(arch)).to(device)
    size = crop_size(model)
    flops_per_crop = flops_of(lambda: model.visual(torch.randn(1, 3, size, size,
                                                               device=device)))
    p = parse_params({}).mine
    cast_for_inference(model.visual, weights_dtype(device, p.precision))
    compiled = b.clip_tower(model)
    lemmas = ["dog", "grass", "sky"]
    text = F.normalize(torch.randn(len(lemmas), model.visual.output_dim, device=device), dim=-1)
    nouns = {i: [(0, "dog", "dog"), (0, "grass", "grass")] for i in range(images)}
    with tempfile.TemporaryDirectory() as tmp:
        rows, split = mining_files(Path(tmp), images, per_image)

        def mine(part):
            return mine_pairs(model, text, lemmas, nouns, {"dog": 1, "grass": 0}, part, split,
                              p, Path(tmp) / "proposals")

        wall, cpu = wall_and_cpu(lambda: mine(rows), lambda: mine(rows[:1]), device)
    crops = images * per_image
    return b.row("mine_pairs", f"{arch}{compiled}, stage loop, {images} x {per_image}",
                 "crops", crops / wall, flops_per_crop, flops_per_crop * crops / wall,
                 "mine_pairs over files: reading, RLE, crops, CLIP, pairs; host ms: every "
                 "thread's CPU per crop", COCO_IMAGES * PROPOSALS, cpu / crops)


def bench_segmenter(b: Bench, name: str) -> tuple[Segmenter, torch.nn.Module, int]:
    """The two-stage segmenter of a pairing with random weights, its CLIP cast as the
    stage casts it (the stage's precision, "auto"), and the net's short side."""
    device = b.device
    setting, short_side, arch = PAIRINGS[name]
    net, _ = proposal_net(setting, short_side, device)
    settings = segmenter_settings(parse_params({}))
    clip = inference(cast_for_inference(create_clip(arch), weights_dtype(
        device, settings.precision))).to(device)
    text_dim = SETTINGS[setting][1]
    segmenter = Segmenter(net, F.normalize(torch.randn(CLASSES, text_dim, device=device), dim=-1),
                          clip, F.normalize(torch.randn(CLASSES, clip.visual.output_dim,
                                                        device=device), dim=-1),
                          **{**dataclasses.asdict(settings),
                             "short_side": short_side, "batch_size": EVAL_CROP_BATCH})
    return segmenter, clip, short_side


def evaluate_row(b: Bench, name: str, images: int) -> list:
    """The stage's work on one batch of `images` images (the presets' eval.images_per_batch
    on a GPU): one proposal-net forward, every mask's crop through CLIP in shared batches
    of the presets' eval.batch_size, the three label maps of each image."""
    device = b.device
    segmenter, clip, _ = bench_segmenter(b, name)
    batch = [torch.randint(0, 256, (3, H, W), dtype=torch.uint8) for _ in range(images)]

    def segment():  # decoded bytes in and the segmenter's own autocast, as in the stage
        return segmenter.predict_batch(batch)

    flops = flops_of(segment) / images
    compiled = b.clip_tower(clip)  # after the FLOP count, which runs eagerly
    seconds = timed(segment, device, b.repeats) / images
    b.profile("evaluate", name, segment)
    host_s = host_cpu(lambda: (decode_image(), decode_image(LABELS)), b.repeats)
    return b.row("evaluate", f"{name}, {images} per batch{compiled}", "images", 1 / seconds, flops,
                 flops / seconds, f"fusion on {device} too", ADE_IMAGES, host_s)


def evaluate_loop_row(b: Bench, name: str, images: int, per_batch: int) -> list:
    """`confusion_by_variant`, the evaluate stage's loop, over `images` JPEG and label PNG
    files with the params' λ sweep (11 label maps more an image) and Figure 1(c)'s
    bottleneck variants (CLIP on each ground-truth segment, the oracle), reading ahead as
    the stage does: everything the one-batch row leaves out. One image first, untimed,
    for the FLOP count and the warm-up."""
    device = b.device
    segmenter, clip, short_side = bench_segmenter(b, name)
    p = parse_params({}).eval
    names = tuple(f"class {i}" for i in range(CLASSES))
    classes = ClassList("bench", names, (True,) * CLASSES, (True,) * CLASSES)
    with tempfile.TemporaryDirectory() as tmp:
        rows, split = mining_files(Path(tmp), images, 1)
        ds = EvalSet(classes, Path(split.image_dir), Path(split.label_dir), rows, 255,
                     [True] * CLASSES)

        def evaluate(part):
            ds.rows = part
            return confusion_by_variant(segmenter, ds, per_batch, short_side, 0,
                                        sweep=tuple(p.lambda_sweep), bottleneck=p.bottleneck,
                                        read_ahead_batches=depth_on(device,
                                                                    READ_AHEAD_BATCHES))

        flops = flops_of(lambda: evaluate(rows[:1]))
        compiled = b.clip_tower(clip)
        wall, cpu = wall_and_cpu(lambda: evaluate(rows), lambda: evaluate(rows[:1]), device)
    return b.row("evaluate", f"{name}{compiled}, stage loop, {images} images", "images",
                 images / wall, flops, flops * images / wall,
                 f"files, {len(p.lambda_sweep)} λ, bottleneck {p.bottleneck}; host ms: every "
                 "thread's CPU per image", ADE_IMAGES, cpu / images)


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
                 "CPU: JPEG + PNG + tar", COCO_IMAGES * 5, host_cpu(write, b.repeats) / crops)


def train_proposals_row(b: Bench, name: str, batch: int) -> list:
    from benchmarks.bench_proposal_net import CLASSES as TRAIN_CLASSES
    from benchmarks.bench_proposal_net import random_targets
    from pipeline.proposals.training_loop import train_proposal_net
    from pipeline.proposals.training_recipe import build_optimizer, loss_settings

    device = b.device
    setting, short_side, _ = PAIRINGS[name]
    overrides, text_dim, _ = SETTINGS[setting]
    crop = short_side  # the presets train at their inference side: 512 R101c, 640 Swin-B
    p = ProposalParams(**{**overrides, "crop_size": crop, "warmup_steps": 0})
    g = torch.Generator().manual_seed(0)
    net = ProposalNet(net_config(p, text_dim)).to(device)
    text = F.normalize(torch.randn(TRAIN_CLASSES, text_dim, generator=g), dim=-1).to(device)
    images = torch.rand(batch, 3, crop, crop, generator=g).to(device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in random_targets(batch, crop, g)]
    weights, mask_loss = loss_settings(p)
    optimizer = build_optimizer(net, p)

    def step():
        train_proposal_net(net, lambda idx, s: (images, targets), batch, text, weights,
                           optimizer, 1, batch, lambda s: p.lr, 0, mask_loss=mask_loss,
                           grad_clip_norm=p.grad_clip_norm, precision="auto")

    flops = flops_of(step, training=True)
    seconds = timed(step, device, b.repeats)
    return b.row("train_proposals", f"{name.split(' ')[0]} at {crop}, {batch} img", "images",
                 batch / seconds, flops / batch, flops / seconds, "one step: forward, "
                 "matching, losses, backward, AdamW; host: the image and label files",
                 PROPOSAL_STEPS * PROPOSAL_BATCH,
                 host_cpu(lambda: (decode_image(), decode_image(LABELS)), b.repeats))


def adaptation_row(b: Bench, arch: str, prompts_depth: int, batch: int) -> list:
    from pipeline.adapt.shard_loader import Batch
    from pipeline.adapt.train import (
        AdaptPlan,
        MaskedCropEncoder,
        adaptation_optimizer,
        train_adaptation,
    )
    from pipeline.clip.mask_prompts import MaskPrompts

    device = b.device
    model = create_clip(arch).to(device)
    size = crop_size(model)
    mpt = prompts_depth > 0
    encoder = MaskedCropEncoder(model, MaskPrompts.for_model(model, prompts_depth)
                                if mpt else None).to(device)
    plan = AdaptPlan(not mpt, mpt, 1, 0, clip_lr=5e-6, clip_weight_decay=0.2,
                     prompt_lr=2e-2)  # one step a call: steps set to the call's step + 1
    optimizer = adaptation_optimizer(encoder, plan)
    nouns = [f"noun{k}" for k in range(batch)]
    text = F.normalize(torch.randn(batch, model.visual.output_dim), dim=-1).to(device)
    images = torch.randn(batch, 3, size, size)
    masks = torch.rand(batch, size, size) > 0.3
    done = [0]

    def step():
        train_adaptation(encoder, [Batch(done[0], images, masks, nouns)], text,
                         {n: i for i, n in enumerate(nouns)}, optimizer,
                         dataclasses.replace(plan, steps=done[0] + 1), done[0],
                         precision="auto")
        done[0] += 1

    flops = flops_of(step, training=True)
    seconds = timed(step, device, b.repeats)
    sample_jpeg = encode_jpeg((images[0].clamp(-2, 2) * 60 + 128).byte().permute(1, 2, 0)
                              .numpy(), 95)
    sample_png = encode_png(masks[0].numpy().astype(np.uint8) * 255)
    host_s = host_cpu(lambda: (decode_image(sample_jpeg), decode_image(sample_png)), b.repeats)
    stage = "prompt_tune" if mpt else "finetune"
    return b.row(stage, f"{arch}, {batch} crops" + (f", depth {prompts_depth}" if mpt else ""),
                 "crops", batch / seconds, flops / batch, flops / seconds,
                 ("MPT: CLIP frozen, prompts trained" if mpt else "FT: image tower trained")
                 + "; host: a shard sample's JPEG and PNG", COCO_PAIRS * ADAPT_EPOCHS, host_s)


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
    ap.add_argument("--profile", type=Path, default=None,
                    help="folder for one profiled call of each inference row's work")
    ap.add_argument("--compile", action="store_true",
                    help="mine_pairs and evaluate rows: CLIP's image tower under torch.compile "
                         "(compiled in the untimed first call)")
    ap.add_argument("--only", nargs="*", default=None,
                    help="stages to run (extract_proposals mine_pairs evaluate write_shards "
                    "train_proposals finetune prompt_tune)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    gpu = args.device == "cuda"
    crops, batch = args.crops or (100 if gpu else 8), args.batch or (8 if gpu else 1)
    dtype = torch.bfloat16 if gpu else torch.float32
    b = Bench(args.device, args.repeats,
              matmul_rate(dtype, args.device, 8192 if gpu else 1024) * 1e9, args.peak_tflops,
              args.gpus if gpu else 1, args.profile, args.compile)
    only = set(args.only or ("extract_proposals", "mine_pairs", "evaluate", "write_shards",
                             "train_proposals", "finetune", "prompt_tune"))
    t0 = time.time()
    rows = []
    settings = args.settings or (list(PAIRINGS) if gpu else ["R101c + ViT-B/16"])
    for name in settings:
        if "extract_proposals" in only:
            rows.append(extract_row(b, name, batch))
        if "mine_pairs" in only:
            rows.append(mine_row(b, PAIRINGS[name][2], crops))
            rows.append(mine_loop_row(b, PAIRINGS[name][2], 40 if gpu else 2, crops))
        if "evaluate" in only:
            rows.append(evaluate_row(b, name, EVAL_IMAGES if gpu else 1))
            rows.append(evaluate_loop_row(b, name, 40 if gpu else 2, EVAL_IMAGES if gpu else 1))
        arch = PAIRINGS[name][2]
        if "train_proposals" in only:
            rows.append(train_proposals_row(b, name, GPU_BATCH["proposals"] if gpu else 1))
        if "finetune" in only:
            rows.append(adaptation_row(b, arch, 0, GPU_BATCH[arch] if gpu else 4))
        if "prompt_tune" in only:
            rows.append(adaptation_row(b, arch, 3, GPU_BATCH["mpt"] if gpu else 4))
    if "write_shards" in only:
        rows.append(shards_row(b, crops))
    where = torch.cuda.get_device_name() if gpu else f"CPU, {args.threads} threads"
    table(f"Heavy stages at real shapes on {where} ({'bf16 autocast' if gpu else 'fp32'}); "
          f"matmul baseline {b.baseline / 1e12:.3g} TFLOP/s; full scale on {b.devices} "
          "such device(s)",
          ["stage", "setting", "rate", "GFLOP/item", "TFLOP/s", "vs matmul", "MFU (peak)",
           "host ms", "goal (GPU)", "vs goal", "full min", "note"], rows)
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
