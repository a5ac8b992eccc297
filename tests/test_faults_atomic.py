"""Nothing half-written (issue 12 item 6): a stage writes all its outputs or none
(pipeline/data/files.py, staged_outputs).

(a) the mechanism on its own; (b) the real stages, run in-process on a tiny pipeline with
the commands of dvc.yaml, each made to fail at its last write: its previous outputs stay
byte-identical, no temporary file is ever inside an output folder (not even while the
stage runs, so a killed run leaves none there), its resume checkpoint stays, and a
successful run afterwards puts complete outputs in place and leaves no temporary behind.
"""

from __future__ import annotations

import importlib
import json
import shlex
from pathlib import Path

import pytest
import yaml

from pipeline.data.files import staged_outputs
from tests.conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


class Failure(Exception):
    pass


def tree(*paths: Path) -> dict[str, bytes]:
    """Every file at or under `paths` (dot-files included) -> its bytes."""
    out = {}
    for p in map(Path, paths):
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        out.update({str(f): f.read_bytes() for f in files})
    return out


def strays(root: Path) -> list[str]:
    """Temporaries (`.<name>.tmp`, `.<name>.old`, or any dot-file) under root."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*")
                  if not p.relative_to(root).parts[0].startswith("."))


# (a) the mechanism

def old_outputs(tmp_path: Path) -> tuple[Path, Path]:
    folder, file = tmp_path / "out" / "model", tmp_path / "out" / "metrics.json"
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"old weights")
    (folder / "old_only.txt").write_bytes(b"gone after a success")
    file.write_bytes(b"old metrics")
    return folder, file


def test_success_replaces_every_output(tmp_path):
    folder, file = old_outputs(tmp_path)
    with staged_outputs(folder, file) as (f_tmp, m_tmp):
        assert (f_tmp, m_tmp) == (folder.with_name(".model.tmp"),
                                  file.with_name(".metrics.json.tmp"))
        f_tmp.mkdir()
        (f_tmp / "weights.bin").write_bytes(b"new weights")
        m_tmp.write_bytes(b"new metrics")
        assert tree(folder, file)[str(file)] == b"old metrics"  # nothing moves until the end
    assert tree(folder, file) == {str(folder / "weights.bin"): b"new weights",
                                  str(file): b"new metrics"}
    assert strays(tmp_path) == []


def test_an_exception_leaves_every_output_byte_identical(tmp_path):
    folder, file = old_outputs(tmp_path)
    before = tree(folder, file)
    with pytest.raises(Failure), staged_outputs(folder, file) as (f_tmp, m_tmp):
        f_tmp.mkdir()
        (f_tmp / "weights.bin").write_bytes(b"new weights")
        m_tmp.write_bytes(b"new")
        raise Failure
    assert tree(folder, file) == before and strays(tmp_path) == []


def test_temporaries_of_a_killed_run_are_cleared_and_unwritten_outputs_kept(tmp_path):
    folder, file = old_outputs(tmp_path)
    (tmp_path / "out" / ".model.tmp").mkdir()  # what a SIGKILL leaves
    (tmp_path / "out" / ".model.tmp" / "half").write_bytes(b"x")
    (tmp_path / "out" / ".metrics.json.old").write_bytes(b"x")
    with staged_outputs(folder, file) as (_, m_tmp):
        m_tmp.write_bytes(b"new metrics")  # the folder is not written this time
    assert tree(folder)[str(folder / "weights.bin")] == b"old weights"
    assert file.read_bytes() == b"new metrics" and strays(tmp_path) == []


def test_staging_keeps_temporaries_out_of_a_shared_folder(tmp_path):
    shared = tmp_path / "proposals"
    shared.mkdir()
    (shared / "part-0").write_bytes(b"another machine's part")
    with staged_outputs(shared / "part-1", staging=tmp_path) as (tmp,):
        assert tmp.parent == tmp_path
        tmp.write_bytes(b"this part")
        assert [p.name for p in shared.iterdir()] == ["part-0"]
    assert tree(shared) == {str(shared / "part-0"): b"another machine's part",
                            str(shared / "part-1"): b"this part"}


# (b) the stages on a tiny pipeline

TINY = {  # the whole pipeline in about 20 s on one core
    # 3 chunks of extraction: the merge is exercised; 2-step nets label every pixel with
    # one class, which evaluate would stop at (compute.empty_outputs: stop)
    "compute": {"chunk_images": 16, "empty_outputs": "warn"},
    "data": {"train_images": 48, "eval_images": 4, "probe_images": 16, "workers": 1},
    "clip": {"steps": 2, "batch_size": 8, "warmup_steps": 1, "control_steps": 5},
    "proposals": {"steps": 2, "batch_size": 4, "warmup_steps": 1, "recall_images": 4,
                  "checkpoint_every": 1, "row_group_size": 16},
    "mine": {"max_images": 16, "masks": "gt"},  # a 2-step proposal net finds no pairs
    "shards": {"min_shards": 2},
    "adapt": {"shuffle_buffer": 20, "eval_batch_size": 16, "mpt_only_row": False},
    "ft": {"epochs": 1, "batch_size": 8, "warmup_steps": 1, "checkpoint_every": 1},
    "mpt": {"epochs": 1, "batch_size": 8, "warmup_steps": 1, "checkpoint_every": 1},
    "eval": {"max_images": 2, "overlays": 1, "images_per_batch": 2, "batch_size": 16},
}
for _section in ("clip", "proposals", "mine", "shards", "adapt", "eval"):
    TINY[_section]["threads"] = 1  # tiny tensors: more threads only contend

PIPELINE = ["check_params", "prepare_data", "base_clip", "train_proposals",
            "extract_proposals", "mine_pairs", "write_shards", "finetune", "prompt_tune",
            "adaptation_report", "evaluate@world_full"]


def stage_call(name: str, *extra: str):
    """(stage module, argv) of a stage's dvc.yaml cmd (`python -m stages.x ...`)."""
    base, _, item = name.partition("@")
    words = shlex.split(STAGES[base]["cmd"].replace("${item.dataset}", item))
    at = words.index("-m")
    return importlib.import_module(words[at + 1]), words[at + 2:] + list(extra)


LIVE = Path("metrics/live")  # the training stages' DVCLive logs


def outputs(name: str, live: bool = False) -> list[Path]:
    """The stage's outputs in dvc.yaml; without its DVCLive log (under metrics/live/),
    which is written as the steps run, by design, unless `live`."""
    entry, item = STAGES[name.partition("@")[0]], name.partition("@")[2]
    paths = [Path((next(iter(o)) if isinstance(o, dict) else o).replace("${item.dataset}", item))
             for key in ("outs", "metrics", "plots") for o in entry.get(key, [])]
    return [p for p in paths if live or LIVE not in p.parents]


def run_tiny_pipeline(work: Path, stages: list[str], overrides: dict | None = None) -> None:
    """params.yaml with TINY (then `overrides`, section by section) in `work`, and `stages`
    run there in this process, in order."""
    from pipeline.mining.nltk_setup import wordnet_reader

    if wordnet_reader() is None:
        pytest.fail("WordNet is not installed: run `make nltk` (see README)")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for values in (TINY, overrides or {}):
        for section, section_values in values.items():
            params[section].update(section_values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # the cmds' paths are relative to the repository, as under dvc
        for name in stages:
            module, argv = stage_call(name)
            module.main(argv)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    run_tiny_pipeline(work, PIPELINE)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        yield work


def failing_at_call(real, k: int, watched: list[Path], seen: dict):
    """`real`, except that its k-th call records the output folders' files at that moment
    (as a kill would leave them) and which outputs have a staged temporary, then raises."""
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] < k:
            return real(*args, **kwargs)
        seen["during"] = tree(*[p for p in watched if p.exists()])
        seen["staged"] = [p for p in watched if p.with_name(f".{p.name}.tmp").exists()]
        raise Failure

    return wrapper


# stage -> its resume checkpoint (kept by a failure) and the late call made to fail
LATE = {
    "base_clip": (None, "write_json", 1),  # the metrics, after the model and loss log
    "train_proposals": ("data/tmp/train_proposals/last.pt", "write_proposal_loss_png", 1),
    "extract_proposals": (None, "write_json", 1),  # the metrics, after every part
    "mine_pairs": (None, "write_json", 1),  # the metrics, after the pairs
    "write_shards": (None, "write_json", 1),  # sizes.json, after every shard
    "finetune": ("data/tmp/finetune/last.pt", "write_json", 2),  # metrics, after the model
    "prompt_tune": ("data/tmp/prompt_tune", "write_json", 1),
    "adaptation_report": (None, "write_json", 1),
    "evaluate@world_full": (None, "atomic_write_bytes", 4),  # the predictions picture
}


@pytest.mark.parametrize("name", list(LATE))
def test_a_stage_failing_at_its_last_write_changes_nothing(name, tiny, monkeypatch):
    checkpoint, late, k = LATE[name]
    outs = outputs(name)
    before = tree(*outs)
    assert before and strays(tiny) == []
    module, argv = stage_call(name)
    seen = {}
    monkeypatch.setattr(module, late, failing_at_call(getattr(module, late), k, outs, seen))
    with pytest.raises(Failure):
        module.main(argv)
    # (a stage of one output fails as it writes that output: nothing is staged yet)
    assert seen["staged"] or len(outs) == 1, f"{late} call {k} of {name} comes too early"
    assert seen["during"] == before  # nothing inside the outputs, even while it runs
    assert tree(*outs) == before and strays(tiny) == []
    if checkpoint:
        assert Path(checkpoint).exists()  # a rerun resumes rather than starts again
    monkeypatch.undo()
    module.main(argv)
    after = tree(*outs)
    assert set(after) == set(before) and strays(tiny) == []
    if not checkpoint:
        assert comparable(after) == comparable(before)
    else:  # a resumed run matches a straight one to rounding, not in bytes
        assert not Path(checkpoint).exists()
        for f in before:
            assert_close_outputs(f, before[f], after[f])


@pytest.mark.parametrize("strictness", ["stop", "warn"])
def test_an_extraction_without_any_proposal_stops_or_warns_as_asked(strictness, tiny, capsys):
    """compute.empty_outputs (issue 30): no proposal in any image stops extract_proposals
    before it writes anything, naming the cause and the switch; `warn` writes the empty
    proposals and says the same on stderr."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    changed = dict(params, compute={**params["compute"], "empty_outputs": strictness},
                   proposals={**params["proposals"], "min_score": 1.0})  # every score < 1
    Path("empty.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    module, argv = stage_call("extract_proposals")
    argv[argv.index("--params") + 1] = "empty.yaml"
    outs = outputs("extract_proposals")
    before = tree(*outs)
    if strictness == "stop":
        with pytest.raises(SystemExit, match="proposed no mask for any of 48 images") as stop:
            module.main(argv)
        assert "compute.empty_outputs=warn" in str(stop.value)
        assert tree(*outs) == before and strays(tiny) == []
        return
    try:
        module.main(argv)
        assert "warning: extract_proposals: the proposal net proposed no mask" in \
            capsys.readouterr().err
        metrics = json.loads(Path("metrics/proposals.json").read_text())
        assert metrics["train"]["proposals_per_image"] == 0.0
    finally:  # the other tests read the tiny pipeline's own proposals
        module.main([a if a != "empty.yaml" else "params.yaml" for a in argv])
    assert tree(*outs) == before


def live_rows(stage: str) -> dict[str, list[tuple[int, float]]]:
    """A stage's DVCLive log: each plotted value's (step, value) rows."""
    plots = LIVE / stage / "plots" / "metrics"
    out = {}
    for tsv in sorted(plots.glob("*.tsv")):
        header, *lines = tsv.read_text().splitlines()
        assert header == f"step\t{tsv.stem}", tsv
        out[tsv.stem] = [(int(s), float(v)) for s, v in (line.split("\t") for line in lines)]
    return out


@pytest.mark.parametrize("stage", ["train_proposals", "finetune", "prompt_tune"])
def test_a_stage_killed_mid_training_resumes_its_log_with_each_step_once(stage, tiny,
                                                                         monkeypatch):
    """Killed as it logs its second step (the first is checkpointed: checkpoint_every 1),
    the stage's rerun resumes from the checkpoint and its DVCLive log holds every step
    once, in order, with the values of a run never killed (to rounding)."""
    from pipeline.training.live_log import TrainingLog

    straight = live_rows(stage)
    steps = len(straight["loss"])
    assert steps >= 2 and [s for s, _ in straight["loss"]] == list(range(steps))
    module, argv = stage_call(stage)
    real_log, calls = TrainingLog.log, [0]

    def killed_at_second_step(self, row):
        calls[0] += 1
        if calls[0] == 2:
            raise Failure
        real_log(self, row)

    monkeypatch.setattr(TrainingLog, "log", killed_at_second_step)
    with pytest.raises(Failure):
        module.main(argv)
    assert [s for s, _ in live_rows(stage)["loss"]] == [0]  # what the kill leaves
    monkeypatch.undo()
    module.main(argv)
    resumed = live_rows(stage)
    assert resumed.keys() == straight.keys()
    for name, rows in straight.items():
        assert [s for s, _ in resumed[name]] == list(range(steps)), name
        assert _close([v for _, v in resumed[name]], [v for _, v in rows], 1e-3), name
    summary = json.loads((LIVE / stage / "metrics.json").read_text())
    assert summary["step"] == steps - 1 and summary["loss"] == resumed["loss"][-1][1]


def test_a_stage_that_trains_nothing_leaves_an_empty_log(tiny):
    """FT off: the finetune stage's DVCLive log still exists (DVC wants every declared
    output), one header-only TSV per value and a summary saying no step ran."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    Path("no_ft.yaml").write_text(yaml.safe_dump(
        dict(params, ft={**params["ft"], "enabled": False}), sort_keys=False))
    module, argv = stage_call("finetune")
    try:
        module.main([a if a != "params.yaml" else "no_ft.yaml" for a in argv])
        assert live_rows("finetune") == {"loss": [], "clip_lr": [], "prompt_lr": []}
        assert json.loads((LIVE / "finetune" / "metrics.json").read_text()) == {"steps": 0}
    finally:  # the other tests read the tiny pipeline's own FT
        module.main(argv)


TIMING_KEYS = ("seconds", "train_seconds", "samples_per_second")  # wall clock, not results


def without_timings(value):
    """A JSON value with every wall-clock field removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def comparable(files: dict[str, bytes]) -> dict[str, bytes]:
    """Output bytes, the JSON metrics without their wall-clock fields (mining.json's merged
    pair counts and precision are compared, its "seconds" is not)."""
    out = {}
    for name, data in files.items():
        if name.endswith(".json") and any(f'"{k}"'.encode() in data for k in TIMING_KEYS):
            data = json.dumps(without_timings(json.loads(data)), sort_keys=True).encode()
        out[name] = data
    return out


def assert_close_outputs(name: str, want: bytes, got: bytes, rtol: float = 1e-3) -> None:
    """Two versions of an output file agree to rounding: the weights of a safetensors file
    and the numbers of a JSON (wall-clock fields aside) or CSV file; pictures are not
    compared (a curve moved by rounding moves pixels), other files byte for byte."""
    import torch
    from safetensors.torch import load

    if name.endswith(".png"):
        return
    if name.endswith(".safetensors"):
        a, b = load(want), load(got)
        assert a.keys() == b.keys(), name
        for k in a:
            assert torch.allclose(a[k].float(), b[k].float(), rtol=rtol, atol=1e-5), (name, k)
    elif name.endswith(".json"):
        a, b = (without_timings(json.loads(x)) for x in (want, got))
        assert _close(a, b, rtol), name
    elif name.endswith(".csv"):
        rows = [[r.split(",") for r in x.decode().strip().splitlines()] for x in (want, got)]
        assert len(rows[0]) == len(rows[1]), name

        def cell(c: str):
            try:
                return float(c)
            except ValueError:
                return c  # a phase name

        assert _close([[cell(c) for c in r] for r in rows[0]],
                      [[cell(c) for c in r] for r in rows[1]], rtol), name
    else:
        assert want == got, name


def _close(a, b, rtol: float) -> bool:
    """JSON values equal, numbers to `rtol`."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rtol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= rtol * max(abs(a), abs(b), 1e-12)
    return a == b


def test_tree_digest_follows_every_byte_and_name_not_the_writing_order(tmp_path):
    from pipeline.data.digests import tree_digest

    a, b = tmp_path / "a", tmp_path / "b"
    for root, order in ((a, ("x/1.png", "y.jpg")), (b, ("y.jpg", "x/1.png"))):
        for name in order:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(name.encode() * 3)
    assert tree_digest(a) == tree_digest(b)
    assert tree_digest(a)["files"] == 2 and tree_digest(a)["bytes"] == 3 * (7 + 5)
    (b / "y.jpg").write_bytes(b"y.jpgy.jpgy.jph")  # one byte
    assert tree_digest(a)["sha256"] != tree_digest(b)["sha256"]
    (b / "y.jpg").write_bytes(b"y.jpg" * 3)
    (b / "y.jpg").rename(b / "z.jpg")  # one name
    assert tree_digest(a)["sha256"] != tree_digest(b)["sha256"]


def test_train_proposals_with_loader_processes_writes_the_same_model(tiny):
    """proposals.loader_workers: 2 processes read and augment the batches ahead of the
    step; the stage writes the model of the plain loader, byte for byte."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    Path("workers.yaml").write_text(yaml.safe_dump(
        dict(params, proposals={**params["proposals"], "loader_workers": 2}), sort_keys=False))
    module, argv = stage_call("train_proposals")
    elsewhere = {"params.yaml": "workers.yaml", "models/proposals": "models/proposals_w",
                 "data/tmp/train_proposals/last.pt": "data/tmp/proposals_w/last.pt",
                 "metrics/live/train_proposals": "metrics/live/proposals_w",
                 "metrics/proposals_loss.png": "metrics/proposals_w_loss.png"}
    assert set(elsewhere) <= set(argv)
    module.main([elsewhere.get(a, a) for a in argv])

    def files(folder):
        return {p.relative_to(folder): b for p, b in
                ((Path(k), v) for k, v in tree(Path(folder)).items())}

    assert files("models/proposals_w") == files("models/proposals")
    assert files("metrics/live/proposals_w") == files("metrics/live/train_proposals")
