"""The `ovseg` command: segment your own images with your own class names, look at what
the pipeline produced, or serve the demo page.

    ovseg segment photo.jpg --classes "saturn v, teapot, sky" --out seg/
    ovseg show-proposals --image-id 12 --out proposals.png
    ovseg demo                      # a web page on http://127.0.0.1:7860
"""

from __future__ import annotations

import argparse
import sys

from pipeline.demo import cli as demo_cli
from pipeline.segment import cli as segment_cli


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ovseg", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    segment_cli.add_commands(sub)
    demo_cli.add_command(sub)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
