"""Backbones of the proposal net (OVSeg §4.1: ResNet-101c or Swin-B, after MaskFormer).

Every backbone maps images (B, 3, H, W) to MaskFormer's four levels res2..res5, NCHW at
strides 4, 8, 16 and 32, and names their widths in `.channels` and strides in `.strides`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

STRIDES = [4, 8, 16, 32]  # res2..res5: the FPN's levels and res5 the transformer's memory


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A from-scratch CNN with res2..res5 (no pretrained weights exist offline; enough for
    the synthetic world's textures). Channels width, 2, 4 and 8 x width."""

    def __init__(self, width: int):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, width, 2), conv_bn_relu(width, width, 2))
        self.stages = nn.ModuleList([conv_bn_relu(width, width)] + [
            nn.Sequential(conv_bn_relu(width * 2 ** (i - 1), width * 2 ** i, 2),
                          conv_bn_relu(width * 2 ** i, width * 2 ** i))
            for i in range(1, 4)])
        self.channels = [width * 2 ** i for i in range(4)]
        self.strides = list(STRIDES)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)  # (B, width, H/4, W/4)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats  # (B, C_i, H/s, W/s) for s = 4, 8, 16, 32


# Constructor arguments tried in turn (the first the model takes wins): size a fixed-size
# model (Swin, ViT-like) for the training crop and let it take other sizes at inference,
# where images keep their aspect ratio. timm's Swin asserts img_size unless built with
# dynamic_img_size (it then pads to whole windows and builds its shift masks per forward);
# convnets take no img_size at all. A model taking img_size alone stays fixed-size: its own
# check rejects other input sizes.
def _size_options(input_size: int) -> list[dict]:
    return [dict(img_size=input_size, dynamic_img_size=True),
            dict(img_size=input_size, strict_img_size=False),
            dict(img_size=input_size), {}]


def _create_features(name: str, input_size: int, **kwargs) -> tuple[nn.Module, dict]:
    """timm.create_model(name, features_only=True, ...) with the first size options the
    model's constructor takes; (model, those options)."""
    import timm

    for size in _size_options(input_size):
        try:
            return timm.create_model(name, features_only=True, **size, **kwargs), size
        except TypeError as e:
            if "unexpected keyword argument" not in str(e):
                raise
    raise AssertionError("unreachable: the last option passes no size arguments")


class TimmBackbone(nn.Module):
    """A timm model's `features_only` levels at reductions 4, 8, 16 and 32, as NCHW."""

    def __init__(self, name: str, pretrained: bool = False, input_size: int = 224):
        super().__init__()
        import timm

        probe, size = _create_features(name, input_size, pretrained=False)
        reductions = probe.feature_info.reduction()
        missing = [s for s in STRIDES if s not in reductions]
        if missing:
            raise ValueError(f"timm backbone {name!r} has features at reductions {reductions}; "
                             f"the proposal net needs 4, 8, 16 and 32 (lacks {missing})")
        # The last index of each reduction: the deepest features at that stride.
        wanted = [max(i for i, r in enumerate(reductions) if r == s) for s in STRIDES]
        self.name, self.size_options, self.out_indices = name, size, wanted
        self.body = timm.create_model(name, pretrained=pretrained, features_only=True,
                                      out_indices=wanted, **size)
        self.channels = self.body.feature_info.channels()
        self.strides = list(STRIDES)
        # Swin-like models emit (B, H, W, C); timm says so in output_fmt. Without it, each
        # output's layout is told by where its channel count sits (see forward).
        fmt = getattr(self.body, "output_fmt", None)
        self.channels_last = None if fmt is None else fmt == "NHWC"  # timm Format is a str

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        out = []
        for f, c in zip(feats, self.channels):
            last = self.channels_last
            if last is None:
                last = f.shape[1] != c and f.shape[-1] == c
            out.append(f.permute(0, 3, 1, 2).contiguous() if last else f)
        return out  # (B, C_i, H/s, W/s) for s = 4, 8, 16, 32


def freeze_batch_norm(backbone: nn.Module) -> nn.Module:
    """Every BatchNorm replaced by a frozen one (fixed affine and running statistics, no
    gradient, eval behaviour in training too; detectron2's FrozenBatchNorm2d): MaskFormer
    trains R101 at a few images per GPU, where live batch statistics are noise."""
    from timm.layers import freeze_batch_norm_2d

    return freeze_batch_norm_2d(backbone)


def build_backbone(spec: str, width: int, pretrained: bool = False, input_size: int = 224,
                   freeze_bn: bool = False) -> nn.Module:
    if spec == "small_cnn":
        backbone = SmallCNN(width)
    elif spec.startswith("timm:"):
        backbone = TimmBackbone(spec[5:], pretrained, input_size)
    else:
        raise ValueError(f"proposals.backbone must be 'small_cnn' or 'timm:<model name>', "
                         f"got {spec!r}")
    return freeze_batch_norm(backbone) if freeze_bn else backbone


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):  # training checkpoints nest the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def _listed(keys: list[str], n: int = 10) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def _check_keys(path: Path, model_name: str, want: dict, have: dict) -> None:
    """ValueError naming every missing, unexpected and misshapen key of `have` (tensors)
    against `want` (shapes)."""
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    misshapen = [f"{k} {tuple(have[k].shape)} (model {tuple(want[k])})" for k in want
                 if k in have and have[k].shape != want[k]]
    if missing or unexpected or misshapen:
        lines = [f"backbone weights {path} do not fit the backbone {model_name}:"]
        for what, keys in (("missing", missing), ("unexpected", unexpected),
                           ("shape mismatch", misshapen)):
            if keys:
                lines.append(f"  {len(keys)} {what}: {_listed(keys)}")
        raise ValueError("\n".join(lines))


COUNTER = "num_batches_tracked"  # BatchNorm's step counter: not a weight; frozen BN has none


def _weights(state: dict, skip=lambda k: False) -> dict[str, torch.Tensor]:
    """A state dict's entries but its counters and `skip`'s keys."""
    return {k: v for k, v in state.items() if not k.endswith(COUNTER) and not skip(k)}


def _shapes(module: nn.Module, skip=lambda k: False) -> dict:
    return {k: v.shape for k, v in _weights(module.state_dict(), skip).items()}


def _timm_features_from_checkpoint(backbone: TimmBackbone, path: Path,
                                   state: dict) -> dict[str, torch.Tensor]:
    """A full timm checkpoint (as timm or the model's authors publish it: ImageNet
    classifier included, e.g. Swin's swin_base_patch4_window12_384_22k.pth) checked key by
    key against the full model, then the state dict of the `features_only` model."""
    import sys
    import tempfile

    import timm
    from safetensors.torch import save_file

    full = timm.create_model(backbone.name, **backbone.size_options)
    # the model family's own converter (e.g. Swin's from the original repository's format)
    convert = getattr(sys.modules[type(full).__module__], "checkpoint_filter_fn", None)
    if convert is not None:
        state = convert(state, full)
    head = full.pretrained_cfg.get("classifier") or "fc"  # its size differs (1k, 22k)
    heads = (head,) if isinstance(head, str) else tuple(head)
    in_head = lambda k: any(k == h or k.startswith(h + ".") for h in heads)  # noqa: E731
    have = _weights({k: v for k, v in state.items() if torch.is_tensor(v)}, in_head)
    _check_keys(path, f"timm:{backbone.name}", _shapes(full, in_head), have)
    full.load_state_dict(have, strict=False)  # every non-head weight checked above
    # timm builds a features_only model by loading the full model and wrapping it, so it
    # maps the names (layers.0 -> layers_0 and the like); hand it the checked weights.
    with tempfile.TemporaryDirectory() as tmp:
        checked = Path(tmp) / "checked.safetensors"
        save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(checked))
        features = timm.create_model(
            backbone.name, features_only=True, out_indices=backbone.out_indices,
            pretrained=True, pretrained_cfg_overlay=dict(file=str(checked)),
            **backbone.size_options)
    return features.state_dict()


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Backbone weights from a .safetensors or torch file, optionally under "model" or
    "state_dict": either the state dict of the backbone itself (a SmallCNN, or the timm
    `features_only` model in a TimmBackbone's `.body`), or, for a timm backbone, a full
    timm checkpoint of that model (ImageNet weights as published). Strict: any missing,
    unexpected or misshapen key is a ValueError naming them (the classifier head and
    BatchNorm's num_batches_tracked counters excepted)."""
    path = Path(path)
    target = getattr(backbone, "body", backbone)
    state = _read_state(path)
    want = _shapes(target)
    have = _weights(state)
    if isinstance(backbone, TimmBackbone) and set(have) != set(want):
        have = _weights(_timm_features_from_checkpoint(backbone, path, state))
    name = f"timm:{backbone.name}" if isinstance(backbone, TimmBackbone) else \
        type(target).__name__
    _check_keys(path, name, want, have)
    target.load_state_dict(have, strict=False)  # every weight checked above
