"""Self-attention for training open_clip's transformer blocks, kept batch-first.

open_clip's `ResidualAttentionBlock` runs `nn.MultiheadAttention(batch_first=True)`, which
outside its inference fast path transposes (B, L, E) to (L, B, E) and back and splits q, k
and v with a copy whose backward fills and adds a (3, L, B, E) buffer: profiled on 2 CPU
cores, up to a quarter of the tiny ViT's training step (benchmarks/bench_clip_attention.py:
the step takes 0.77 to 0.90 of the time without it, by CPU). `batch_first_attention`
computes the same attention in (B, L, E): one in-projection, a view into heads,
scaled_dot_product_attention, the out-projection, with the block's own weights. Its forward
gives the same bits as open_clip's training path; its weight gradients sum the same
products in another order.

It is used only while autograd records (base CLIP pretraining, FT, MPT); with gradients
off the block calls `nn.MultiheadAttention` as open_clip does, whose native fast path is
as fast, so inference (mining, evaluation) keeps open_clip's numbers.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import nn


def batch_first_attention(mha: nn.MultiheadAttention, x: torch.Tensor,
                          attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Self-attention of `mha`'s weights over x (B, L, E) -> (B, L, E); attn_mask (L, L)
    additive (open_clip's causal text mask) or None."""
    b, length, width = x.shape
    heads = mha.num_heads
    qkv = F.linear(x, mha.in_proj_weight, mha.in_proj_bias)  # (B, L, 3E)
    q, k, v = qkv.view(b, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, L, E/H)
    return mha.out_proj(out.transpose(1, 2).reshape(b, length, width))


def _attention(block: ResidualAttentionBlock, q_x: torch.Tensor, k_x=None, v_x=None,
               attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """`ResidualAttentionBlock.attention`, batch-first while autograd records."""
    if not torch.is_grad_enabled() or k_x is not None or v_x is not None:
        return ResidualAttentionBlock.attention(block, q_x, k_x, v_x, attn_mask)
    if attn_mask is not None:
        attn_mask = attn_mask.to(q_x.dtype)
    return batch_first_attention(block.attn, q_x, attn_mask)


def _plain_self_attention(mha: nn.MultiheadAttention) -> bool:
    """Packed q, k, v projection, no extra key/value bias, no dropout: what
    `batch_first_attention` computes."""
    return mha._qkv_same_embed_dim and mha.in_proj_weight is not None and \
        mha.bias_k is None and mha.dropout == 0


def use_batch_first_attention(model: nn.Module) -> nn.Module:
    """Make every self-attention block of an open_clip model that can (batch-first
    transformer, plain `nn.MultiheadAttention` with packed in-projection) train with
    `batch_first_attention`; returns the model. Weights and state dict are untouched."""
    for module in model.modules():
        transformer = getattr(module, "resblocks", None)
        if transformer is None or not getattr(module, "batch_first", False):
            continue
        for block in transformer:
            if type(block) is ResidualAttentionBlock and _plain_self_attention(block.attn):
                block.attention = types.MethodType(_attention, block)
    return model
