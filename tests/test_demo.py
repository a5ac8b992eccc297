"""The demo page, served on a free port of 127.0.0.1 and driven through the Gradio client:
image and words in, the label map, overlay and legend out, equal to `ovseg segment`'s for
the same input and settings; bad input answered by a message on the page."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.demo.browser_check import free_port
from pipeline.segment.cli import main as ovseg

gradio_client = pytest.importorskip("gradio_client")

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
WORDS = "saturn v\nteapot\nsky, heaven\ngolden gate"
MAX_PIXELS = 40 * 40  # small, so that a 64 x 48 image is scaled as `ovseg segment` scales it


def params_file(folder: Path, **eval_settings) -> Path:
    """The project's params.yaml with eval.* settings replaced (the page reads λ and the
    mask threshold from its sliders, `ovseg segment` from params)."""
    params = yaml.safe_load(PARAMS.read_text())
    params["eval"].update(eval_settings)
    path = folder / f"params_{len(list(folder.glob('params_*')))}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def serve(models: Path, folder: Path, proposals: Path | None = None):
    """A started page for `models` (params: the project's, compute on the CPU), and its
    client; the page object rides along for looking at its caches."""
    from pipeline.demo.app import open_page

    blocks = open_page(str(proposals or models / "proposals"), str(models / "adapted"),
                       str(models / "clip_base"), str(params_file(folder)), MAX_PIXELS,
                       splits_path=str(folder / "no-splits.json"),
                       text_cache=str(folder / "text_cache"))
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                  quiet=True)
    return blocks, gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)


@pytest.fixture(scope="module")
def page(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    blocks, client = serve(tiny_models, folder)
    yield blocks, client, folder
    blocks.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 64 x 48 photo: more than MAX_PIXELS, so both tools segment it scaled down."""
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(path)
    return path


def segment(client, image, words=WORDS, ensemble_lambda=0.6, mask_threshold=0.5):
    return client.predict(None if image is None else gradio_client.handle_file(str(image)),
                          words, ensemble_lambda, mask_threshold, api_name="/segment")


def ovseg_outputs(models: Path, image: Path, out: Path, params: Path) -> dict[str, bytes]:
    """`ovseg segment`'s two PNGs for the same image and class names."""
    classes = out.parent / "classes.txt"
    classes.write_text(WORDS)
    assert ovseg(["segment", str(image), "--classes-file", str(classes), "--out", str(out),
                  "--proposals", str(models / "proposals"), "--adapted", str(models / "adapted"),
                  "--base-clip", str(models / "clip_base"), "--params", str(params),
                  "--max-pixels", str(MAX_PIXELS)]) == 0
    return {k: (out / f"{image.stem}_{k}.png").read_bytes() for k in ("labels", "overlay")}


def legend_rows(legend_html: str) -> list[tuple[int, float, str]]:
    return [(int(c), float(s), name.strip()) for c, s, name in re.findall(
        r'data-class="(\d+)" data-share="([0-9.]+)"><span[^>]*></span>([^<]*)<b>',
        legend_html)]


@pytest.mark.parametrize("ensemble_lambda, mask_threshold", [(0.6, 0.5), (0.0, 0.5),
                                                             (1.0, 0.3)])
def test_page_gives_what_ovseg_segment_gives(page, tiny_models, photo, tmp_path,
                                             ensemble_lambda, mask_threshold):
    """The label map and the overlay (with its legend) byte for byte as `ovseg segment`
    writes them with the same λ and threshold in params; the page's legend lists exactly
    the classes of the label map, each with its share of the pixels."""
    _, client, _ = page
    message, overlay, legend, labels, proposals = segment(client, photo, WORDS,
                                                          ensemble_lambda, mask_threshold)
    want = ovseg_outputs(tiny_models, photo, tmp_path / "out", params_file(
        tmp_path, ensemble_lambda=ensemble_lambda, mask_threshold=mask_threshold))
    assert Path(labels).read_bytes() == want["labels"]
    assert Path(overlay).read_bytes() == want["overlay"]
    label_map = np.asarray(Image.open(labels))
    assert label_map.shape == (48, 64)  # at the file's size, though segmented scaled down
    assert "scaled from 64x48" in message
    names = [w.split(",")[0] for w in WORDS.splitlines()]
    rows = legend_rows(legend)
    assert {c for c, _, _ in rows} == set(np.unique(label_map).tolist())
    # shares are of the working-size map; the full-size one is its nearest resize
    assert sum(s for _, s, _ in rows) == pytest.approx(1, abs=1e-5)
    assert all(name == names[c] for c, _, name in rows)
    assert [s for _, s, _ in rows] == sorted((s for _, s, _ in rows), reverse=True)
    assert Image.open(proposals).format == "PNG"


def test_sliders_reuse_the_networks(page, photo, monkeypatch):
    """A new λ re-fuses without any network; a new threshold re-runs CLIP, not the
    proposal net."""
    blocks, client, _ = page
    session = blocks.fns[0].fn.__self__.session
    segment(client, photo, ensemble_lambda=0.2, mask_threshold=0.45)  # fills the caches
    calls = {"net": 0, "clip": 0}
    segmenter_cls = type(next(iter(session._segmenters.values())))
    for method, key in (("net_outputs", "net"), ("classify_proposals", "clip")):
        original = getattr(segmenter_cls, method)

        def counted(self, *a, _original=original, _key=key, **k):
            calls[_key] += 1
            return _original(self, *a, **k)
        monkeypatch.setattr(segmenter_cls, method, counted)
    segment(client, photo, ensemble_lambda=0.9, mask_threshold=0.45)
    assert calls == {"net": 0, "clip": 0}
    segment(client, photo, ensemble_lambda=0.9, mask_threshold=0.65)
    assert calls == {"net": 0, "clip": 1}


def test_bad_input_gets_a_message(page, photo, tmp_path):
    _, client, _ = page
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    for image, words, expected in ((photo, "", "Type some class names"),
                                   (photo, " , \n # only a comment", "No class names"),
                                   (None, WORDS, "Upload an image"),
                                   (broken, WORDS, "Cannot read the image")):
        message, overlay, legend, labels, proposals = segment(client, image, words)
        assert expected in message, message
        assert (overlay, legend, labels, proposals) == (None, "", None, None)


def test_missing_models_say_how_to_make_them(tiny_models, photo, tmp_path):
    blocks, client = serve(tiny_models, tmp_path, proposals=tmp_path / "nowhere")
    try:
        message, overlay, *_ = segment(client, photo)
    finally:
        blocks.close()
    assert "Models missing" in message and "make repro" in message and "nowhere" in message
    assert overlay is None


def test_examples_are_the_evaluation_images(tmp_path):
    """Each evaluation split of a prepared index gives its first images, each with its
    set's class names one per line; training splits give none."""
    from pipeline.data.layouts import IndexRow, write_index
    from pipeline.demo.app import eval_examples

    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i in range(5):
        Image.new("RGB", (8, 8)).save(images / f"{i}.png")
        rows.append(IndexRow(i, f"{i}.png", f"{i}.png", 8, 8))
    write_index(tmp_path / "index.parquet", rows)
    (tmp_path / "classes.json").write_text('{"classes": ["sky", "grass, lawn"]}')
    split = {"image_dir": str(images), "label_dir": str(images),
             "index": str(tmp_path / "index.parquet"), "classes": str(tmp_path / "classes.json")}
    (tmp_path / "splits.json").write_text(json.dumps({"splits": {
        "train": {**split, "role": "train"}, "world_full": {**split, "role": "eval"}}}))
    examples = eval_examples(tmp_path / "splits.json", per_set=3)
    assert [Path(e.image).name for e in examples] == ["0.png", "1.png", "2.png"]
    assert all(e.classes == "sky\ngrass, lawn" for e in examples)
    assert eval_examples(tmp_path / "missing.json") == []


def test_ovseg_demo_serves_the_page_until_stopped(tiny_models, tmp_path):
    """`ovseg demo` as a user starts it: the page answers on 127.0.0.1 and names the
    models it serves and the device."""
    port = free_port()
    command = [sys.executable, "-m", "pipeline.ovseg", "demo", "--port", str(port),
               "--proposals", str(tiny_models / "proposals"), "--adapted",
               str(tiny_models / "adapted"), "--base-clip", str(tiny_models / "clip_base"),
               "--params", str(tmp_path / "no-params.yaml"), "--splits",
               str(tmp_path / "no-splits.json")]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline, config = time.monotonic() + 180, None
        while config is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as r:
                    config = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert config is not None, server.stdout.read() if server.poll() is not None else ""
        assert "Serving" in config and str(tiny_models / "proposals") in config
        assert "**cpu**" in config
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_page_left_open_keeps_only_its_last_answers(page, photo):
    from pipeline.demo.app import ANSWERS_KEPT

    blocks, client, _ = page
    demo_page = blocks.fns[0].fn.__self__
    for k in range(ANSWERS_KEPT + 3):
        segment(client, photo, ensemble_lambda=round(0.05 * (k % 20), 2))
    kept = [p for p in demo_page.out_dir.iterdir() if p.is_dir()]
    assert len(kept) == ANSWERS_KEPT and all(len(list(p.iterdir())) == 3 for p in kept)
