import pytest
import torch
import torch.nn.functional as F

from pipeline.clip.masked_crops import expand_boxes, mask_boxes, masked_crops, normalize

METHODS = ["matmul", "loop", "whole"]


def _image(h=6, w=8):
    # distinct value per pixel and channel, in [0, 1]
    return torch.arange(3 * h * w, dtype=torch.float32).reshape(3, h, w) / (3 * h * w)


def test_boxes_are_tight_and_empty_masks_invalid():
    masks = torch.zeros(3, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 5, 7] = True
    boxes, valid = mask_boxes(masks)
    assert boxes.tolist() == [[2, 1, 5, 3], [7, 5, 8, 6], [0, 0, 0, 0]]
    assert valid.tolist() == [True, True, False]


def test_expand_boxes_grows_about_centre_and_clips():
    boxes = torch.tensor([[2, 2, 4, 4], [0, 0, 2, 2]])
    out = expand_boxes(boxes, 2.0, 6, 8)
    assert out.tolist() == [[1, 1, 5, 5], [0, 0, 3, 3]]


@pytest.mark.parametrize("method", METHODS)
def test_crop_at_native_size_equals_filled_bbox(method):
    img = _image()
    masks = torch.zeros(1, 6, 8, dtype=torch.bool)
    masks[0, 1:4, 2:5] = True
    masks[0, 1, 2] = False  # a background pixel inside the box
    mean = torch.tensor([0.1, 0.2, 0.3])
    crops, crop_masks, valid = masked_crops(img, masks, 3, fill="mean", fill_color=mean,
                                           method=method)
    # size 3 == box size: bicubic resize to the same size is the identity
    expected = img[:, 1:4, 2:5].clone()
    expected[:, 0, 0] = mean
    assert valid.item()
    assert torch.allclose(crops[0], expected, atol=1e-6)
    assert crop_masks[0].tolist() == masks[0, 1:4, 2:5].tolist()
    zero, _, _ = masked_crops(img, masks, 3, fill="zero", method=method)
    assert zero[0, :, 0, 0].tolist() == [0.0, 0.0, 0.0]
    none, _, _ = masked_crops(img, masks, 3, fill="none", method=method)
    assert torch.allclose(none[0], img[:, 1:4, 2:5], atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_resize_uses_nearest_for_mask_and_invalid_crops_are_zero(method):
    img = _image()
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 0:2, 0:2] = True
    masks[0, 0, 1] = False
    crops, crop_masks, valid = masked_crops(img, masks, 4, fill="zero", method=method)
    assert crop_masks[0].tolist() == [[True, True, False, False], [True, True, False, False],
                                      [True, True, True, True], [True, True, True, True]]
    assert valid.tolist() == [True, False]
    assert crops[1].abs().sum() == 0 and not crop_masks[1].any()


def per_box_reference(image, masks, size, color, ratio):
    """One F.interpolate per box: bicubic for the filled crop, nearest for its mask."""
    n, h, w = masks.shape
    boxes, valid = mask_boxes(masks)
    boxes = expand_boxes(boxes, ratio, h, w)
    crops, crop_masks = torch.zeros(n, 3, size, size), torch.zeros(n, size, size, dtype=bool)
    for i in range(n):
        if valid[i]:
            x0, y0, x1, y1 = boxes[i].tolist()
            m = masks[i, y0:y1, x0:x1]
            crop = torch.where(m, image[:, y0:y1, x0:x1], color.view(3, 1, 1))
            crops[i] = F.interpolate(crop[None], (size, size), mode="bicubic")[0].clamp(0, 1)
            crop_masks[i] = F.interpolate(m[None, None].float(), (size, size))[0, 0] > 0
    return crops, crop_masks, valid


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("h, w, size", [(37, 53, 16), (64, 64, 64), (30, 20, 96)])
def test_batched_crops_match_per_box_interpolate(method, h, w, size):
    g = torch.Generator().manual_seed(h)
    image = torch.rand(3, h, w, generator=g)
    masks = torch.zeros(12, h, w, dtype=torch.bool)
    for i in range(11):  # random boxes of random pixels; the last mask stays empty
        y0, x0 = (int(torch.randint(0, s, (1,), generator=g)) for s in (h, w))
        y1 = y0 + int(torch.randint(1, h - y0 + 1, (1,), generator=g))
        x1 = x0 + int(torch.randint(1, w - x0 + 1, (1,), generator=g))
        masks[i, y0:y1, x0:x1] = torch.rand(y1 - y0, x1 - x0, generator=g) > 0.3
    color = torch.tensor([0.48, 0.46, 0.41])
    for ratio in (1.0, 1.5):
        got = masked_crops(image, masks, size, "mean", color, ratio, method=method)
        want = per_box_reference(image, masks, size, color, ratio)
        assert torch.allclose(got[0], want[0], atol=1e-5)
        assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="fill must be one of"):
        masked_crops(_image(), torch.ones(1, 6, 8, dtype=torch.bool), 4, fill="blur")
    with pytest.raises(ValueError, match="same H, W"):
        masked_crops(_image(), torch.ones(1, 5, 8, dtype=torch.bool), 4, fill="zero")


def test_normalize_is_the_per_channel_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, 4, generator=g)
    mean, std = torch.tensor([0.48, 0.46, 0.41]), torch.tensor([0.27, 0.26, 0.28])
    out = normalize(x, mean, std)
    for c in range(3):  # exactly (x - mean) / std, not x * (1 / std) - mean / std
        assert torch.equal(out[:, c], (x[:, c] - mean[c]) / std[c])


@pytest.mark.parametrize("method", METHODS)
def test_crops_cut_a_mask_at_a_time_equal_the_whole_chunk(method, monkeypatch):
    """Masks go through in chunks bounded by CHUNK_FLOATS (COCO images on a GPU: ~12 a
    chunk); a chunk of one mask must cut the crops of one chunk of all."""
    import pipeline.clip.masked_crops as mc

    g = torch.Generator().manual_seed(0)
    image, masks = torch.rand(3, 30, 40, generator=g), torch.rand(5, 30, 40, generator=g) > 0.7
    masks[2] = False
    color = torch.tensor([0.48, 0.46, 0.41])
    whole = masked_crops(image, masks, 16, "mean", color, method=method)
    monkeypatch.setattr(mc, "CHUNK_FLOATS", 1)
    one_by_one = masked_crops(image, masks, 16, "mean", color, method=method)
    for a, b in zip(whole, one_by_one):
        assert torch.equal(a, b)
