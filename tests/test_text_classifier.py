import torch

from pipeline.text_classifier import split_synonyms, text_classifier


class FakeCLIP:
    """encode_text returns a fixed random vector per prompt string."""

    def __init__(self, dim=5):
        self.dim = dim
        self.table = {}

    def vec(self, prompt):
        if prompt not in self.table:
            g = torch.Generator().manual_seed(len(self.table) + 1)
            self.table[prompt] = torch.randn(self.dim, generator=g) * (1 + len(prompt))
        return self.table[prompt]

    def encode_text(self, prompts):
        return torch.stack([self.vec(p) for p in prompts])


def test_template_ensemble_matches_formula():
    model = FakeCLIP()
    templates = ("a photo of a {}.", "There is a {} in the scene")
    names = ["road, route", "sky"]
    out = text_classifier(model, lambda x: x, names, templates)
    for k, name in enumerate(names):
        vecs = [model.vec(t.format(s)) for s in split_synonyms(name) for t in templates]
        unit = [v / v.norm() for v in vecs]
        mean = torch.stack(unit).mean(0)
        assert torch.allclose(out[k], mean / mean.norm(), atol=1e-6)
    assert torch.allclose(out.norm(dim=1), torch.ones(2))


def test_split_synonyms():
    assert split_synonyms(" road,  route ,") == ["road", "route"]
