"""The demo page (`ovseg demo`): any image, any class names, the pipeline's own models.

A Gradio page on 127.0.0.1: upload or pick an image, type class names, and see the overlay
with its legend, each class's share of the image, the proposals on their own, and sliders
for λ and the mask threshold (pipeline/demo/session.py says what each re-runs). Input the
page cannot segment gets a message on the page; so do missing models, with the command
that makes them.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from pipeline.demo.session import DemoInputError, DemoResult, DemoSession

# The page makes no calls outside this machine (Gradio would report usage otherwise).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

MAKE_MODELS = "`make repro` (or `.venv/bin/dvc repro`)"
ANSWERS_KEPT = 16  # the page's last answers whose PNGs stay on disk (Gradio copies them)
EXAMPLES_PER_SET = 3


def image_file_box(**kwargs) -> gr.Image:
    """Gradio's image box, handing the function the uploaded file's path without opening
    it: a file that does not decode then reaches the session, which says so on the page
    (gr.Image's own preprocess opens the file first and shows a bare "Error"). Set on the
    instance: a subclass of a Gradio component makes Gradio write a .pyi stub beside this
    file at import."""
    box = gr.Image(type="filepath", **kwargs)
    box.preprocess = lambda payload: None if payload is None else str(payload.path)
    return box


@dataclass
class Example:
    image: str
    classes: str  # the page's class-name box: one class per line


def eval_examples(splits_path: str | Path = "data/index/splits.json",
                  per_set: int = EXAMPLES_PER_SET) -> list[Example]:
    """The first images of each evaluation set in the prepared index, each with its set's
    class names; none when the data is not prepared."""
    from pipeline.data.class_lists import load_class_list
    from pipeline.data.layouts import iter_index, read_splits

    try:
        splits = read_splits(splits_path)
    except (OSError, ValueError):
        return []
    out = []
    for split in splits.values():
        if split.role != "eval":
            continue
        try:
            names = load_class_list(split.classes).names
            rows = list(islice(iter_index(split.index), per_set))
        except (OSError, ValueError):
            continue
        out += [Example(str(Path(split.image_dir) / r.file_name), "\n".join(names))
                for r in rows if (Path(split.image_dir) / r.file_name).is_file()]
    return out


def legend_html(result: DemoResult) -> str:
    """The classes present, largest share first: a swatch of the overlay's colour, the
    name and the share of the image's pixels."""
    rows = "".join(
        f'<li class="ovseg-legend-row" data-class="{r.index}" data-share="{r.share:.6f}">'
        f'<span style="display:inline-block;width:1em;height:1em;background:{r.colour};'
        f'margin-right:.5em;vertical-align:middle"></span>'
        f'{html.escape(r.name)} <b>{100 * r.share:.1f}%</b></li>' for r in result.legend)
    return f'<ul class="ovseg-legend" style="list-style:none;padding:0">{rows}</ul>'


def message_only(message: str) -> tuple:
    """The page's outputs when it cannot segment: the message, every picture empty."""
    return message, None, "", None, None


class DemoPage:
    """The page's one function, around a DemoSession (or the reason there is none)."""

    def __init__(self, session: DemoSession | None, missing: str | None = None):
        self.session, self.missing = session, missing
        self.out_dir = Path(tempfile.mkdtemp(prefix="ovseg-demo-"))
        self.answers: deque[Path] = deque()

    def run(self, image_path, names_text, ensemble_lambda, mask_threshold):
        """-> (message, overlay PNG path, legend HTML, label map PNG path, proposals PNG
        path); on bad input only the message, the rest empty."""
        if self.session is None:
            return message_only(f"**Models missing.** {self.missing}")
        try:
            result = self.session.segment(image_path, names_text, float(ensemble_lambda),
                                          float(mask_threshold))
        except DemoInputError as e:
            return message_only(f"**{e}**")
        except Exception as e:  # the page says it in one line; the console keeps the trace
            logging.getLogger(__name__).exception("segmentation failed")
            first = (str(e).splitlines() or [""])[0]
            return message_only(f"**Segmentation failed** ({type(e).__name__}: {first})")
        stem = Path(image_path).stem
        folder = Path(tempfile.mkdtemp(dir=self.out_dir))  # one per answer: no overwrites
        self.answers.append(folder)
        while len(self.answers) > ANSWERS_KEPT:  # a page left open does not fill the disk
            shutil.rmtree(self.answers.popleft(), ignore_errors=True)
        paths = []
        for kind, data in (("overlay", result.overlay_png), ("labels", result.labels_png),
                           ("proposals", result.proposals_png)):
            paths.append(folder / f"{stem}_{kind}.png")
            paths[-1].write_bytes(data)
        return result.note, str(paths[0]), legend_html(result), str(paths[1]), str(paths[2])


def build_page(page: DemoPage, about: str, examples: list[Example], ensemble_lambda: float,
               mask_threshold: float) -> gr.Blocks:
    with gr.Blocks(title="OVSeg demo", analytics_enabled=False) as blocks:
        gr.Markdown(f"# Open-vocabulary segmentation (OVSeg)\n{about}")
        with gr.Row():
            with gr.Column():
                image = image_file_box(label="Image", sources=["upload"], elem_id="ovseg-image")
                names = gr.Textbox(label="Class names: one per line (synonyms "
                                   "comma-separated), or comma-separated on one line",
                                   lines=6, placeholder="sky\ngrass, lawn\nteapot",
                                   elem_id="ovseg-names")
                lam = gr.Slider(0, 1, value=ensemble_lambda, step=0.05,
                                label="λ: CLIP's share of the ensemble")
                threshold = gr.Slider(0.05, 0.95, value=mask_threshold, step=0.05,
                                      label="Mask threshold of CLIP's crops")
                button = gr.Button("Segment", variant="primary", elem_id="ovseg-segment")
                if examples:
                    gr.Examples([[e.image, e.classes] for e in examples], [image, names],
                                label="Evaluation images")
            with gr.Column():
                message = gr.Markdown(elem_id="ovseg-message")
                overlay = gr.Image(label="Segmentation", type="filepath", format="png",
                                   interactive=False)
                legend = gr.HTML(elem_id="ovseg-legend")
                labels = gr.File(label="Label map (PNG, class index per pixel)",
                                 interactive=False)
                proposals = gr.Image(label="Proposals", type="filepath", format="png",
                                     interactive=False)
        inputs = [image, names, lam, threshold]
        outputs = [message, overlay, legend, labels, proposals]
        button.click(page.run, inputs, outputs, api_name="segment")
        for slider in (lam, threshold):
            slider.release(page.run, inputs, outputs, api_name=False)
    return blocks


def open_page(proposals_dir: str, adapted_dir: str, base_clip_dir: str, params_path: str,
              max_pixels: int, splits_path: str = "data/index/splits.json",
              text_cache: str = ".cache/text_classifiers") -> gr.Blocks:
    """The page for these model folders and params (eval.* and compute.device), the
    models loaded once; when they cannot be, a page that says why and how to make them."""
    from safetensors import SafetensorError

    from pipeline.distributed.device import select_device
    from pipeline.segment.cli import params_or_defaults
    from pipeline.segment.segmenter import (
        load_segmenter_models,
        models_dtype,
        segmenter_settings,
    )

    params = params_or_defaults(params_path)
    settings = segmenter_settings(params)
    device = select_device(params.compute.device)
    folders = f"`{proposals_dir}`, `{adapted_dir}` (its CLIP from `{base_clip_dir}`)"
    session, missing = None, None
    try:
        models = load_segmenter_models(proposals_dir, adapted_dir, base_clip_dir, text_cache,
                                       params.eval.dtype, params.clip.templates, device,
                                       settings.precision)
        session = DemoSession(models, settings, max_pixels)
    except FileNotFoundError as e:
        missing = f"{e}. Make them with {MAKE_MODELS}, or point `ovseg demo` at other " \
                  "folders (`--proposals`, `--adapted`, `--base-clip`)."
    except (ValueError, SafetensorError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        missing = f"A model file is unusable ({first}): re-run its stage with {MAKE_MODELS}."
    about = (f"Serving {folders} on **{device}** ({models_dtype(models)}). "
             if session else f"**No models loaded** from {folders}. ")
    about += "λ re-fuses at once; a new mask threshold re-runs CLIP on the new crops."
    return build_page(DemoPage(session, missing), about, eval_examples(splits_path),
                      settings.ensemble_lambda, settings.mask_threshold)
