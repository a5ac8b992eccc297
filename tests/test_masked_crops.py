import torch

from pipeline.masked_crops import expand_boxes, mask_boxes, masked_crops


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


def test_crop_at_native_size_equals_filled_bbox():
    img = _image()
    masks = torch.zeros(1, 6, 8, dtype=torch.bool)
    masks[0, 1:4, 2:5] = True
    masks[0, 1, 2] = False  # a background pixel inside the box
    mean = torch.tensor([0.1, 0.2, 0.3])
    crops, crop_masks, valid = masked_crops(img, masks, 3, fill="mean", fill_color=mean)
    # size 3 == box size: bicubic resize to the same size is the identity
    expected = img[:, 1:4, 2:5].clone()
    expected[:, 0, 0] = mean
    assert valid.item()
    assert torch.allclose(crops[0], expected, atol=1e-6)
    assert crop_masks[0].tolist() == masks[0, 1:4, 2:5].tolist()
    zero, _, _ = masked_crops(img, masks, 3, fill="zero")
    assert zero[0, :, 0, 0].tolist() == [0.0, 0.0, 0.0]
    none, _, _ = masked_crops(img, masks, 3, fill="none")
    assert torch.allclose(none[0], img[:, 1:4, 2:5], atol=1e-6)


def test_resize_uses_nearest_for_mask_and_invalid_crops_are_zero():
    img = _image()
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 0:2, 0:2] = True
    masks[0, 0, 1] = False
    crops, crop_masks, valid = masked_crops(img, masks, 4, fill="zero")
    assert crop_masks[0].tolist() == [[True, True, False, False], [True, True, False, False],
                                      [True, True, True, True], [True, True, True, True]]
    assert valid.tolist() == [True, False]
    assert crops[1].abs().sum() == 0 and not crop_masks[1].any()
