"""The per-step log of a training stage through DVCLive, as DVC users expect it: each
step's values in `<dir>/plots/metrics/<name>.tsv` (columns step and the value; a DVC plot,
so `dvc plots show/diff` and the VS Code extension draw it) and the latest ones in
`<dir>/metrics.json` (a DVC metric, so `dvc exp show` shows a run while it goes), written
as each step ends.

A resumed stage starts its log afresh and replays the steps its checkpoint holds before
going on, so each step is in the log once, as in a run that was never interrupted (DVC
removes a stage's outputs before running it; the checkpoint, not the old log, is what
survives a kill). No timestamps: the same run gives the same bytes.

Where DVCLive is not installed (a GPU machine without DVC runs the stage commands
directly: `make gpu-check`), `PlainLive` writes the same files, byte for byte
(tests/test_live_log.py compares the two), so a stage never stops for want of it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

PLOTS = Path("plots") / "metrics"  # DVCLive's layout under its folder
METRICS_FILE = "metrics.json"


class PlainLive:
    """The part of DVCLive's `Live` a TrainingLog uses, writing DVCLive's files itself:
    each plotted value appended to `plots/metrics/<name>.tsv` (tab-separated step and
    value, header first), the latest values and the step in `metrics.json` (indent 4)
    at each step's end and at the end; a new log clears the folder's old one."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        shutil.rmtree(self.directory / PLOTS, ignore_errors=True)
        (self.directory / METRICS_FILE).unlink(missing_ok=True)
        self.summary: dict = {}
        self.step = 0
        self._stepped = False

    def log_metric(self, name: str, value, plot: bool = True) -> None:
        if plot:
            path = self.directory / PLOTS / f"{name}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            existed = path.exists()
            with open(path, "a", encoding="utf-8", newline="") as f:
                writer = csv.writer(f, delimiter="\t", lineterminator=os.linesep)
                if not existed:
                    writer.writerow(["step", name])
                writer.writerow([self.step, value])
        self.summary[name] = value

    def _write_summary(self) -> None:
        if self._stepped:
            self.summary["step"] = self.step
        path = self.directory / METRICS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.summary, f, indent=4)
            f.write("\n")

    def next_step(self) -> None:
        self._stepped = True
        self._write_summary()
        self.step += 1

    def end(self) -> None:
        if "step" in self.summary:
            self.step = self.summary["step"]
        self._write_summary()


def open_live(directory: str | Path):
    """DVCLive's Live on `directory` where it is installed, else PlainLive."""
    try:
        from dvclive import Live
    except ImportError:
        return PlainLive(directory)
    # resume=False: DVCLive clears the folder's old log first
    return Live(str(directory), resume=False, report=None, save_dvc_exp=False, dvcyaml=None)


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
            self._live = open_live(self.directory)

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
