import copy
import json
import math

import pytest
import yaml

from pipeline.params import ParamsError, load_params, parse_params
from pipeline.params.checks import check_across_sections
from tests.conftest import REPO

COMMITTED = yaml.safe_load((REPO / "params.yaml").read_text())


def committed_with(**sections) -> dict:
    """The committed params.yaml with some keys replaced: {"mpt": {"depth": 9}}."""
    raw = copy.deepcopy(COMMITTED)
    for section, values in sections.items():
        raw[section].update(values)
    return raw


def test_repo_params_load_and_match_defaults_types():
    p = load_params(REPO / "params.yaml")
    assert p.data.source == "synthetic"
    assert isinstance(p.clip.lr, float)
    check_across_sections(p)


@pytest.mark.parametrize("raw, key", [
    ({"data": {"sead": 1}}, "data.sead"),
    ({"clip": {"steps": "many"}}, "clip.steps"),
    ({"clip": {"steps": 0}}, "clip.steps"),
    ({"data": {"source": "imagenet"}}, "data.source"),
    ({"data": {"coco": {"root": 3}}}, "data.coco.root"),
    ({"data": {"workers": True}}, "data.workers"),
    ({"bogus": {}}, "bogus"),
    ({"ft": {"lr": float("nan")}}, "ft.lr"),
    ({"ft": {"lr": "nan"}}, "ft.lr"),
    ({"eval": {"ensemble_lambda": float("inf")}}, "eval.ensemble_lambda"),
    ({"ft": {"lr": -1}}, "ft.lr"),
])
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(ParamsError, match=f"'{key}'"):
        parse_params(raw)


def test_errors_say_what_is_allowed():
    with pytest.raises(ParamsError, match="allowed: synthetic, coco"):
        parse_params({"data": {"source": "x"}})
    with pytest.raises(ParamsError, match=">= 1"):
        parse_params({"clip": {"steps": -3}})
    with pytest.raises(ParamsError, match="finite"):
        parse_params({"mpt": {"lr": -math.inf}})


def test_int_accepted_for_float_and_scientific_string():
    assert parse_params({"clip": {"lr": 1}}).clip.lr == 1.0
    assert parse_params({"clip": {"lr": "1e-3"}}).clip.lr == pytest.approx(1e-3)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")


def write(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("", "expected a mapping of sections"),
    ("# nothing but a comment\n", "expected a mapping of sections"),
    ("data: [unclosed\n", "not valid YAML"),
    ("data:\n  seed: 0\n  seed: 1\n", "line 3: duplicate key 'seed' \\(first set on line 2\\)"),
])
def test_unreadable_files_are_refused_with_the_file(tmp_path, text, message):
    with pytest.raises(ParamsError, match=message) as e:
        load_params(write(tmp_path, text))
    assert "params.yaml" in str(e.value)


def test_a_file_must_set_every_key(tmp_path):
    """Code defaults (the paper's values) never stand in for a key a file leaves out."""
    raw = committed_with()
    del raw["ft"]["lr"]
    with pytest.raises(ParamsError, match="missing key 'ft.lr'"):
        load_params(write(tmp_path, yaml.safe_dump(raw)))
    del raw["mpt"]
    with pytest.raises(ParamsError, match="missing key 'mpt'"):
        load_params(write(tmp_path, yaml.safe_dump(raw)))


@pytest.mark.parametrize("sections, message", [
    ({"mpt": {"depth": 99}}, "'mpt.depth' = 99; must be between 1 and the number of ViT "
                             "blocks of clip.arch 'ovseg-tiny-vit' \\(12\\)"),
    ({"shards": {"crop_size": 224}}, "'shards.crop_size' = 224 must equal the input size "
                                     "of clip.arch 'ovseg-tiny-vit' \\(64\\)"),
    ({"clip": {"arch": "ViT-B-16"}}, "'shards.crop_size' = 64 must equal the input size of "
                                     "clip.arch 'ViT-B-16' \\(224\\)"),
    ({"clip": {"arch": "no-such-vit"}}, "'clip.arch'"),
    ({"adapt": {"scale_min": 1.0, "scale_max": 0.5}}, "'adapt.scale_min' = 1.0 is above"),
    ({"eval": {"datasets": []}}, "'eval.datasets' is empty"),
    ({"eval": {"datasets": ["ade20k_151"]}}, "'eval.datasets' names 'ade20k_151'"),
    ({"eval": {"datasets": ["world_full", "world_full"]}}, "names a set twice"),
    ({"data": {"source": "coco"}}, "'eval.datasets' names 'world_full'; known with "
                                   "data.source 'coco'"),
])
def test_checks_across_sections_name_both_keys(sections, message):
    with pytest.raises(ParamsError, match=message):
        check_across_sections(parse_params(committed_with(**sections), complete=True))


def test_depth_is_checked_against_a_local_checkpoints_own_config(tmp_path):
    cfg = {"model_cfg": {"vision_cfg": {"layers": 12, "image_size": 64}}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(cfg))
    ok = committed_with(clip={"pretrained": str(tmp_path)}, mpt={"depth": 12})
    check_across_sections(parse_params(ok, complete=True))


@pytest.mark.parametrize("sections, key", [
    ({"ft": {"lr": -1}}, "ft.lr"),
    ({"mpt": {"depth": 99}}, "mpt.depth"),
    ({"eval": {"datasets": []}}, "eval.datasets"),
])
def test_check_params_stage_exits_2_naming_the_key_and_writes_no_marker(
        tmp_path, capsys, sections, key):
    from stages import check_params

    marker = tmp_path / "params_checked"
    path = write(tmp_path, yaml.safe_dump(committed_with(**sections)))
    assert check_params.main(["--params", str(path), "--out", str(marker)]) == 2
    err = capsys.readouterr().err
    assert f"'{key}'" in err and "No stage ran" in err
    assert not marker.exists()
    assert check_params.main(["--params", str(REPO / "params.yaml"), "--out", str(marker)]) == 0
    assert marker.read_bytes() == check_params.MARKER


def test_world_values_under_real_data_are_warned_with_the_papers():
    from pipeline.params.checks import real_data_warnings

    world = parse_params(committed_with())
    assert real_data_warnings(world) == []  # the synthetic source: nothing to say
    coco = parse_params(committed_with(data={"source": "coco"}))
    warnings = "\n".join(real_data_warnings(coco))
    for key in ("proposals.backbone", "clip.arch", "ft.lr", "mine.max_images",
                "proposals.queries"):
        assert f"'{key}'" in warnings
    assert "5e-06" not in warnings and "5e-6 (OVSeg" in warnings
