"""The proposal net's backbones (res2..res5 at strides 4-32, NCHW) and MaskFormer's pixel
decoder reading res5, with random weights (no downloads offline)."""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.ops import FrozenBatchNorm2d  # what timm freezes BatchNorm into

from pipeline.params import ProposalParams
from pipeline.proposals.backbones import (
    SmallCNN,
    TimmBackbone,
    build_backbone,
    load_backbone_weights,
)
from pipeline.proposals.model import ProposalNet, ProposalNetConfig
from pipeline.proposals.training_recipe import net_config

SWIN_T = "timm:swin_tiny_patch4_window7_224"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared
    yield
    torch.set_num_threads(threads)


def tiny_net(backbone: str, input_size: int, **kw) -> ProposalNet:
    torch.manual_seed(0)
    return ProposalNet(ProposalNetConfig(backbone=backbone, hidden=32, queries=4,
                                         decoder_layers=1, heads=2, dim_feedforward=64,
                                         text_dim=8, input_size=input_size, **kw))


def run_with_res5_leaf(model: ProposalNet, images: torch.Tensor):
    """(last prediction, backbone features), res5 a leaf tensor so its gradient shows
    what reads it."""
    feats = {}

    def hook(module, inputs, out):
        feats["all"] = out[:-1] + [out[-1].detach().requires_grad_()]
        return feats["all"]

    handle = model.backbone.register_forward_hook(hook)
    try:
        out = model(images)[-1]
    finally:
        handle.remove()
    return out, feats["all"]


@pytest.mark.parametrize("backbone", ["timm:resnet50", SWIN_T])
def test_timm_backbones_give_four_levels_and_the_decoder_reads_res5(backbone):
    model = tiny_net(backbone, 512)
    model.backbone.requires_grad_(False)  # only res5's gradient is asked for
    out, feats = run_with_res5_leaf(model, torch.rand(1, 3, 512, 512))
    assert model.backbone.strides == [4, 8, 16, 32]
    assert [tuple(f.shape) for f in feats] == [
        (1, c, 512 // s, 512 // s) for c, s in zip(model.backbone.channels, [4, 8, 16, 32])]
    assert out["mask_logits"].shape == (1, 4, 128, 128)
    # query_text sees the image only through the transformer memory: res5 must be it.
    (grad,) = torch.autograd.grad(out["query_text"].sum(), feats[-1])
    assert grad.abs().sum() > 0


def test_swin_built_at_the_crop_takes_non_square_inputs():
    model = tiny_net(SWIN_T, 512).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 320, 416))[-1]
    assert out["mask_logits"].shape == (1, 4, 80, 104)


def test_small_cnn_has_a_stride_32_stage():
    feats = SmallCNN(8)(torch.rand(2, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4),
                                               (2, 64, 2, 2)]


@pytest.mark.parametrize("name, size, channels", [
    ("resnet101c", 512, [256, 512, 1024, 2048]),  # the paper's R101c (deep stem)
    ("swin_base_patch4_window12_384", 640, [128, 256, 512, 1024]),  # the paper's Swin-B
])
def test_the_papers_backbones_build(name, size, channels):
    backbone = TimmBackbone(name, input_size=size).eval()
    with torch.no_grad():
        feats = backbone(torch.rand(1, 3, 64, 96))
    assert backbone.channels == channels
    assert [tuple(f.shape) for f in feats] == [
        (1, c, 64 // s, 96 // s) for c, s in zip(channels, [4, 8, 16, 32])]


def test_a_backbone_without_stride_32_is_refused_by_name():
    with pytest.raises(ValueError, match="vit_tiny_patch16_224.*reductions.*lacks"):
        TimmBackbone("vit_tiny_patch16_224", input_size=64)


def test_frozen_batch_norm_has_no_parameters_and_keeps_its_statistics():
    for spec in ("small_cnn", "timm:resnet18"):
        backbone = build_backbone(spec, 8, input_size=64, freeze_bn=True).train()
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                       for m in backbone.modules())
        assert any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
        before = {k: v.clone() for k, v in backbone.state_dict().items()}
        backbone(torch.rand(2, 3, 64, 64) * 5)
        after = backbone.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert any(p.requires_grad for p in backbone.parameters())  # the convs still learn


def test_backbone_weights_load_strictly(tmp_path):
    source = build_backbone("timm:resnet18", 8)
    state = {k: v.contiguous() for k, v in source.body.state_dict().items()}
    path = tmp_path / "r18.safetensors"
    save_file(state, str(path))
    target = build_backbone("timm:resnet18", 8, freeze_bn=True)  # no num_batches_tracked
    load_backbone_weights(target, path)
    loaded = target.body.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if k in loaded)

    renamed = dict(state)
    renamed["conv1.renamed"] = renamed.pop("conv1.weight")
    torch.save({"model": renamed}, tmp_path / "renamed.pt")
    with pytest.raises(ValueError, match=r"renamed\.pt[\s\S]*1 missing: conv1\.weight"
                                         r"[\s\S]*1 unexpected: conv1\.renamed"):
        load_backbone_weights(target, tmp_path / "renamed.pt")


@pytest.mark.parametrize("name,input_size", [("resnet18", 64),
                                             ("swin_tiny_patch4_window7_224", 256)])
def test_a_full_timm_checkpoint_loads_into_the_features_backbone(tmp_path, name, input_size):
    """ImageNet weights as timm and the model authors publish them: the whole classifier
    model, head included (Swin's features name its stages layers_0.. where it has
    layers.0..)."""
    import timm

    torch.manual_seed(0)
    full = timm.create_model(name)
    path = tmp_path / "full.pth"
    torch.save({"state_dict": full.state_dict()}, path)
    target = build_backbone(f"timm:{name}", 8, input_size=input_size)
    load_backbone_weights(target, path)
    ours = sorted(float(v.double().sum()) for k, v in target.body.state_dict().items()
                  if v.is_floating_point() and "relative_position_index" not in k)
    theirs = sorted(float(v.double().sum()) for k, v in full.state_dict().items()
                    if v.is_floating_point() and not k.startswith(("fc.", "head.")))
    assert len(ours) <= len(theirs) and set(ours) <= set(theirs)
    x = torch.rand(1, 3, input_size, input_size)
    fresh = build_backbone(f"timm:{name}", 8, input_size=input_size)
    assert not torch.allclose(target(x)[-1], fresh(x)[-1])


def test_weights_of_another_model_are_refused_with_their_keys(tmp_path):
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in build_backbone("timm:resnet18", 8)
               .body.state_dict().items()}, str(path))
    with pytest.raises(ValueError) as err:
        load_backbone_weights(build_backbone("timm:resnet50", 8), path)
    msg = str(err.value)
    assert "r18.safetensors" in msg and "missing: layer1.0.conv3.weight" in msg
    assert "shape mismatch: layer1.0.conv1.weight (64, 64, 3, 3) (model (64, 64, 1, 1))" in msg


def test_net_config_carries_the_training_recipe():
    p = ProposalParams()
    cfg = net_config(p, 64)
    assert (cfg.input_size, cfg.freeze_bn, cfg.dim_feedforward, cfg.dropout) == (
        p.crop_size, p.freeze_bn, p.dim_feedforward, p.dropout)
