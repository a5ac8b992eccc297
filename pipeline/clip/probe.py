"""Probe of a CLIP on regions (OVSeg Figure 1(c) in miniature): zero-shot top-1 on whole
single-object images vs masked crops of the same objects, and an outline-only control
classifier that sees the crop mask alone."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.clip.masked_crops import masked_crops
from pipeline.clip.masked_crops import normalize as normalize  # callers use probe.normalize
from pipeline.data.segments import Segment


def single_thing_segment(segments: list[Segment], isthing, min_pixels: int) -> Segment | None:
    """The thing segment of an image that shows exactly one thing class, else None."""
    things = [s for s in segments if isthing[s.label]]
    if len(things) != 1 or things[0].mask.sum() < min_pixels:
        return None
    return things[0]


def probe_views(image: np.ndarray, mask: np.ndarray, size: int, mean: torch.Tensor):
    """Whole image and masked crops (mean- and zero-filled) of one object, each (3, S, S)
    in [0, 1], plus the crop mask (S, S) bool."""
    img = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    whole = F.interpolate(img[None], size=(size, size), mode="bicubic",
                          align_corners=False)[0].clamp(0, 1)
    m = torch.from_numpy(mask)[None]
    crop_mean, crop_mask, _ = masked_crops(img, m, size, fill="mean", fill_color=mean)
    crop_zero, _, _ = masked_crops(img, m, size, fill="zero")
    return whole, crop_mean[0], crop_zero[0], crop_mask[0]


@torch.no_grad()
def zero_shot_predictions(model, images: torch.Tensor, classifier: torch.Tensor,
                          batch_size: int = 256) -> torch.Tensor:
    """images (N, 3, S, S) normalised; classifier (K, D) -> predicted class (N,) on the
    CPU. Each batch goes to the model's device."""
    device = next(model.parameters()).device
    preds = []
    for i in range(0, len(images), batch_size):
        f = model.encode_image(images[i:i + batch_size].to(device), normalize=True).float()
        preds.append((f @ classifier.to(device).T).argmax(dim=1).cpu())
    return torch.cat(preds)


def accuracy_by_group(pred: torch.Tensor, target: torch.Tensor, seen: torch.Tensor) -> dict:
    """Top-1 over all samples and split by whether the target class was seen in training."""
    correct = (pred == target).float()
    s = seen[target]
    out = {"all": float(correct.mean()), "n": int(len(target))}
    for name, sel in (("seen", s), ("unseen", ~s)):
        out[name] = float(correct[sel].mean()) if sel.any() else None
        out[f"n_{name}"] = int(sel.sum())
    return out


def outline_features(crop_masks: torch.Tensor, grid: int = 16) -> torch.Tensor:
    """(N, S, S) bool crop masks -> (N, grid*grid) foreground fractions."""
    return F.adaptive_avg_pool2d(crop_masks[:, None].float(), grid).flatten(1)


def outline_control(train_x, train_y, test_x, test_y, num_classes: int, steps: int,
                    seed: int = 0) -> float:
    """Accuracy of a 2-layer MLP that classifies masks from their outline alone. Near chance
    when outlines carry no class information, as a well-made world requires."""
    g = torch.Generator().manual_seed(seed)
    hidden = 128
    w1 = (torch.randn(train_x.shape[1], hidden, generator=g) * train_x.shape[1] ** -0.5)
    w2 = (torch.randn(hidden, num_classes, generator=g) * hidden ** -0.5)
    params = [w1.requires_grad_(), torch.zeros(hidden, requires_grad=True),
              w2.requires_grad_(), torch.zeros(num_classes, requires_grad=True)]
    opt = torch.optim.Adam(params, lr=3e-3, weight_decay=1e-4)

    def forward(x):
        return torch.relu(x @ params[0] + params[1]) @ params[2] + params[3]

    for _ in range(steps):
        loss = F.cross_entropy(forward(train_x), train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((forward(test_x).argmax(1) == test_y).float().mean())
