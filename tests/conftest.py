import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def real_trees(tmp_path_factory):
    """Small trees in the real datasets' layouts and shapes (tests/real_fixtures.py) under
    one root: {dataset name: FixtureTree}; data.coco.root is the COCO tree's root, eval.root
    the others'. Shared by the session: do not write into it."""
    from tests.real_fixtures import make_all

    return make_all(tmp_path_factory.mktemp("real"), coco=6, ade=4, pascal=4)


@pytest.fixture(scope="session")
def wordnet():
    """WordNet 3.0 as the noun miner and Open mIoU read it (`make nltk` installs it)."""
    from pipeline.mining.nltk_setup import wordnet_reader

    reader = wordnet_reader()
    if reader is None:
        pytest.fail("WordNet is not installed: run `make nltk` (see README)")
    return reader


TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                            "patch_size": 8},
             "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 16, "heads": 2,
                          "layers": 1}}


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A random proposal net and CLIP small enough to segment in milliseconds, in the
    folders `ovseg segment` and `ovseg demo` read: clip_base, proposals, adapted."""
    import open_clip
    import torch

    from pipeline.adapt.adapted_model import clip_reference, write_manifest
    from pipeline.clip.model import save_clip
    from pipeline.proposals.model import ProposalNet, ProposalNetConfig, save_proposal_net

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    clip = open_clip.CLIP(**TINY_CLIP)
    clip.visual.preprocess_cfg = {"size": (32, 32), "mean": open_clip.OPENAI_DATASET_MEAN,
                                  "std": open_clip.OPENAI_DATASET_STD}
    save_clip(clip, TINY_CLIP, root / "clip_base")
    net = ProposalNet(ProposalNetConfig(width=8, hidden=16, queries=4, decoder_layers=1,
                                        text_dim=16))
    (root / "proposals").mkdir()
    save_proposal_net(root / "proposals", net, torch.randn(3, 16), ["a", "b", "c"])
    (root / "adapted").mkdir()
    write_manifest(root / "adapted", clip_reference(root / "clip_base", root / "adapted"), None,
                   {"order": "none"})
    return root
