"""Stage check_params: validate the whole params file before any other stage runs.

DVC deletes a stage's outputs before it runs the stage's command, so a bad value caught
inside, say, prompt_tune would already have cost `models/mask_prompts`. Every stage
depends on this stage's marker file, which DVC therefore runs first: a rejected value
stops `dvc repro` / `dvc exp run` here, with every output still in place. The marker's
bytes never change, so a valid params change re-runs only the stages that read it.

    python -m stages.check_params --params params.yaml --out data/params_checked
"""

from __future__ import annotations

import sys

from pipeline.data.files import staged_outputs
from pipeline.params import ParamsError, load_params
from pipeline.params.checks import check_across_sections, real_data_warnings
from stages._start import stage_arguments

MARKER = b"params.yaml passed pipeline/params/schema.py and pipeline/params/checks.py\n"


def main(argv=None) -> int:
    args = stage_arguments(__doc__, argv, ("--params", "--out"))  # params: loaded below
    try:
        params = load_params(args.params)
        check_across_sections(params)
    except ParamsError as e:
        print(f"error: {e}\nNo stage ran and no output was touched. Fix the value, or restore "
              f"the file with `git checkout {args.params}`.", file=sys.stderr)
        return 2
    with staged_outputs(args.out) as (out,):
        out.write_bytes(MARKER)
    for warning in real_data_warnings(params):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.params}: every key valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
