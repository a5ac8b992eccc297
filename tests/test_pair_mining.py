import numpy as np
import torch
import torch.nn.functional as F

from pipeline.mining.pairs import best_proposals, lemma_classes, segment_hits


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


def mask_iou_single(a: np.ndarray, b: np.ndarray) -> float:
    """The reference IoU, in floats on the host (the mining loop's check before it moved
    to the device as `segment_hits`)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def test_mask_iou_single():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert mask_iou_single(a, b) == 4 / 12 and mask_iou_single(a, a) == 1.0
    assert mask_iou_single(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 0.0


def test_segment_hits_are_mask_iou_single_at_one_half():
    """The mining loop's check on the device, in integers, against the float IoU of the
    host: random masks and label maps, IoU exactly 0.5, and a class absent (union of an
    empty mask and an empty segment)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (12, 10))
    classes = rng.integers(0, 5, 40)  # 4: never labelled
    flips = rng.random((40, 12, 10)) < rng.uniform(0, 0.6, (40, 1, 1))
    masks = (labels[None] == classes[:, None, None]) ^ flips  # segments, more or less
    masks[0], classes[0] = labels == 1, 1  # IoU 1
    masks[1], classes[1] = False, 4  # nothing on either side
    segment = labels == 2
    masks[2], classes[2] = segment.copy(), 2
    ys, xs = np.nonzero(segment)
    masks[2][ys[:len(ys) // 2], xs[:len(ys) // 2]] = False
    if len(ys) % 2:  # keep exactly half of an even segment
        masks[2][ys[-1], xs[-1]] = False
        labels[ys[-1], xs[-1]] = 0
    want = [mask_iou_single(m, labels == c) >= 0.5 for m, c in zip(masks, classes)]
    assert mask_iou_single(masks[2], labels == 2) == 0.5
    got = segment_hits(torch.from_numpy(masks), torch.from_numpy(labels).to(torch.uint8),
                       torch.from_numpy(classes))
    assert got.tolist() == want and want[0] and not want[1] and want[2]
    assert 5 < sum(want) < 35  # both outcomes are common


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


def test_mined_pairs_equal_a_one_image_at_a_time_reference(tmp_path):
    """mine_pairs batches crops across images and reads each batch's results back only
    after queuing the next; a plain loop (each image's crops through CLIP alone, the
    checks by the host's IoU) must give the same pairs and counts."""
    from pipeline.clip.mask_classifier import crops_for_clip
    from pipeline.clip.mask_prompts import encode_image
    from pipeline.data.image_io import read_labels, read_rgb
    from pipeline.data.proposal_table import gt_proposals
    from pipeline.mining.mine import mine_pairs
    from pipeline.params import MineParams

    clip, text, lemmas, nouns, lemma_to_class, rows, split = inputs = mining_inputs(tmp_path)
    columns, checked, correct = mine_pairs(*inputs, MineParams(masks="gt", crop_batch_size=5),
                                           tmp_path)
    want, want_checked, want_correct = [], 0, 0
    for row in rows:
        labels = read_labels(tmp_path / "labels" / row.label_file)
        masks = torch.from_numpy(gt_proposals(row.image_id, labels, split.ignore_label).masks)
        if not nouns[row.image_id]:
            continue
        image = torch.from_numpy(read_rgb(tmp_path / "images" / row.file_name).copy())
        crops, _, valid = crops_for_clip(clip, image.permute(2, 0, 1).float() / 255, masks)
        with torch.no_grad():
            feats = F.normalize(encode_image(clip, crops), dim=-1) * valid[:, None]
        for (ci, noun, lemma) in nouns[row.image_id]:
            best, sim, margin = best_proposals(feats, text[[lemmas.index(lemma)]])
            want.append((row.image_id, ci, noun, lemma, int(best), float(sim), float(margin)))
            c = lemma_to_class.get(lemma)
            if c is not None and (labels == c).any():
                want_checked += 1
                want_correct += mask_iou_single(masks[int(best)].numpy(), labels == c) >= 0.5
    got = list(zip(*(columns[k] for k in ("image_id", "caption_index", "noun", "lemma",
                                           "proposal_id", "similarity", "margin"))))
    assert [g[:5] for g in got] == [w[:5] for w in want]
    assert np.allclose([g[5:] for g in got], [w[5:] for w in want], atol=1e-5)
    assert (checked, correct) == (want_checked, want_correct) and 0 < correct < checked
