import pytest
import torch
import torch.nn.functional as F

from pipeline.clip.mask_prompts import (
    MaskPrompts,
    encode_image,
    load_prompts,
    patch_foreground,
    save_prompts,
)
from pipeline.clip.model import create_clip, model_config

BLOCKS = 12  # ovseg-tiny-vit: 64 px images, 8 px patches (8x8 grid), 12 blocks as ViT-B
WIDTH = model_config("ovseg-tiny-vit")["vision_cfg"]["width"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_clip("ovseg-tiny-vit").eval()


def reference_forward(visual, images, masks, prompts):
    """OVSeg's MPT forward, written from the formula step by step (arithmetic blends,
    average-pool-then-ceil patch masks, CLIP's class-token pooling)."""
    p = visual.patch_size[0]
    b = images.shape[0]
    m = torch.ceil(F.avg_pool2d(masks[:, None].float(), p, p)).reshape(b, -1, 1)  # (B, 64, 1)
    x = visual.conv1(images).reshape(b, visual.transformer.width, -1).permute(0, 2, 1)
    x = x * m + prompts[0][None] * (1 - m)
    cls = visual.class_embedding.reshape(1, 1, -1).repeat(b, 1, 1)
    x = torch.cat([cls, x], dim=1)
    x = x + visual.positional_embedding
    x = visual.ln_pre(x)
    for i, block in enumerate(visual.transformer.resblocks):
        x = block(x)
        if i + 1 < prompts.shape[0]:
            patches = x[:, 1:] * m + prompts[i + 1][None] * (1 - m)
            x = torch.cat([x[:, :1], patches], dim=1)
    return visual.ln_post(x[:, 0]) @ visual.proj


def random_masks(b, seed):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(b, 64, 64, generator=g) > 0.9  # sparse pixels: many mixed patches
    masks[0] = True  # all foreground
    masks[1] = False  # all background
    masks[2] = False
    masks[2, 10:30, 5:22] = True  # a box across patch borders
    return masks


@pytest.mark.parametrize("depth", [1, 3, BLOCKS])
def test_mpt_forward_matches_formula(model, depth):
    g = torch.Generator().manual_seed(depth)
    images = torch.randn(5, 3, 64, 64, generator=g)
    masks = random_masks(5, depth)
    prompts = torch.randn(depth, 64, WIDTH, generator=g)
    with torch.no_grad():
        got = encode_image(model, images, masks, prompts)
        want = reference_forward(model.visual, images, masks, prompts)
        plain = model.visual(images)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    # all-foreground mask: no token is replaced, so MPT is plain CLIP
    assert torch.allclose(got[0], plain[0], atol=1e-5, rtol=1e-4)
    # all-background: every patch token is a prompt, the image does not matter
    other = torch.randn(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        alone = encode_image(model, other, masks[1:2], prompts)
    assert torch.allclose(alone[0], got[1], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got[2], plain[2], atol=1e-3)


def test_no_mask_is_plain_open_clip(model):
    images = torch.randn(3, 3, 64, 64)
    prompts = torch.randn(2, 64, WIDTH)
    with torch.no_grad():
        assert torch.equal(encode_image(model, images), model.encode_image(images))
        assert torch.equal(encode_image(model, images, None, prompts), model.visual(images))


def test_gradients_reach_only_the_prompts(model):
    for p in model.parameters():
        p.requires_grad_(False)
    prompts = MaskPrompts.for_model(model, 3)
    images = torch.randn(4, 3, 64, 64)
    masks = random_masks(4, 0)
    masks[1] = masks[2]  # no all-background image: some patches are foreground in all
    feats = encode_image(model, images, masks, prompts.prompts)
    feats.square().sum().backward()
    grad = prompts.prompts.grad
    assert grad is not None and all(grad[i].abs().sum() > 0 for i in range(3))
    assert all(p.grad is None for p in model.parameters())
    # patches that are foreground in every image never use their prompt
    always_fg = patch_foreground(masks, (8, 8)).all(dim=0)
    assert always_fg.any() and grad[:, always_fg].abs().sum() == 0


def test_patch_foreground_is_any_pixel():
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, 7, 8] = True  # one pixel in patch (row 0, col 1)
    masks[0, 8:16, 0:8] = True  # the whole of patch (1, 0)
    assert patch_foreground(masks, (8, 8)).tolist() == [[False, True, True, False]]


def test_depth_outside_blocks_is_a_clear_error(model):
    for bad in (0, BLOCKS + 1):
        with pytest.raises(ValueError, match="between 1 and the number of ViT blocks"):
            MaskPrompts.for_model(model, bad)
    with pytest.raises(ValueError, match="do not fit"):
        encode_image(model, torch.randn(1, 3, 64, 64), torch.ones(1, 64, 64, dtype=torch.bool),
                     torch.zeros(2, 49, WIDTH))


def test_prompts_round_trip_as_their_own_file(tmp_path, model):
    prompts = torch.randn(3, 64, WIDTH)
    save_prompts(prompts, tmp_path / "p.safetensors", {"arch": "ovseg-tiny-vit", "depth": 3})
    loaded, meta = load_prompts(tmp_path / "p.safetensors")
    assert torch.equal(loaded, prompts) and meta == {"arch": "ovseg-tiny-vit", "depth": 3}
    # far smaller than CLIP itself
    clip_numel = sum(p.numel() for p in model.parameters())
    assert (tmp_path / "p.safetensors").stat().st_size < 4 * clip_numel / 10
