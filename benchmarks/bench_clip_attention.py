"""Benchmark a candidate for the base CLIP's training step: batch-first self-attention in
place of open_clip's nn.MultiheadAttention, on the same weights; prints a table with the
baseline measured in the same run.

Why: profiled on 2 CPU cores, about a quarter of the 12-block tiny ViT's training step is
layout work inside nn.MultiheadAttention: with batch_first=True it transposes (B, L, E) to
(L, B, E) and back, and splits q, k, v with a copy whose backward fills and adds a
(3, L, B, E) buffer. The candidate keeps (B, L, E): one in-projection, a view into heads,
scaled_dot_product_attention, the out-projection. Its training-mode forward gives the same
bits; its weight gradients sum the same products in another row order, so they differ in
the last bit, and adopting it would change every trained model's bytes (the table runs of
reports/paper_tables.py would run again). At inference open_clip's blocks take PyTorch's
native fast path, which is as fast as the candidate: only training gains.

    python -m benchmarks.bench_clip_attention            # CPU, 2 threads, the default's batch
    python -m benchmarks.bench_clip_attention --batch 32 --steps 10
Weights are random (no pretrained weights here); speed does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import types

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from benchmarks.bench_mask_clip import table, timed
from pipeline.clip.model import create_clip


def batch_first_attention(block, q_x: torch.Tensor, k_x=None, v_x=None, attn_mask=None):
    """Self-attention of an open_clip ResidualAttentionBlock: (B, L, E) -> (B, L, E)."""
    mha = block.attn
    b, length, width = q_x.shape
    heads = mha.num_heads
    qkv = F.linear(q_x, mha.in_proj_weight, mha.in_proj_bias)
    q, k, v = qkv.view(b, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
    if attn_mask is not None:
        attn_mask = attn_mask.to(q_x.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, L, D)
    return mha.out_proj(out.transpose(1, 2).reshape(b, length, width))


def clip_model(arch: str, candidate: bool, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_clip(arch).train()
    if candidate:
        for blocks in (model.visual.transformer.resblocks, model.transformer.resblocks):
            for block in blocks:
                block.attention = types.MethodType(batch_first_attention, block)
    return model


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
