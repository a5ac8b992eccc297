"""Learning-rate schedules shared by every training loop in the pipeline (base CLIP
pretraining, the proposal net, FT and MPT), so that each schedule is written once.

Each function maps a step to the learning rate of that step; callers set it on their
optimizer's param groups before the step. A schedule of base_lr 1.0 is the multiplier
FT/MPT apply to each param group's own base lr.
"""

from __future__ import annotations

import math


def cosine_lr(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warm-up to base_lr over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, progress)))


def poly_lr(step: int, total: int, warmup: int, base_lr: float, power: float = 0.9,
            warmup_factor: float = 1e-6) -> float:
    """MaskFormer's WarmupPolyLR (detectron2): base_lr * (1 - step/total)^power, times a
    factor rising linearly from `warmup_factor` to 1 over the first `warmup` steps."""
    factor = 1.0
    if step < warmup:
        alpha = step / warmup
        factor = warmup_factor * (1 - alpha) + alpha
    return base_lr * factor * (1 - min(step, total) / total) ** power
