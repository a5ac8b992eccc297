import json

import pytest
import torch

from pipeline.clip.model import create_clip
from pipeline.clip.text_classifier import (
    cached_text_classifier,
    split_synonyms,
    text_classifier,
    text_tower_hash,
)
from pipeline.data.class_lists import load_vocabulary


class FakeCLIP(torch.nn.Module):
    """encode_text returns a fixed random vector per prompt string; `tokenize` gives each
    prompt an id (a tensor, as a real tokenizer's tokens are)."""

    def __init__(self, dim=5):
        super().__init__()
        self.dim = dim
        self.table = {}
        self.prompts = []
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # where the "weights" live

    def vec(self, prompt):
        if prompt not in self.table:
            g = torch.Generator().manual_seed(len(self.table) + 1)
            self.table[prompt] = torch.randn(self.dim, generator=g) * (1 + len(prompt))
        return self.table[prompt]

    def tokenize(self, prompts):
        self.prompts += prompts
        return torch.arange(len(self.prompts) - len(prompts), len(self.prompts))

    def encode_text(self, ids):
        return torch.stack([self.vec(self.prompts[i]) for i in ids.tolist()])


def test_template_ensemble_matches_formula():
    model = FakeCLIP()
    templates = ("a photo of a {}.", "There is a {} in the scene")
    names = ["road, route", "sky"]
    out = text_classifier(model, model.tokenize, names, templates)
    for k, name in enumerate(names):
        vecs = [model.vec(t.format(s)) for s in split_synonyms(name) for t in templates]
        unit = [v / v.norm() for v in vecs]
        mean = torch.stack(unit).mean(0)
        assert torch.allclose(out[k], mean / mean.norm(), atol=1e-6)
    assert torch.allclose(out.norm(dim=1), torch.ones(2))


def test_split_synonyms():
    assert split_synonyms(" road,  route ,") == ["road", "route"]


class CountingCLIP(FakeCLIP):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def encode_text(self, prompts):
        self.calls += 1
        return super().encode_text(prompts)


def test_cache_hits_only_for_same_weights_classes_and_templates(tmp_path):
    model = CountingCLIP()
    first = cached_text_classifier(model, model.tokenize, ["cat", "dog"], tmp_path,
                                   model_hash="h1")
    again = cached_text_classifier(model, model.tokenize, ["cat", "dog"], tmp_path,
                                   model_hash="h1")
    assert model.calls == 1 and torch.equal(first, again)
    assert torch.allclose(first, text_classifier(model, model.tokenize, ["cat", "dog"]))
    cached_text_classifier(model, model.tokenize, ["cat", "dog", "teapot"], tmp_path,
                           model_hash="h1")
    cached_text_classifier(model, model.tokenize, ["cat", "dog"], tmp_path, model_hash="h2")
    cached_text_classifier(model, model.tokenize, ["cat", "dog"], tmp_path, ("a {}.",),
                           model_hash="h1")
    assert model.calls == 2 + 3  # the uncached reference call above, then 3 misses
    # a corrupt entry is recomputed, not an error
    for f in tmp_path.glob("*.safetensors"):
        f.write_bytes(b"junk")
    cached_text_classifier(model, model.tokenize, ["cat", "dog"], tmp_path, model_hash="h1")
    assert model.calls == 6


def test_text_tower_hash_ignores_the_image_tower():
    model = create_clip("ovseg-tiny-vit")
    before = text_tower_hash(model)
    with torch.no_grad():
        model.visual.proj.add_(1.0)
        assert text_tower_hash(model) == before
        model.text_projection.add_(1.0)
        assert text_tower_hash(model) != before


def test_vocabulary_from_files_builtin_names_and_strings(tmp_path):
    (tmp_path / "v.txt").write_text("# my classes\nroad, route\n\nteapot  # a comment\n")
    assert load_vocabulary(str(tmp_path / "v.txt")) == ["road, route", "teapot"]
    (tmp_path / "v.json").write_text(json.dumps(["Saturn V", "golden gate"]))
    assert load_vocabulary(str(tmp_path / "v.json")) == ["Saturn V", "golden gate"]
    (tmp_path / "c.json").write_text(json.dumps({"classes": [{"name": "sky"}, "sea"]}))
    assert load_vocabulary(str(tmp_path / "c.json")) == ["sky", "sea"]
    ade = load_vocabulary("ade20k_150")
    assert len(ade) == 150 and ade[6] == "road, route"
    assert load_vocabulary(" Saturn V, teapot,golden gate ") == ["Saturn V", "teapot",
                                                                 "golden gate"]
    with pytest.raises(ValueError, match="empty vocabulary"):
        load_vocabulary(" , ")
