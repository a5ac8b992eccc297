"""Open the demo page in a real headless browser (Debian's Chromium, driven by Playwright),
segment an image there as a person would, check that the rendered page shows the legend,
and take the screenshot the README shows.

    .venv/bin/python -m pipeline.demo.browser_check --out docs/images/demo.png

Serves the pipeline's own models (`make repro` makes them) and its first evaluation image;
tests/test_demo_browser.py runs the same check on tiny random models.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

# Chromium started as this machine allows: as root (no sandbox), offline (no background
# connections to Google's hosts, each refused), without a GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def chromium_path() -> str | None:
    """Debian's Chromium (package chromium), or any chromium on PATH."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PageSeen:
    message: str  # the page's one-line note after segmenting
    legend: list[str]  # the legend rows as rendered, e.g. "sky 42.0%"
    overlay_shown: bool  # the segmentation picture is on the page


def segment_in_browser(url: str, image: str | Path, class_names: str,
                       screenshot: str | Path | None = None, timeout_s: float = 120
                       ) -> PageSeen:
    """Upload `image`, type `class_names`, press Segment, wait for the legend; what the
    rendered page shows then, and a full-page PNG at `screenshot`."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("no Chromium found: install Debian's chromium package "
                           "(apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url)
            page.locator("#ovseg-image input[type=file]").set_input_files(str(image))
            page.locator("#ovseg-names textarea").fill(class_names)
            page.locator("#ovseg-segment").click()
            rows = page.locator("#ovseg-legend .ovseg-legend-row")
            rows.first.wait_for(state="visible")
            seen = PageSeen(page.locator("#ovseg-message").inner_text().strip(),
                            [t.strip() for t in rows.all_inner_texts()],
                            page.locator("img[src*='_overlay']").count() > 0)
            if screenshot is not None:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            return seen
        finally:
            browser.close()


def main(argv=None) -> int:
    from pipeline.demo.app import eval_examples, open_page
    from pipeline.segment.cli import MAX_PIXELS

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/images/demo.png", help="the screenshot")
    ap.add_argument("--proposals", default="models/proposals")
    ap.add_argument("--adapted", default="models/mask_prompts")
    ap.add_argument("--base-clip", default="models/clip_base")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--splits", default="data/index/splits.json")
    args = ap.parse_args(argv)
    examples = eval_examples(args.splits, per_set=1)
    if not examples:
        print(f"no evaluation images in {args.splits}: run `make repro` first", file=sys.stderr)
        return 2
    blocks = open_page(args.proposals, args.adapted, args.base_clip, args.params, MAX_PIXELS,
                       args.splits)
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                  quiet=True)
    try:
        seen = segment_in_browser(f"http://127.0.0.1:{port}/", examples[0].image,
                                  examples[0].classes, args.out)
    finally:
        blocks.close()
    print(f"{seen.message}\nlegend: {'; '.join(seen.legend)}\nscreenshot: {args.out}")
    return 0 if seen.legend and seen.overlay_shown else 1


if __name__ == "__main__":
    sys.exit(main())
