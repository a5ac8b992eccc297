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
