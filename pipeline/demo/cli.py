"""`ovseg demo`: serve the demo page (pipeline/demo/app.py) until Ctrl-C."""

from __future__ import annotations

from pipeline.segment.cli import add_model_args


def demo(args) -> int:
    from pipeline.demo.app import open_page  # Gradio loads only for this command

    blocks = open_page(args.proposals, args.adapted, args.base_clip, args.params,
                       args.max_pixels, args.splits)
    blocks.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False)
    return 0


def add_command(sub) -> None:
    """`demo` on an argparse subparsers object."""
    dm = sub.add_parser("demo", help="a web page on this machine: any image, any class names",
                        description="Serves the demo page (Gradio) with the pipeline's models "
                        "until Ctrl-C; open the address it prints in a browser.")
    add_model_args(dm)
    dm.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (0.0.0.0 lets other machines in)")
    dm.add_argument("--port", type=int, default=7860)
    dm.add_argument("--splits", default="data/index/splits.json",
                    help="prepared index whose evaluation images are the page's examples")
    dm.set_defaults(func=demo)
