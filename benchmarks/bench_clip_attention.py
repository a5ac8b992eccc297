"""Benchmark the base CLIP's training step with open_clip's nn.MultiheadAttention against
the batch-first self-attention the pipeline trains with (pipeline/clip/training_attention.py),
on the same weights; prints a table with the baseline measured in the same run.

Why: profiled on 2 CPU cores, about a quarter of the 12-block tiny ViT's training step is
layout work inside nn.MultiheadAttention (transposes, and the q, k, v split whose backward
fills and adds a (3, L, B, E) buffer). The forward gives the same bits; the weight
gradients differ in the last bit (the same products summed in another order).

    python -m benchmarks.bench_clip_attention            # CPU, 2 threads, the default's batch
    python -m benchmarks.bench_clip_attention --batch 32 --steps 10
Weights are random (no pretrained weights here); speed does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics

import open_clip
import torch
from open_clip.loss import ClipLoss

from benchmarks.bench_mask_clip import table, timed
from pipeline.clip.model import register_model_configs
from pipeline.clip.training_attention import use_batch_first_attention


def clip_model(arch: str, candidate: bool, seed: int = 0) -> torch.nn.Module:
    register_model_configs()
    torch.manual_seed(seed)
    model = open_clip.create_model(arch).train()
    return use_batch_first_attention(model) if candidate else model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="ovseg-tiny-vit")
    ap.add_argument("--batch", type=int, default=128)  # clip.batch_size
    ap.add_argument("--steps", type=int, default=8, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = {name: clip_model(args.arch, name == "batch-first") for name in
              ("open_clip (nn.MultiheadAttention)", "batch-first")}
    size = models["batch-first"].visual.image_size
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, *size, generator=g)
    tokens = torch.randint(1, 49000, (args.batch, 32), generator=g)
    loss_fn = ClipLoss()

    def step(model):
        image_f = model.encode_image(images, normalize=True)
        text_f = model.encode_text(tokens, normalize=True)
        model.zero_grad(set_to_none=True)
        loss_fn(image_f, text_f, model.logit_scale.exp()).backward()
        return image_f.detach()

    base, cand = models.values()
    same_forward = torch.equal(step(base), step(cand))
    grad_diff = max(float((p.grad - q.grad).abs().max() / p.grad.abs().max().clamp(min=1e-30))
                    for p, q in zip(base.parameters(), cand.parameters()) if p.grad is not None)
    seconds = {name: [] for name in models}
    for _ in range(args.rounds):  # alternate, so a slower minute hits both
        for name, model in models.items():
            seconds[name].append(timed(lambda model=model: step(model), "cpu", args.steps))
    baseline = statistics.median(seconds[next(iter(models))])
    table(f"CLIP training step ({args.arch}, batch {args.batch}, {args.threads} threads; "
          f"median of {args.rounds} rounds of {args.steps} steps)",
          ["attention", "s/step", "ratio to open_clip"],
          [[name, statistics.median(times), statistics.median(times) / baseline]
           for name, times in seconds.items()])
    print(f"forward bit-identical: {same_forward}; largest gradient difference, relative to "
          f"that tensor's largest gradient: {grad_diff:.1e}")


if __name__ == "__main__":
    main()
