"""What proposal-net training is built from: the net of the `proposals` params, the classes
labelled in training (the seen classes: OVSeg §3.1 trains the proposal generator on them
alone), and the loader of a batch of images with their per-segment targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.data.class_lists import load_class_list
from pipeline.data.image_io import read_labels, read_rgb
from pipeline.data.layouts import Split
from pipeline.params import ProposalParams
from pipeline.proposals.loss import segment_targets
from pipeline.proposals.model import ProposalNet, ProposalNetConfig


def net_config(p: ProposalParams, text_dim: int) -> ProposalNetConfig:
    return ProposalNetConfig(backbone=p.backbone, width=p.width, hidden=p.hidden,
                             queries=p.queries, decoder_layers=p.decoder_layers, heads=p.heads,
                             text_dim=text_dim, temperature=p.temperature,
                             dim_feedforward=p.dim_feedforward, dropout=p.dropout,
                             freeze_bn=p.freeze_bn, input_size=p.crop_size)


def build_net(p: ProposalParams, text_dim: int) -> ProposalNet:
    """A new net; its backbone downloaded when `proposals.backbone_weights` is "download"."""
    return ProposalNet(net_config(p, text_dim),
                       pretrained_backbone=p.backbone_weights == "download")


def training_classes(split: Split) -> tuple[list[str], torch.Tensor]:
    """Names of the classes labelled in training, and label value -> class index (-1: not
    trained on)."""
    classes = load_class_list(split.classes)
    seen = [i for i, s in enumerate(classes.seen) if s]
    lut = torch.full((256,), -1, dtype=torch.long)
    lut[seen] = torch.arange(len(seen))
    return [classes.names[i] for i in seen], lut


def batch_loader(rows, split: Split, lut: torch.Tensor, image_size: int,
                 device: torch.device):
    """load_batch(row numbers) -> (images (B, 3, S, S) in [0, 1], per-image targets at a
    quarter of S, the net's mask resolution), on `device`."""
    size = (image_size, image_size)
    pred_size = (image_size // 4, image_size // 4)
    image_dir, label_dir = Path(split.image_dir), Path(split.label_dir)

    def load_batch(idx: np.ndarray):
        images = np.stack([read_rgb(image_dir / rows[i].file_name, size) for i in idx])
        images = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).to(device)
        targets = []
        for i in idx:
            labels = torch.from_numpy(read_labels(label_dir / rows[i].label_file, size).copy())
            t = segment_targets(labels, lut, pred_size, split.ignore_label)
            targets.append({k: v.to(device) for k, v in t.items()})
        return images, targets

    return load_batch
