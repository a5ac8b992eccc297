import pytest

from pipeline.params import ParamsError, load_params, parse_params
from tests.conftest import REPO


def test_repo_params_load_and_match_defaults_types():
    p = load_params(REPO / "params.yaml")
    assert p.data.source == "synthetic"
    assert isinstance(p.clip.lr, float)


@pytest.mark.parametrize("raw, key", [
    ({"data": {"sead": 1}}, "data.sead"),
    ({"clip": {"steps": "many"}}, "clip.steps"),
    ({"clip": {"steps": 0}}, "clip.steps"),
    ({"data": {"source": "imagenet"}}, "data.source"),
    ({"data": {"coco": {"root": 3}}}, "data.coco.root"),
    ({"data": {"workers": True}}, "data.workers"),
    ({"bogus": {}}, "bogus"),
])
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(ParamsError, match=f"'{key}'"):
        parse_params(raw)


def test_errors_say_what_is_allowed():
    with pytest.raises(ParamsError, match="allowed: synthetic, coco"):
        parse_params({"data": {"source": "x"}})
    with pytest.raises(ParamsError, match=">= 1"):
        parse_params({"clip": {"steps": -3}})


def test_int_accepted_for_float_and_scientific_string():
    assert parse_params({"clip": {"lr": 1}}).clip.lr == 1.0
    assert parse_params({"clip": {"lr": "1e-3"}}).clip.lr == pytest.approx(1e-3)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")
