"""A run whose output is empty or degenerate says so where it happens, with the likely cause
(mining metrics that say what they count; no proposals, no pairs, one class everywhere)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.data.layouts import IndexRow
from pipeline.mining.mine import empty_mining_warning, mining_metrics
from pipeline.params import MineParams, ProposalParams
from pipeline.proposals.extract import empty_proposals_warning
from pipeline.segment.eval_report import one_class_warning


def rows(n: int) -> list[IndexRow]:
    return [IndexRow(i, f"{i}.jpg", f"{i}.png", 8, 8, ("a dog on grass", "a dog"))
            for i in range(n)]


def columns(pairs: int) -> dict[str, list]:
    return {"image_id": [0] * pairs, "lemma": ["dog"] * pairs,
            "similarity": [0.5] * pairs, "margin": [0.1] * pairs}


def test_nouns_found_and_pairs_made_per_caption_are_two_numbers():
    nouns = {0: [(0, "dog", "dog"), (0, "grass", "grass")], 1: [(0, "dog", "dog")], 2: []}
    m = mining_metrics(columns(1), rows(3), MineParams(), "wordnet", 1, 1, 0.0, nouns)
    assert m["nouns_found_per_caption"] == 3 / 3  # one caption per image (OVSeg)
    assert m["pairs_per_caption"] == 1 / 3  # image 1 had no proposal for its dog, say
    assert "nouns_per_caption" not in m
    two = mining_metrics(columns(1), rows(3), MineParams(captions_per_image=2), "wordnet", 1, 1,
                         0.0, nouns)
    assert two["nouns_found_per_caption"] == 3 / 6 and two["pairs_per_caption"] == 1 / 6


def test_a_run_without_pairs_names_the_likely_cause():
    nouns = {0: [(0, "dog", "dog")], 1: []}
    none = mining_metrics(columns(0), rows(2), MineParams(), "wordnet", 0, 0, 0.0, nouns)
    assert "proposal net is likely undertrained" in empty_mining_warning(none, 2)
    mute = mining_metrics(columns(0), rows(2), MineParams(), "wordnet", 0, 0, 0.0, {0: [], 1: []})
    assert "WordNet" in empty_mining_warning(mute, 2)
    some = mining_metrics(columns(2), rows(2), MineParams(), "wordnet", 0, 0, 0.0, nouns)
    assert empty_mining_warning(some, 2) is None


def test_no_proposal_in_any_image_names_the_steps_and_the_score_threshold():
    p = ProposalParams(steps=2, min_score=0.0)
    said = empty_proposals_warning(0, 6, p)
    assert "no mask for any of 6 images" in said and "proposals.steps = 2" in said
    assert empty_proposals_warning(3, 6, p) is None
    assert empty_proposals_warning(0, 6, ProposalParams(source="gt")) is None


def test_one_class_everywhere_is_named_unless_the_truth_has_one_class():
    names = ["sky", "dog", "grass"]
    everywhere_sky = np.array([[5, 0, 0], [7, 0, 0], [2, 0, 0]])
    assert "labelled 'sky'" in one_class_warning("world_full", everywhere_sky, names)
    two = np.array([[5, 1, 0], [7, 0, 0], [2, 0, 0]])
    assert one_class_warning("world_full", two, names) is None
    only_sky = np.array([[9, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert one_class_warning("world_full", only_sky, names) is None


def test_the_strictness_param_stops_or_warns_and_says_nothing_without_a_warning(capsys):
    from pipeline.params import load_params
    from stages._start import speak_up
    from tests.conftest import REPO

    params = load_params(REPO / "params.yaml")
    assert params.compute.empty_outputs == "stop"  # the default, as data.bad_items
    speak_up(None, params)
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit, match="(?s)mine_pairs: no pairs.*empty_outputs=warn"):
        speak_up("mine_pairs: no pairs", params)
    warn = dataclasses.replace(params, compute=dataclasses.replace(params.compute,
                                                                   empty_outputs="warn"))
    speak_up("mine_pairs: no pairs", warn)
    assert capsys.readouterr().err == "warning: mine_pairs: no pairs\n"
