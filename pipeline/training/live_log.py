"""The per-step log of a training stage through DVCLive, as DVC users expect it: each
step's values in `<dir>/plots/metrics/<name>.tsv` (columns step and the value; a DVC plot,
so `dvc plots show/diff` and the VS Code extension draw it) and the latest ones in
`<dir>/metrics.json` (a DVC metric, so `dvc exp show` shows a run while it goes), written
as each step ends.

A resumed stage starts its log afresh and replays the steps its checkpoint holds before
going on, so each step is in the log once, as in a run that was never interrupted (DVC
removes a stage's outputs before running it; the checkpoint, not the old log, is what
survives a kill). No timestamps: the same run gives the same bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path

PLOTS = Path("plots") / "metrics"  # DVCLive's layout under its folder


class TrainingLog:
    """One stage's DVCLive log. `fields`: each row's key -> format spec. A value with a spec
    is plotted, rounded by its spec (a stable number of digits); one without ("phase") goes
    to metrics.json only. directory None: a log that writes nothing (the ranks of a
    distributed run other than the first)."""

    def __init__(self, directory: str | Path | None, fields: Mapping[str, str]):
        self.directory = None if directory is None else Path(directory)
        self.fields = {k: v for k, v in fields.items() if k != "step"}  # DVCLive's own
        self.steps = 0
        self._live = None
        if self.directory is not None:
            from dvclive import Live

            # resume=False: DVCLive clears the folder's old log first
            self._live = Live(str(self.directory), resume=False, report=None,
                              save_dvc_exp=False, dvcyaml=None)

    def log(self, row: Mapping) -> None:
        """One step's row (a dict with at least the keys of `fields`)."""
        self.steps += 1
        if self._live is None:
            return
        for name, spec in self.fields.items():
            if spec:
                self._live.log_metric(name, float(format(row[name], spec)))
            else:
                self._live.log_metric(name, str(row[name]), plot=False)
        self._live.next_step()

    def replay(self, rows: Iterable[Mapping]) -> None:
        """The rows a resumed checkpoint holds, logged again in order."""
        for row in rows:
            self.log(row)

    def close(self) -> None:
        """Ends the log. A stage that trained no step still leaves every declared output:
        a header-only TSV per plotted value and a metrics.json saying no step ran."""
        if self._live is None:
            return
        if self.steps == 0:
            plots = self.directory / PLOTS
            plots.mkdir(parents=True, exist_ok=True)
            for name in (name for name, spec in self.fields.items() if spec):
                (plots / f"{name}.tsv").write_text(f"step\t{name}\n")
            self._live.summary = {"steps": 0}
        self._live.end()
        self._live = None


@contextlib.contextmanager
def training_log(directory: str | Path | None, fields: Mapping[str, str]):
    """TrainingLog as a context: closed (its summary written) when the block ends."""
    log = TrainingLog(directory, fields)
    try:
        yield log
    finally:
        log.close()
