"""Make `python` in DVC stage commands mean the project's environment.

dvc.yaml runs each stage as `python -m stages.<name>`. DVC starts that command through the
shell with the caller's PATH, so `.venv/bin/dvc repro` from a shell that has not activated
the environment would run the system's Python, without torch. This writes a `.pth` file
into the environment's site-packages: every interpreter of the environment (dvc's
included) then puts its own `bin/` first on PATH, and the stages' `python` resolves to it.

    .venv/bin/python -m pipeline.venv_path      # run by `make env`
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

PTH_NAME = "ovseg_venv_path.pth"
# One line: site.py executes .pth lines that start with "import".
PTH_LINE = ("import os, sys; b = os.path.dirname(sys.executable); "
            "p = os.environ.get('PATH', ''); "
            "os.environ['PATH'] = p if p.split(os.pathsep)[0] == b else b + os.pathsep + p\n")


def install(site_packages: str | Path | None = None) -> Path:
    if site_packages is None:
        if sys.prefix == sys.base_prefix:
            raise SystemExit("pipeline.venv_path: run it with the virtual environment's python "
                             "(.venv/bin/python), not the system's")
        site_packages = sysconfig.get_paths()["purelib"]
    target = Path(site_packages) / PTH_NAME
    target.write_text(PTH_LINE)
    return target


if __name__ == "__main__":
    print(f"wrote {install()}")
