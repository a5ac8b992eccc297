import pytest
import torch
import torch.nn.functional as F

from pipeline.clip.mask_classifier import cast_for_inference, classify_masks, crops_for_clip
from pipeline.clip.mask_prompts import encode_image
from pipeline.clip.masked_crops import masked_crops
from pipeline.clip.model import create_clip, pixel_stats


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_clip("ovseg-tiny-vit").eval()


def scene(seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, 48, 80, generator=g)
    masks = torch.zeros(4, 48, 80, dtype=torch.bool)
    masks[0, 5:30, 10:50] = True
    masks[1, 20:48, 40:80] = torch.rand(28, 40, generator=g) > 0.5
    masks[3] = True  # masks[2] stays empty: invalid
    text = F.normalize(torch.randn(6, 64, generator=g), dim=-1)
    return image, masks, text


@pytest.mark.parametrize("with_prompts", [False, True])
def test_probabilities_follow_the_formula(model, with_prompts):
    image, masks, text = scene()
    prompts = torch.randn(2, 64, model.visual.transformer.width) if with_prompts else None
    probs, valid = classify_masks(model, image, masks, text, prompts, batch_size=2)
    assert valid.tolist() == [True, True, False, True]
    mean, std = pixel_stats(model)
    for i in (0, 1, 3):  # one crop at a time, by hand
        crop, crop_mask, _ = masked_crops(image, masks[i:i + 1], 64, "mean", mean)
        x = (crop - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
        with torch.no_grad():
            v = encode_image(model, x, crop_mask, prompts)[0]
        want = torch.softmax(100 * (v / v.norm()) @ text.T, dim=-1)
        assert torch.allclose(probs[i], want, atol=1e-4)
    assert probs[2].abs().sum() == 0


def test_bf16_weights_give_nearly_the_same_features(model):
    """The image features of bf16 weights point where the float32 ones do (each crop's
    pair of features at cosine > 0.99), so the class probabilities barely move."""
    image, masks, text = scene(1)
    bf16_model = cast_for_inference(create_clip("ovseg-tiny-vit"), "bfloat16")
    bf16_model.load_state_dict(model.state_dict())
    assert next(bf16_model.parameters()).dtype == torch.bfloat16
    crops, _, valid = crops_for_clip(model, image, masks)
    with torch.no_grad():
        fp32_features = encode_image(model, crops[valid])
        bf16_features = encode_image(bf16_model, crops[valid].bfloat16())
    assert bf16_features.dtype == torch.bfloat16
    cosine = F.cosine_similarity(fp32_features, bf16_features.float(), dim=-1)
    assert cosine.min() > 0.99, cosine
    fp32, _ = classify_masks(model, image, masks, text)
    bf16, _ = classify_masks(bf16_model, image, masks, text)
    assert (bf16 - fp32).abs().max() < 0.1
    with pytest.raises(ValueError, match="dtype must be one of"):
        cast_for_inference(model, "int8")
