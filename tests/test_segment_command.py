import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.adapt.adapted_model import load_adapted
from pipeline.segment.cli import main


def test_adapted_manifest_is_relative_to_its_folder(tiny_models, tmp_path, monkeypatch):
    # CI found load_adapted resolving the CLIP against the working directory: it loaded
    # whatever models/clip_ft the caller's checkout had, or failed without one.
    moved = tmp_path / "elsewhere"
    shutil.copytree(tiny_models, moved)
    monkeypatch.chdir(tmp_path)
    model, prompts, manifest = load_adapted(moved / "adapted")
    assert manifest["clip"] == "../clip_base" and prompts is None
    want = load_adapted(tiny_models / "adapted")[0].state_dict()
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())


def args(models, *extra):
    return ["segment", *extra, "--proposals", str(models / "proposals"),
            "--adapted", str(models / "adapted"), "--base-clip", str(models / "clip_base"),
            "--params", str(models / "no-params.yaml")]


def test_segment_writes_an_overlay_and_a_label_map(tiny_models, tmp_path):
    image = (np.random.default_rng(0).random((24, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.jpg")
    out = tmp_path / "out"
    assert main(args(tiny_models, str(tmp_path / "photo.jpg"), "--classes",
                     "saturn v, teapot, sky", "--out", str(out))) == 0
    labels = np.asarray(Image.open(out / "photo_labels.png"))
    assert labels.shape == (24, 40) and labels.max() < 3
    overlay = Image.open(out / "photo_overlay.png")
    assert overlay.format == "PNG" and overlay.size[0] > 40


def test_segment_errors_name_the_problem(tiny_models, tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    assert main(args(tiny_models, str(tmp_path / "broken.jpg"), "--classes", "sky",
                     "--out", str(tmp_path / "out"))) == 1
    assert "cannot read image" in capsys.readouterr().err  # skipped, counted as failed
    assert main(args(tiny_models, str(tmp_path / "ok.jpg"), "--classes", " , ")) == 2
    assert "empty vocabulary" in capsys.readouterr().err
    bad = args(tiny_models, str(tmp_path / "ok.jpg"), "--classes", "sky")
    bad[bad.index("--proposals") + 1] = str(tmp_path / "nowhere")
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "model missing" in err and "dvc repro train_proposals" in err


def test_bf16_models_keep_float32_class_embeddings_for_every_vocabulary(tiny_models):
    """eval.dtype bfloat16 (or eval.precision bf16): the crops run in bf16, but each
    vocabulary's class embeddings come from the float32 text towers (a second vocabulary
    after the cast too), equal to a float32 load's; the segmenter still labels an image
    under CPU bf16 weights."""
    from pipeline.params import parse_params
    from pipeline.segment.segmenter import (
        load_segmenter_models,
        segmenter_for_names,
        segmenter_settings,
    )

    settings = segmenter_settings(parse_params({}))
    folders = (tiny_models / "proposals", tiny_models / "adapted", tiny_models / "clip_base")
    fp32 = load_segmenter_models(*folders, text_cache=tiny_models / "cache32")
    bf16 = load_segmenter_models(*folders, text_cache=tiny_models / "cache16",
                                 dtype="bfloat16")
    assert next(bf16.clip.parameters()).dtype == torch.bfloat16
    assert next(bf16.text_clip.parameters()).dtype == torch.float32
    # eval.precision bf16 (auto on CUDA) casts the crops' tower too, the text towers not
    autocast16 = load_segmenter_models(*folders, text_cache=tiny_models / "cache16",
                                       precision="bf16")
    assert [next(m.clip.parameters()).dtype for m in (fp32, autocast16)] == \
        [torch.float32, torch.bfloat16]
    assert next(autocast16.text_clip.parameters()).dtype == torch.float32
    for names in (["sky", "teapot"], ["saturn v", "dog", "grass"]):
        a, b = segmenter_for_names(fp32, names, settings), segmenter_for_names(bf16, names,
                                                                                settings)
        assert b.clip_text.dtype == torch.float32
        assert torch.equal(a.clip_text, b.clip_text) and torch.equal(a.net_text, b.net_text)
    labels = b.predict(torch.rand(3, 24, 40))["ensemble"]
    assert labels.shape == (24, 40) and int(labels.max()) < 3


def test_a_bf16_segmenter_holds_one_image_tower_and_hashes_its_text_towers_once(
        tiny_models, monkeypatch):
    """The float32 text CLIP shares the cast CLIP's image tower (no float32 copy of it); a
    new vocabulary reads the text cache under the hashes taken at load, not rehashing
    both towers (on a GPU: copying them to the host) per vocabulary."""
    import pipeline.clip.text_classifier as text_classifier
    from pipeline.params import parse_params
    from pipeline.segment.segmenter import (
        load_segmenter_models,
        models_dtype,
        segmenter_for_names,
        segmenter_settings,
    )

    folders = (tiny_models / "proposals", tiny_models / "adapted", tiny_models / "clip_base")
    models = load_segmenter_models(*folders, text_cache=tiny_models / "cache_once",
                                   precision="bf16")
    assert models.text_clip.visual is models.clip.visual and models_dtype(models) == "bfloat16"
    assert {p.dtype for p in models.text_clip.visual.parameters()} == {torch.bfloat16}
    assert {p.dtype for n, p in models.text_clip.named_parameters()
            if not n.startswith("visual.")} == {torch.float32}
    assert models.text_hashes == (text_classifier.text_tower_hash(models.base_clip),
                                  text_classifier.text_tower_hash(models.text_clip))
    settings = segmenter_settings(parse_params({}))
    first = segmenter_for_names(models, ["sky", "teapot"], settings)
    hashed = []
    monkeypatch.setattr(text_classifier, "text_tower_hash", lambda m: hashed.append(m) or "x")
    again = segmenter_for_names(models, ["sky", "teapot"], settings)  # cache hits
    other = segmenter_for_names(models, ["saturn v", "dog"], settings)  # computed
    assert hashed == []
    assert torch.equal(first.clip_text, again.clip_text) and other.clip_text.shape[0] == 2
    fp32 = load_segmenter_models(*folders, text_cache=tiny_models / "cache_once")
    assert models_dtype(fp32) == "float32" and fp32.text_clip is fp32.clip


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_network_of_the_segmenter_goes_to_its_device(tiny_models, precision):
    """Both text towers too (torch's `meta` device standing in for a GPU): a new
    vocabulary's class embeddings (ADE-847: ~12K prompts through each) are computed where
    the segmenter runs, not on its host."""
    from pipeline.segment.segmenter import load_segmenter_models

    folders = (tiny_models / "proposals", tiny_models / "adapted", tiny_models / "clip_base")
    models = load_segmenter_models(*folders, text_cache=tiny_models / "cache_meta",
                                   device="meta", precision=precision)
    for name in ("net", "base_clip", "text_clip", "clip"):
        assert {p.device.type for p in getattr(models, name).parameters()} == {"meta"}, name
    assert next(models.text_clip.parameters()).dtype == torch.float32
