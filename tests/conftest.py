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
