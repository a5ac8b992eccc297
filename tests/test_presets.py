"""The paper's two settings as complete params files (OVSeg §4.1, A.3; ov-seg's configs)."""

import pytest
import yaml

from pipeline.params import load_params
from pipeline.params.checks import check_across_sections, real_data_warnings
from tests.conftest import REPO

PRESETS = sorted((REPO / "presets").glob("*.yaml"))
FIVE = ["ade20k_150", "ade20k_847", "pascal_context_59", "pascal_context_459", "pascal_voc_20"]


def keys(tree, prefix=""):
    out = set()
    for k, v in tree.items():
        out.add(prefix + k)
        if isinstance(v, dict) and not prefix.startswith("eval."):
            out |= keys(v, prefix + k + ".")
    return out


def test_there_are_two_presets():
    assert [p.stem for p in PRESETS] == ["coco_r101c_vitb16", "coco_swinb_vitl14"]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_is_complete_valid_and_consistent_across_sections(path):
    params = load_params(path)  # every key set, each value in range
    check_across_sections(params)  # crop size = CLIP input, mpt.depth <= blocks, eval sets
    assert real_data_warnings(params) == []  # nothing left at the synthetic world's values
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert keys(yaml.safe_load(path.read_text())) == keys(committed)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_has_the_papers_values(path):
    p = load_params(path)
    assert p.data.source == "coco"
    assert (p.ft.lr, p.ft.weight_decay, p.ft.epochs) == (5e-6, 0.2, 5.0)
    assert (p.mpt.lr, p.mpt.weight_decay, p.mpt.depth, p.mpt.epochs) == (2e-2, 0.0, 3, 5.0)
    assert p.mpt.batch_size == 256 and p.shards.crop_size == 224
    assert (p.mine.captions_per_image, p.mine.max_images, p.mine.masks) == (1, 0, "proposals")
    assert (p.proposals.queries, p.proposals.decoder_layers, p.proposals.hidden) == (100, 6, 256)
    assert (p.proposals.mask_loss, p.proposals.lr_schedule) == ("focal", "poly")
    assert p.proposals.grad_clip_norm == 0.01 and p.clip.templates == "vild"
    assert p.eval.datasets == FIVE
    if "r101c" in path.stem:
        assert (p.clip.arch, p.proposals.backbone) == ("ViT-B-16", "timm:resnet101c")
        assert (p.proposals.crop_size, p.proposals.lr, p.proposals.backbone_lr_multiplier) \
            == (512, 2e-4, 0.1)
        assert p.ft.batch_size == 1024
    else:
        assert (p.clip.arch, p.proposals.backbone) == (
            "ViT-L-14", "timm:swin_base_patch4_window12_384")
        assert (p.proposals.crop_size, p.proposals.lr, p.proposals.backbone_lr_multiplier) \
            == (640, 6e-5, 1.0)
        assert p.ft.batch_size == 256
