"""WordNet path similarity between class synsets: 1 / (1 + the fewest hypernym/hyponym
edges between the two), the measure of the similarity matrices Zhou et al. ship for Open
mIoU (arXiv 2311.03352; their files hold only values 1/(1+k)), and NLTK's
`Synset.path_similarity`.

NLTK's call walks both synsets' hypernym graphs for every pair; a K-class matrix asks for
K^2/2 pairs (ADE-847: 358K). Here each synset's distances to all of its ancestors are
found once and a pair's distance is the smallest sum over the ancestors they share:
the same numbers (tests/test_open_metrics.py compares them with NLTK's).
"""

from __future__ import annotations

import numpy as np


def ancestor_distances(synset) -> dict[str, int]:
    """{ancestor synset name: fewest hypernym edges up to it}, the synset itself at 0
    (instance hypernyms count as hypernyms, as in NLTK)."""
    out, frontier, d = {synset.name(): 0}, [synset], 0
    while frontier:
        d += 1
        nxt = []
        for s in frontier:
            for h in s.hypernyms() + s.instance_hypernyms():
                if h.name() not in out:
                    out[h.name()] = d
                    nxt.append(h)
        frontier = nxt
    return out


def path_similarity_matrix(wordnet, synsets: list[str | None]) -> np.ndarray:
    """(K, K) float64 path similarity of K synset names; a class without a synset (None) is
    1 with itself and 0 with every other class. Two classes on one synset are 1."""
    k = len(synsets)
    up = [ancestor_distances(wordnet.synset(s)) if s else None for s in synsets]
    out = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            if up[i] is None or up[j] is None:
                continue
            a, b = (up[i], up[j]) if len(up[i]) <= len(up[j]) else (up[j], up[i])
            shared = [d + b[name] for name, d in a.items() if name in b]
            if shared:
                out[i, j] = out[j, i] = 1.0 / (1.0 + min(shared))
    return out
