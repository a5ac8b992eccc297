import numpy as np
import torch
import torch.nn.functional as F

from pipeline.mining.pairs import best_proposals, lemma_classes, mask_iou_single


def test_each_noun_gets_its_most_similar_proposal():
    # 3 proposals along the axes; nouns point mostly at proposal 2, 0 and 2 again
    regions = torch.eye(3)
    nouns = F.normalize(torch.tensor([[0.1, 0.2, 0.9], [0.8, 0.5, 0.0], [0.0, 0.6, 0.7]]),
                        dim=-1)
    best, sim, margin = best_proposals(regions, nouns)
    assert best.tolist() == [2, 0, 2]
    assert torch.allclose(sim, nouns.max(dim=1).values)
    top2 = nouns.topk(2, dim=1).values
    assert torch.allclose(margin, top2[:, 0] - top2[:, 1])
    best, _, margin = best_proposals(regions[:1], nouns)  # one proposal: no runner-up
    assert best.tolist() == [0, 0, 0] and margin.tolist() == [0.0, 0.0, 0.0]


def test_lemma_classes_use_synonyms_through_the_extractor():
    def extract(text):  # stand-in extractor: plural -s dropped
        return [(w, w[:-1] if w.endswith("s") else w) for w in text.lower().split()]

    table = lemma_classes(["sky", "dog, puppies", "traffic light"], extract)
    assert table["dog"] == 1 and table["puppie"] == 1 and table["sky"] == 0
    assert table["light"] == 2  # the head noun of a name the extractor splits


def test_mask_iou_single():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert mask_iou_single(a, b) == 4 / 12 and mask_iou_single(a, a) == 1.0
    assert mask_iou_single(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 0.0


def test_read_ahead_keeps_order_and_raises_where_the_item_would_come():
    from pipeline.data.read_ahead import read_ahead

    for depth in (0, 1, 3):
        assert list(read_ahead(range(20), depth)) == list(range(20))

    def failing():
        yield from range(3)
        raise ValueError("bad item 3")

    got = []
    try:
        for x in read_ahead(failing(), 2):
            got.append(x)
    except ValueError as e:
        assert str(e) == "bad item 3"
    else:
        raise AssertionError("the reader's exception was not raised")
    assert got == [0, 1, 2]


def test_read_ahead_stops_its_reader_when_the_loop_is_left():
    import threading

    from pipeline.data.read_ahead import read_ahead

    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    for x in read_ahead(items(), 2):
        if x == 5:
            break
    assert not any(t.name == "read-ahead" for t in threading.enumerate())
    assert len(produced) <= 5 + 1 + 2 + 1  # at most depth ahead, plus the one being put


def mining_inputs(tmp_path, n=7):
    """Seven random 40x48 images with three labelled segments each, two nouns per image
    but image 3's, and the tiny CLIP: a few mining batches of 4 crops."""
    from PIL import Image

    from pipeline.clip.model import create_clip
    from pipeline.data.layouts import IndexRow, Split

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    rows = []
    for i in range(n):
        labels = np.zeros((40, 48), np.uint8)
        labels[:, 24:] = 1
        labels[rng.integers(5, 20):30, 5:15] = 2
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
            tmp_path / "images" / f"{i}.png")
        Image.fromarray(labels).save(tmp_path / "labels" / f"{i}.png")
        rows.append(IndexRow(i, f"{i}.png", f"{i}.png", 40, 48, ("a dog on grass",)))
    split = Split("train", "train", str(tmp_path / "images"), str(tmp_path / "labels"), "", "")
    torch.manual_seed(0)
    clip = create_clip("ovseg-tiny-vit", "").eval()
    lemmas = ["dog", "grass", "sky"]
    text = F.normalize(torch.randn(len(lemmas), 64), dim=-1)
    nouns = {i: [(0, "dog", "dog"), (0, "grass", "grass")] if i != 3 else [] for i in range(n)}
    return clip, text, lemmas, nouns, {"dog": 2, "grass": 0}, rows, split



def test_mined_pairs_are_the_same_with_images_read_ahead(tmp_path):
    """mine_pairs reads ahead on a thread on CUDA; forced on here, on the CPU, it must give
    the pairs and counts of the plain loop."""
    from pipeline.mining.mine import mine_pairs
    from pipeline.params import MineParams

    inputs = mining_inputs(tmp_path)
    p = MineParams(masks="gt", crop_batch_size=4)
    runs = [mine_pairs(*inputs, p, tmp_path, read_ahead_images=ahead) for ahead in (0, 3)]
    assert runs[0] == runs[1]
    assert len(runs[0][0]["image_id"]) == 12 and runs[0][1] == 12  # 6 images with nouns
