"""The open-vocabulary proposal net (OVSeg §3.1, after MaskFormer, Cheng et al. 2021).

backbone (res2..res5, strides 4-32) -> FPN pixel decoder -> mask features (stride 4)
res5 projected + sine positions -> transformer decoder over N learned queries
each decoder layer's queries -> mask embedding (dotted with the mask features: mask logits)
                             -> class embedding in CLIP's text space
class logits = [cos(q, t_1..t_K), cos(q, no_object)] / temperature, t_k the CLIP text
embeddings of the class names, no_object a learnable embedding.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from pipeline.distributed.precision import full_precision
from pipeline.proposals.backbones import build_backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_NAME = "proposal_net.safetensors"
CONFIG_NAME = "config.json"
TEXT_KEY = "train_text_embeddings"


@dataclass(frozen=True)
class ProposalNetConfig:
    backbone: str = "small_cnn"  # "small_cnn" or "timm:<name>", e.g. "timm:resnet50"
    width: int = 32  # small_cnn's first-stage channels (doubling per stage)
    hidden: int = 64  # pixel decoder, transformer and mask-embedding width
    queries: int = 16
    decoder_layers: int = 2
    heads: int = 4
    text_dim: int = 64  # CLIP's embedding size
    temperature: float = 0.01
    dim_feedforward: int = 256  # transformer decoder feed-forward width (MaskFormer: 2048)
    dropout: float = 0.0  # transformer decoder dropout (MaskFormer: 0.1)
    freeze_bn: bool = False  # backbone BatchNorm frozen (MaskFormer's R101: true)
    input_size: int = 64  # the training crop: the size fixed-size backbones (Swin) are built at


def conv_gn(cin: int, cout: int, kernel: int, relu: bool) -> nn.Sequential:
    """Conv + GroupNorm (+ ReLU), MaskFormer's pixel-decoder block (GN with 32 groups; fewer
    when the width is not a multiple of 32, so small nets work)."""
    layers = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
              nn.GroupNorm(math.gcd(32, cout), cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class PixelDecoder(nn.Module):
    """MaskFormer's FPN pixel decoder over res2..res5: res5 through a 3x3 conv, then for each
    finer level a lateral 1x1 conv added to the nearest-upsampled coarser output and a 3x3
    output conv. Returns the stride-4 mask features (B, hidden, H/4, W/4) and the
    transformer memory (B, hidden, H/32, W/32): the raw res5 feature through a 1x1 conv
    (MaskFormer's TRANSFORMER_IN_FEATURE "res5" with its input projection)."""

    def __init__(self, channels: list[int], hidden: int):
        super().__init__()
        self.top = conv_gn(channels[-1], hidden, 3, relu=True)
        self.lateral = nn.ModuleList([conv_gn(c, hidden, 1, relu=False) for c in channels[:-1]])
        self.output = nn.ModuleList([conv_gn(hidden, hidden, 3, relu=True)
                                     for _ in channels[:-1]])
        self.mask_features = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.memory_proj = nn.Conv2d(channels[-1], hidden, 1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.top(feats[-1])  # (B, hidden, H/32, W/32)
        for i in range(len(feats) - 2, -1, -1):
            lat = self.lateral[i](feats[i])  # (B, hidden, H/s_i, W/s_i)
            x = self.output[i](lat + F.interpolate(x, size=lat.shape[-2:], mode="nearest"))
        return self.mask_features(x), self.memory_proj(feats[-1])


def sine_positions(h: int, w: int, dim: int, device) -> torch.Tensor:
    """(h*w, dim) 2-D sine/cosine position encoding (DETR), half the channels per axis."""
    quarter = dim // 4
    freq = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32)
                            / quarter))
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 * math.pi
    py = torch.cat([(ys[:, None] * freq).sin(), (ys[:, None] * freq).cos()], dim=1)  # (h, d/2)
    px = torch.cat([(xs[:, None] * freq).sin(), (xs[:, None] * freq).cos()], dim=1)  # (w, d/2)
    pos = torch.cat([py[:, None].expand(h, w, -1), px[None].expand(h, w, -1)], dim=2)
    return F.pad(pos.reshape(h * w, -1), (0, dim - pos.shape[-1]))


class ProposalNet(nn.Module):
    def __init__(self, cfg: ProposalNetConfig, pretrained_backbone: bool = False):
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg.backbone, cfg.width, pretrained_backbone,
                                       cfg.input_size, cfg.freeze_bn)
        self.pixel_decoder = PixelDecoder(self.backbone.channels, cfg.hidden)
        self.query_embed = nn.Parameter(torch.randn(cfg.queries, cfg.hidden) * 0.02)
        self.decoder = nn.ModuleList([
            nn.TransformerDecoderLayer(cfg.hidden, cfg.heads, cfg.dim_feedforward, cfg.dropout,
                                       batch_first=True)
            for _ in range(cfg.decoder_layers)])
        self.decoder_norm = nn.LayerNorm(cfg.hidden)
        self.mask_embed = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
                                        nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(),
                                        nn.Linear(cfg.hidden, cfg.hidden))
        self.class_embed = nn.Linear(cfg.hidden, cfg.text_dim)
        self.no_object = nn.Parameter(torch.randn(cfg.text_dim) * 0.02)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """images (B, 3, H, W) in [0, 1], H and W multiples of 32 (the backbone's res5
        stride) -> one prediction per decoder layer (the last is the output, the others
        feed auxiliary losses): "query_text" (B, Q, text_dim) and "mask_logits"
        (B, Q, H/4, W/4)."""
        x = (images - self.pixel_mean) / self.pixel_std
        mask_features, memory = self.pixel_decoder(self.backbone(x))
        b, c, h, w = memory.shape
        memory = memory.flatten(2).transpose(1, 2) + sine_positions(h, w, c, memory.device)
        queries = self.query_embed[None].expand(b, -1, -1)
        outputs = []
        for layer in self.decoder:
            queries = layer(queries, memory)
            q = self.decoder_norm(queries)
            outputs.append({
                "query_text": self.class_embed(q),
                "mask_logits": torch.einsum("bqc,bchw->bqhw", self.mask_embed(q),
                                            mask_features),
            })
        return outputs


def class_logits(query_text: torch.Tensor, text: torch.Tensor, no_object: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """(B, Q, E) query embeddings, (K, E) class text embeddings, (E,) no-object embedding
    -> (B, Q, K + 1) float32 logits: cosine similarities over the temperature. float32
    under any autocast: at temperature 0.01 a bf16 cosine (8 mantissa bits) moves a logit
    by up to 0.4, so training, extraction and the segmenter would each see other scores."""
    with full_precision(query_text.device):
        classes = torch.cat([F.normalize(text.float(), dim=-1),
                             F.normalize(no_object.float(), dim=-1)[None]])  # (K + 1, E)
        return F.normalize(query_text.float(), dim=-1) @ classes.T / temperature


@torch.no_grad()
def predict_proposals(model: ProposalNet, images: torch.Tensor, text: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """images (B, 3, S, S) in [0, 1] -> mask logits (B, Q, S/4, S/4) and scores (B, Q) =
    1 - p(no object) over the training classes `text` (K, E)."""
    out = model(images)[-1]
    probs = class_logits(out["query_text"], text, model.no_object,
                         model.cfg.temperature).softmax(-1)
    return out["mask_logits"], 1 - probs[..., -1]


def image_proposals(mask_logits: torch.Tensor, scores: torch.Tensor, size: tuple[int, int],
                    min_score: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's (Q, h, w) mask logits -> masks (N, H, W) bool at the image's size
    (bilinear upsampling unless already there, logit > 0) and their scores (N,): non-empty
    masks scoring at least `min_score`, in query order."""
    if tuple(mask_logits.shape[-2:]) != tuple(size):
        mask_logits = F.interpolate(mask_logits[None].float(), size=size, mode="bilinear",
                                    align_corners=False)[0]
    masks = mask_logits > 0
    keep = masks.flatten(1).any(1) & (scores >= min_score)
    return masks[keep], scores[keep]


def save_proposal_net(out: str | Path, model: ProposalNet, text: torch.Tensor,
                      names: list[str]) -> None:
    """A folder with the weights (and the training classes' text embeddings, which define
    its classifier and so its scores) as safetensors, and the config as JSON."""
    out = Path(out)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    state[TEXT_KEY] = text.detach().float().contiguous().cpu()
    save_file(state, str(out / WEIGHTS_NAME))
    (out / CONFIG_NAME).write_text(json.dumps(
        {"config": dataclasses.asdict(model.cfg), "train_classes": list(names)}, indent=1,
        sort_keys=True) + "\n")


def load_proposal_net(path: str | Path) -> tuple[ProposalNet, torch.Tensor, list[str]]:
    """(model in eval mode, (K, E) training text embeddings, training class names)."""
    path = Path(path)
    if not (path / WEIGHTS_NAME).is_file() or not (path / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"no proposal net in {path}: expected {WEIGHTS_NAME} and "
                                f"{CONFIG_NAME} (run `dvc repro train_proposals`)")
    meta = json.loads((path / CONFIG_NAME).read_text())
    state = load_file(str(path / WEIGHTS_NAME))
    text = state.pop(TEXT_KEY)
    model = ProposalNet(ProposalNetConfig(**meta["config"]))
    model.load_state_dict(state)
    return model.eval(), text, meta["train_classes"]
