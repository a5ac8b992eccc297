"""Bad inputs (issue 12, item 5): unreadable images among good ones, images too large to
segment at full size, and corrupt prompts, adapted.json and resume checkpoint files."""

import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.adapt.adapted_model import AdaptedModelError, load_adapted, read_manifest
from pipeline.clip.mask_prompts import PromptsFileError, load_prompts, save_prompts
from pipeline.data.image_io import (
    ImageReadError,
    bounded_size,
    read_rgb,
    read_rgb_within,
)
from pipeline.segment.cli import main
from pipeline.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from tests.test_segment_command import args  # tiny_models: the fixture of conftest.py

RANDOM_BYTES = np.random.default_rng(0).bytes(2000)  # fixed: each garbage file the same


def save_photo(path, size=(40, 24), seed=0, fmt=None):
    w, h = size
    pixels = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def png_claiming(path, width, height):
    """A 1x1 PNG whose header claims width x height: PIL refuses it on opening."""
    save_photo(path, (1, 1), fmt="PNG")
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr:ihdr + 17]))
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def make_bad(kind, path):
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "truncated":
        save_photo(path.with_suffix(".full.jpg"), (64, 48))
        whole = path.with_suffix(".full.jpg").read_bytes()
        path.write_bytes(whole[:len(whole) // 2])
    elif kind == "not an image":
        path.write_text("hello, I am a text file\n")
    elif kind == "decompression bomb":
        png_claiming(path, 20000, 20000)
    # "missing": nothing written


BAD_KINDS = {"missing": "no such file", "zero-byte": "empty file",
             "truncated": "truncated or corrupt", "not an image": "not an image",
             "decompression bomb": "refused as too large"}


@pytest.mark.parametrize("kind", list(BAD_KINDS))
def test_a_bad_image_is_reported_and_the_others_segmented(kind, tiny_models, tmp_path,
                                                          capsys):
    good = [save_photo(tmp_path / "a.jpg"), save_photo(tmp_path / "c.png", seed=1)]
    bad = tmp_path / "bad.jpg"
    make_bad(kind, bad)
    out = tmp_path / "out"
    assert main(args(tiny_models, str(good[0]), str(bad), str(good[1]), "--classes",
                     "sky, dog", "--out", str(out))) == 1
    captured = capsys.readouterr()
    err_lines = captured.err.strip().splitlines()
    assert len(err_lines) == 1 and str(bad) in err_lines[0] and BAD_KINDS[kind] in err_lines[0]
    assert "Traceback" not in captured.err
    assert "segmented 2 of 3 images" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [
        "a_labels.png", "a_overlay.png", "c_labels.png", "c_overlay.png"]  # no temp files


def test_all_good_images_exit_zero_and_same_names_are_not_overwritten(tiny_models, tmp_path,
                                                                      capsys):
    (tmp_path / "x").mkdir()
    paths = [save_photo(tmp_path / "a.jpg"), save_photo(tmp_path / "x" / "a.jpg", seed=1)]
    assert main(args(tiny_models, str(paths[0]), "--classes", "sky",
                     "--out", str(tmp_path / "one"))) == 0
    assert "segmented 1 of 1 images" in capsys.readouterr().out
    assert main(args(tiny_models, *map(str, paths), "--classes", "sky",
                     "--out", str(tmp_path / "out"))) == 1
    captured = capsys.readouterr()
    assert "would overwrite those of" in captured.err and "segmented 1 of 2" in captured.out


def test_an_interrupted_write_leaves_no_half_written_png(tiny_models, tmp_path, monkeypatch):
    from pathlib import Path

    def killed_half_way(path, data):  # Ctrl-C in the middle of writing a file
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
        raise KeyboardInterrupt

    photo = str(save_photo(tmp_path / "a.jpg"))
    monkeypatch.setattr(Path, "write_bytes", killed_half_way)
    with pytest.raises(KeyboardInterrupt):
        main(args(tiny_models, photo, "--classes", "sky", "--out", str(tmp_path / "out")))
    assert not list((tmp_path / "out").glob("*.png"))  # only a hidden temp file


def test_bounded_size_keeps_small_images_and_the_aspect_of_large_ones():
    assert bounded_size(64, 64, 1024 * 1024) == (64, 64)
    assert bounded_size(9000, 12000, 0) == (9000, 12000)
    h, w = bounded_size(9000, 12000, 1024 * 1024)
    assert h * w <= 1024 * 1024 and abs(w / h - 12000 / 9000) < 0.01
    assert bounded_size(10, 10 ** 7, 1000) == (1, 1000)  # long and thin: bounded as well


def test_images_within_the_bound_read_exactly_as_before(tmp_path):
    for name in ("a.jpg", "b.png"):
        path = save_photo(tmp_path / name, (64, 64))
        image, full = read_rgb_within(path, 64 * 64)
        assert full == (64, 64) and np.array_equal(image, read_rgb(path))


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "I;16"])
def test_large_images_of_any_mode_are_read_within_the_bound(mode, tmp_path):
    path = tmp_path / "big.png"
    save_photo(tmp_path / "rgb.png", (300, 200))
    Image.open(tmp_path / "rgb.png").convert(mode).save(path)
    image, full = read_rgb_within(path, 60 * 40)
    assert full == (200, 300) and image.shape == (40, 60, 3) and image.dtype == np.uint8


def test_a_large_image_is_segmented_scaled_down_with_labels_at_full_size(tiny_models,
                                                                         tmp_path, capsys):
    photo = tmp_path / "big.jpg"
    Image.new("RGB", (6000, 4500), (90, 140, 200)).save(photo)  # uniform: cheap to encode
    image, full = read_rgb_within(photo, 1024 * 1024)
    assert full == (4500, 6000) and image.shape == (886, 1182, 3)
    out = tmp_path / "out"
    assert main(args(tiny_models, str(photo), "--classes", "sky, sea", "--out", str(out))) == 0
    assert "segmented at 1182x886, labels at 6000x4500" in capsys.readouterr().out
    assert Image.open(out / "big_labels.png").size == (6000, 4500)


def test_the_bound_option_applies_to_modest_images(tiny_models, tmp_path, capsys):
    out = tmp_path / "out"
    photo = save_photo(tmp_path / "p.png", (60, 40))
    assert main(args(tiny_models, str(photo), "--classes", "sky, sea", "--out", str(out),
                     "--max-pixels", "600")) == 0
    assert "segmented at 30x20, labels at 60x40" in capsys.readouterr().out
    labels = np.asarray(Image.open(out / "p_labels.png"))
    assert labels.shape == (40, 60)
    assert np.array_equal(labels[::2, ::2].repeat(2, 0).repeat(2, 1), labels)  # nearest


def test_unreadable_image_errors_are_one_line(tmp_path):
    for kind in BAD_KINDS:
        path = tmp_path / f"{kind}.jpg"
        make_bad(kind, path)
        with pytest.raises(ImageReadError) as e:
            read_rgb_within(path, 1024 * 1024)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


def corrupt_files(tmp_path):
    torch.save({"x": torch.ones(2)}, tmp_path / "pickle.pt")
    (tmp_path / "random.bin").write_bytes(RANDOM_BYTES)
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "object.json").write_text('{"mask_prompts": [1, 2]}')
    return [tmp_path / n for n in ("pickle.pt", "random.bin", "empty.bin", "object.json")]


def test_a_prompts_file_that_is_not_safetensors_is_a_one_line_error(tmp_path):
    for path in corrupt_files(tmp_path):
        with pytest.raises(PromptsFileError) as e:
            load_prompts(path)
        msg = str(e.value)
        assert str(path) in msg and "dvc repro prompt_tune" in msg and "\n" not in msg
    save_prompts(torch.zeros(1, 16, 32), tmp_path / "ok.safetensors")
    assert load_prompts(tmp_path / "ok.safetensors")[0].shape == (1, 16, 32)


MANIFESTS = {"empty": b"", "not JSON": b"{'clip': ", "a list": b"[1, 2]",
             "no clip": b'{"prompts": null}', "clip a number": b'{"clip": 3, "prompts": null}',
             "binary": b"\x00\x80\x81garbage"}


@pytest.mark.parametrize("kind", list(MANIFESTS))
def test_a_corrupt_adapted_json_is_a_one_line_error(kind, tmp_path):
    (tmp_path / "adapted.json").write_bytes(MANIFESTS[kind])
    with pytest.raises(AdaptedModelError) as e:
        read_manifest(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "adapted.json") in msg and "dvc repro prompt_tune" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("broken", ["adapted.json", "prompts"])
def test_the_command_reports_a_corrupt_adapted_model_in_one_line(broken, tiny_models,
                                                                tmp_path, capsys):
    adapted = tmp_path / "adapted"
    adapted.mkdir()
    if broken == "adapted.json":
        (adapted / "adapted.json").write_text("{")
    else:
        (adapted / "adapted.json").write_text(json.dumps(
            {"clip": str(tiny_models / "clip_base"), "prompts": "p.safetensors"}))
        (adapted / "p.safetensors").write_bytes(RANDOM_BYTES[:100])
    argv = args(tiny_models, str(save_photo(tmp_path / "a.jpg")), "--classes", "sky")
    argv[argv.index("--adapted") + 1] = str(adapted)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "model unusable" in err and str(adapted) in err and "dvc repro prompt_tune" in err
    with pytest.raises(ValueError):
        load_adapted(adapted)


def checkpoint_kinds(tmp_path):
    """Resume checkpoint files as a killed or confused run may leave them."""
    save_checkpoint(tmp_path / "good.pt", {"step": 4, "logs": [], "fingerprint": "run"})
    whole = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "random.pt").write_bytes(RANDOM_BYTES)
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"step": 1, "fingerprint": "run", "obj": Unlisted()}, tmp_path / "global.pt")
    torch.save([1, 2, 3], tmp_path / "a-list.pt")
    return [tmp_path / f"{k}.pt" for k in ("truncated", "random", "empty", "global", "a-list")]


class Unlisted:  # not a type weights_only loading allows: unpickling it is refused
    ran = False

    def __setstate__(self, state):
        Unlisted.ran = True


def test_a_corrupt_resume_checkpoint_is_a_one_line_error(tmp_path):
    for path in checkpoint_kinds(tmp_path):
        with pytest.raises(CheckpointError) as e:
            read_checkpoint(path, "cpu")
        msg = str(e.value)
        assert str(path) in msg and "\n" not in msg and "weights_only=False" not in msg
    assert not Unlisted.ran  # refused, not run


def test_a_corrupt_resume_checkpoint_is_discarded_and_training_starts_over(tmp_path, capsys):
    from pipeline.training.checkpoint import resume_training

    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    for path in checkpoint_kinds(tmp_path):
        assert load_checkpoint(path, "run", "cpu") is None
        assert resume_training(path, net, optimizer, "run", "cpu") == (0, [])  # from step 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and all(str(path) in line and "starting from step 0" in line
                                     for line in err)
        save_checkpoint(path, {"step": 2, "logs": [], "fingerprint": "run"})  # next save
        assert load_checkpoint(path, "run", "cpu")["step"] == 2
    assert load_checkpoint(tmp_path / "good.pt", "run", "cpu")["step"] == 4
