"""Which arithmetic a network runs in: bf16 autocast where it pays (CUDA), float32 where
numerics need it (logits at temperature 0.01, losses, scores written to disk; DESIGN §9).

`precision` params read: "auto" is bf16 autocast on CUDA and float32 elsewhere (on a CPU
bf16 autocast is slower than float32, DESIGN §2); "bf16" is bf16 autocast on any device, so
a CPU run (and the CPU tests) can take the GPU's numerical path; "fp32" (or "off") is none.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "bf16", "fp32", "off")


def uses_bf16(device: torch.device, precision: str) -> bool:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and torch.device(device).type == "cuda")


def autocast(device: torch.device, precision: str):
    """bf16 autocast on `device` when `uses_bf16`, else a no-op context."""
    if not uses_bf16(device, precision):
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def full_precision(device: torch.device):
    """Autocast switched off on `device` inside, whatever the caller turned on: for the
    fp32 islands of a bf16 forward. A no-op on devices autocast does not know (meta)."""
    kind = torch.device(device).type
    if not torch.amp.is_autocast_available(kind):
        return contextlib.nullcontext()
    return torch.autocast(kind, enabled=False)


def weights_dtype(device: torch.device, precision: str, dtype: str = "float32") -> str:
    """The dtype name ("float32" | "bfloat16") an inference network's weights take:
    bfloat16 wherever bf16 autocast runs it (`uses_bf16`), since autocast would cast every
    weight to bf16 at each forward anyway (issue 31: full bf16 batches, no casts); else
    `dtype` (eval.dtype: bf16 weights without autocast pay on CPUs with bf16 units). Ops
    autocast keeps in float32 (layer norms, softmax) still compute in float32."""
    return "bfloat16" if uses_bf16(device, precision) else dtype
