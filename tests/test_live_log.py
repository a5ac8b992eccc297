"""The training stages' step log through DVCLive (pipeline/training/live_log.py): the files
DVC reads as plots and metrics, the same bytes for the same rows, a replayed resume equal
to a straight run, and nothing written by the ranks that do not log."""

from __future__ import annotations

import json

import pytest

from pipeline.training.live_log import TrainingLog, training_log

FIELDS = {"step": "", "phase": "", "loss": ".5f", "lr": ".6g"}
ROWS = [{"step": k, "phase": "ft" if k < 3 else "mpt", "loss": 3.0 / (k + 1),
         "lr": 1e-4 * (k + 1) / 7} for k in range(6)]


@pytest.fixture(autouse=True)
def outside_any_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # DVCLive looks for a DVC/Git repository from here


def files(directory) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_each_value_is_a_tsv_plot_rounded_by_its_spec_and_the_last_row_a_summary(tmp_path):
    with training_log(tmp_path / "live", FIELDS) as log:
        for row in ROWS:
            log.log(row)
    got = files(tmp_path / "live")
    assert set(got) == {"metrics.json", "plots/metrics/loss.tsv", "plots/metrics/lr.tsv"}
    assert got["plots/metrics/loss.tsv"].decode().splitlines() == ["step\tloss"] + [
        f"{k}\t{float(format(r['loss'], '.5f'))}" for k, r in enumerate(ROWS)]
    lrs = [float(line.split("\t")[1]) for line in
           got["plots/metrics/lr.tsv"].decode().splitlines()[1:]]
    assert lrs == [float(format(r["lr"], ".6g")) for r in ROWS]
    # the phase, a string, is in the summary only; no timestamp anywhere
    assert json.loads(got["metrics.json"]) == {"phase": "mpt", "loss": 0.5,
                                               "lr": float(format(ROWS[-1]["lr"], ".6g")),
                                               "step": 5}
    assert b"timestamp" not in b"".join(got.values())


def test_the_same_rows_give_the_same_bytes_and_a_new_log_clears_the_old(tmp_path):
    for name in ("a", "b"):
        with training_log(tmp_path / name, FIELDS) as log:
            log.replay(ROWS)
    with training_log(tmp_path / "b", FIELDS) as log:  # a second, shorter run in b
        log.replay(ROWS[:2])
    with training_log(tmp_path / "c", FIELDS) as log:
        log.replay(ROWS[:2])
    assert files(tmp_path / "b") == files(tmp_path / "c")
    assert files(tmp_path / "a") != files(tmp_path / "c")


def test_a_resume_replays_the_checkpoint_then_goes_on_as_a_straight_run(tmp_path):
    """Killed after 4 logged steps with 3 checkpointed: the rerun starts a new log, replays
    the 3 and logs the rest; its bytes are the straight run's (each step once)."""
    with training_log(tmp_path / "straight", FIELDS) as log:
        log.replay(ROWS)
    killed = TrainingLog(tmp_path / "resumed", FIELDS)
    killed.replay(ROWS[:4])  # no close: a kill
    with training_log(tmp_path / "resumed", FIELDS) as log:
        log.replay(ROWS[:3])  # the checkpoint's rows
        for row in ROWS[3:]:
            log.log(row)
    assert files(tmp_path / "resumed") == files(tmp_path / "straight")


def test_no_steps_leave_header_only_plots_and_a_summary_saying_so(tmp_path):
    with training_log(tmp_path / "live", FIELDS):
        pass
    assert files(tmp_path / "live") == {
        "metrics.json": json.dumps({"steps": 0}, indent=4).encode() + b"\n",
        "plots/metrics/loss.tsv": b"step\tloss\n", "plots/metrics/lr.tsv": b"step\tlr\n"}


def test_a_rank_without_a_directory_writes_nothing_but_counts(tmp_path):
    with training_log(None, FIELDS) as log:
        log.replay(ROWS)
    assert log.steps == len(ROWS) and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rows", [ROWS, ROWS[:1], []], ids=["six steps", "one", "none"])
def test_without_dvclive_the_plain_writer_leaves_dvclives_bytes(tmp_path, monkeypatch, rows):
    """A GPU machine without DVC runs the stages with PlainLive instead: the same files."""
    import sys

    for name in ("dvclive", "plain"):
        if name == "plain":  # dvclive cannot be imported now
            monkeypatch.setitem(sys.modules, "dvclive", None)
        (tmp_path / name / "plots" / "metrics").mkdir(parents=True)
        (tmp_path / name / "plots" / "metrics" / "old.tsv").write_text("an older log\n")
        with training_log(tmp_path / name, FIELDS) as log:
            log.replay(rows)
    from pipeline.training import live_log

    assert isinstance(live_log.open_live(tmp_path / "x"), live_log.PlainLive)
    assert files(tmp_path / "plain") == files(tmp_path / "dvclive")
    assert "plots/metrics/old.tsv" not in files(tmp_path / "plain")
