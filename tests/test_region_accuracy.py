import numpy as np
import torch
import torch.nn.functional as F

from pipeline.adapt.region_accuracy import (
    RegionSet,
    Variant,
    _batches_of_regions,
    outline_accuracy,
    region_accuracy,
)
from pipeline.data.class_lists import ClassList


class ColourClip(torch.nn.Module):
    """Stand-in CLIP whose image feature is the crop's mean colour."""

    def __init__(self):
        super().__init__()
        self.dtype_probe = torch.nn.Parameter(torch.zeros(1))  # the weights' dtype
        self.visual = lambda images: images.mean(dim=(2, 3))


def regions(n_images=10):
    """Class k's crops are coloured e_k; masks are the same square for every class."""
    out = []
    for i in range(n_images):
        labels = np.array([i % 3, (i + 1) % 3])
        crops = torch.stack([torch.eye(3)[k].view(3, 1, 1).expand(3, 8, 8) for k in labels])
        masks = torch.zeros(2, 8, 8, dtype=torch.bool)
        masks[:, 2:6, 2:6] = True
        out.append(RegionSet(i, labels, crops, masks, torch.ones(2, 3, 8, 8)))
    return out


def test_region_accuracy_counts_seen_and_unseen_and_runs_the_outline_checks(monkeypatch):
    import pipeline.clip.mask_classifier as mc

    monkeypatch.setattr(mc, "encode_image", lambda model, images, masks, prompts:
                        model.visual(images))
    classes = ClassList("toy", ("red", "green", "blue"), (True,) * 3, (True, True, False))
    right = F.normalize(torch.eye(3), dim=-1)
    wrong = right[[1, 0, 2]]  # red and green swapped
    result = region_accuracy(regions(), {"right": Variant(ColourClip(), None, right),
                                         "wrong": Variant(ColourClip(), None, wrong)},
                             classes, control_steps=20)
    assert result["right"]["all"] == 1.0 and result["right"]["n"] == 20
    assert result["wrong"]["seen"] == 0.0 and result["wrong"]["unseen"] == 1.0
    assert abs(result["wrong"]["all"] - result["wrong"]["n_unseen"] / 20) < 1e-6
    # white crops carry no colour: one class for every region
    assert result["right_outline"]["all"] < 0.5
    assert 0 <= result["outline_only_control"]["accuracy"] <= 1


def test_outline_control_needs_two_classes_and_held_out_images():
    x = torch.rand(4, 16)
    assert outline_accuracy(x, torch.zeros(4, dtype=torch.long), np.arange(4), 5, 0) is None
    assert outline_accuracy(x, torch.tensor([0, 1, 0, 1]), np.zeros(4), 5, 0) is None


def test_regions_are_grouped_in_order_into_batches_of_about_batch_size_crops():
    sets = regions(9)  # 2 crops each
    for batch_size in (1, 3, 4, 100):
        groups = list(_batches_of_regions(iter(sets), batch_size))
        assert [r for g in groups for r in g] == sets
        for g in groups[:-1]:  # full: reaches batch_size, and not without its last image
            crops = [len(r.label) for r in g]
            assert sum(crops) >= batch_size > sum(crops[:-1])


def test_grouping_images_into_one_forward_gives_the_per_image_predictions(monkeypatch):
    import pipeline.clip.mask_classifier as mc

    monkeypatch.setattr(mc, "encode_image", lambda model, images, masks, prompts:
                        model.visual(images))
    gen = torch.Generator().manual_seed(0)
    sets = [RegionSet(r.image_index, r.label, r.crops + 0.4 * torch.rand(r.crops.shape,
                      generator=gen), r.crop_masks, r.outline_crops) for r in regions(12)]
    classes = ClassList("toy", ("red", "green", "blue"), (True,) * 3, (True, True, False))
    text = F.normalize(torch.randn(3, 3, generator=gen), dim=-1)
    variants = {"v": Variant(ColourClip(), None, text)}
    per_image = region_accuracy(sets, variants, classes, batch_size=1, control_steps=5)
    grouped = region_accuracy(sets, variants, classes, batch_size=7, control_steps=5)
    assert per_image == grouped
    assert 0 < per_image["v"]["all"] < 1  # the check would see a flipped prediction
