"""Every GPU and every machine (pipeline/distributed): device selection, the chunk plan,
and the data stages under torchrun with 2 CPU processes (gloo), or killed with SIGKILL in
the middle of a chunk and rerun, writing the same bytes as one uninterrupted process.

The stage runs use the miniature (the tiny pipeline of test_faults_atomic, with chunks of 5
images) so that several chunks and both ranks' shares are exercised in seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.data.digests import fingerprint
from pipeline.data.image_io import encode_jpeg, encode_png
from pipeline.data.shard_writer import (
    ShardPieces,
    ShardSet,
    merge_shard_pieces,
    sample_key,
    shard_name,
    shard_of_samples,
)
from pipeline.distributed.chunks import Chunks, ChunkStore
from pipeline.distributed.device import select_device
from pipeline.distributed.launch import process_count
from tests.conftest import REPO
from tests.test_faults_atomic import comparable, outputs, run_tiny_pipeline, stage_call, tree

DATA_STAGES = ("extract_proposals", "mine_pairs", "write_shards")
TORCHRUN_STAGES = (*DATA_STAGES, "evaluate@world_full")


# the mechanism

@pytest.mark.parametrize("n,size", [(0, 4), (1, 4), (10, 3), (12, 4), (7, 10)])
def test_every_item_is_in_exactly_one_chunk_and_every_chunk_in_one_rank(n, size):
    chunks = Chunks(n, size)
    assert [i for c in range(chunks.count) for i in chunks.items(c)] == list(range(n))
    assert all(len(chunks.items(c)) == size for c in range(chunks.count - 1))
    for world in (1, 2, 3, 5):
        owned = [list(chunks.owned(r, world)) for r in range(world)]
        assert [c for o in owned for c in o] == list(range(chunks.count))  # contiguous runs
        assert max(map(len, owned)) - min(map(len, owned)) <= 1


def test_a_chunk_is_done_only_once_its_folder_is_complete(tmp_path):
    store = ChunkStore("stage", fingerprint(a=1), tmp_path)
    with pytest.raises(RuntimeError):
        store.compute(0, lambda folder: ((folder / "x").write_text("half"),
                                         (_ for _ in ()).throw(RuntimeError("killed"))))
    assert not store.done(0)  # the staged folder is left, as a kill would leave it
    store.compute(0, lambda folder: (folder / "x").write_text("whole"))
    assert store.done(0) and (store.path(0) / "x").read_text() == "whole"
    assert [p.name for p in store.root.iterdir()] == ["chunk-000000"]
    ran = []
    store.run(Chunks(3, 1), 0, 1, lambda c, folder: ran.append(c))
    assert ran == [1, 2]  # chunk 0 was done
    assert ChunkStore("stage", fingerprint(a=2), tmp_path).root != store.root
    store.clear()
    assert not (tmp_path / "stage").exists()


def test_device_auto_falls_back_to_the_cpu_and_cuda_without_a_gpu_says_what_to_do(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert select_device("auto", 3) == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(SystemExit, match="compute.device is cuda.*auto"):
        select_device("cuda")
    assert process_count(0) == 1 and process_count(3) == 3
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert process_count(0) == 8


def sample(g, i):
    crop = g.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return (sample_key(100 + i // 3, i % 3, i), encode_jpeg(crop),
            encode_png((crop[..., 0] > 127).astype(np.uint8) * 255), f"noun{i}", {"i": i})


def test_shards_merged_from_chunk_pieces_are_one_pass_shards_byte_for_byte(tmp_path):
    n, n_shards = 40, 3
    assign = shard_of_samples(n, n_shards, seed=0)
    samples = [sample(np.random.default_rng(i), i) for i in range(n)]
    one = ShardSet(tmp_path / "one", n_shards)
    for i, s in enumerate(samples):
        one.write(int(assign[i]), *s)
    counts = one.close()
    folders = []
    for c, lo in enumerate(range(0, n, 7)):  # chunks of 7 samples
        pieces, folder = ShardPieces(), tmp_path / f"chunk{c}"
        folder.mkdir()
        for i in range(lo, min(lo + 7, n)):
            pieces.write(int(assign[i]), *samples[i])
        pieces.save(folder)
        folders.append(folder)
    (tmp_path / "merged").mkdir()
    assert merge_shard_pieces(folders, n_shards, tmp_path / "merged") == counts
    for s in range(n_shards):
        a = (tmp_path / "one" / shard_name(s)).read_bytes()
        assert (tmp_path / "merged" / shard_name(s)).read_bytes() == a
        assert len(a) % tarfile.RECORDSIZE == 0
        with tarfile.open(tmp_path / "one" / shard_name(s)) as tar:  # a valid tar
            members = tar.getmembers()
            assert len(members) == 4 * counts[s]
            assert {m.mtime for m in members} == {0} and {m.uname for m in members} == {"ovseg"}


# the stages

def run_stage(work: Path, name: str, env_extra: dict | None = None, prelude: str = ""
              ) -> subprocess.CompletedProcess:
    """The stage's dvc.yaml command in `work`, as a new process (with `prelude` run first)."""
    module, argv = stage_call(name)
    code = (f"import runpy, sys\n{prelude}\nsys.argv = {[module.__name__, *argv]!r}\n"
            f"runpy.run_module({module.__name__!r}, run_name='__main__')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-c", code], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)


# SIGKILL in the second chunk this process computes, after its files are written and before
# the chunk is renamed into place: the worst moment, a staged folder that looks complete.
KILL_IN_SECOND_CHUNK = """
import os, signal
from pipeline.distributed import chunks
_compute, _calls = chunks.ChunkStore.compute, [0]
def _dying(self, chunk, work):
    _calls[0] += 1
    if _calls[0] < 2:
        return _compute(self, chunk, work)
    def _then_die(folder):
        work(folder)
        os.kill(os.getpid(), signal.SIGKILL)
    return _compute(self, chunk, _then_die)
chunks.ChunkStore.compute = _dying
"""


def test_comparable_drops_the_timings_and_keeps_the_counts():
    run = {"m.json": b'{"pairs": 12, "seconds": 3.5, "phases": [{"train_seconds": 1}]}',
           "p.parquet": b"PAR1"}
    other = {"m.json": b'{"pairs": 12, "seconds": 9.0, "phases": [{"train_seconds": 7}]}',
             "p.parquet": b"PAR1"}
    assert comparable(run) == comparable(other)
    assert comparable(run) != comparable({**other, "m.json": b'{"pairs": 13, "seconds": 3.5}'})


@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
    """The tiny pipeline in one process, chunks of 5 images, one image per evaluation batch
    (4 batches: both ranks get a share)."""
    work = tmp_path_factory.mktemp("miniature")
    run_tiny_pipeline(work, ["check_params", "prepare_data", "base_clip", "train_proposals",
                             *DATA_STAGES, "finetune", "prompt_tune", "evaluate@world_full"],
                      {"compute": {"chunk_images": 5},
                       "eval": {"images_per_batch": 1, "max_images": 4, "overlays": 3}})
    reference = {name: tree(*[work / p for p in outputs(name)]) for name in TORCHRUN_STAGES}
    assert not (work / "data/tmp/extract_proposals").exists()  # chunks cleared once merged
    return work, reference


def copy_of(work: Path, dest: Path, processes: int = 1) -> Path:
    shutil.copytree(work, dest, symlinks=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["compute"]["processes"] = processes
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def outputs_of(work: Path, name: str) -> dict[str, bytes]:
    return {str(Path(f).relative_to(work)): b
            for f, b in tree(*[work / p for p in outputs(name)]).items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHRUN_STAGES)
def test_two_torchrun_processes_write_the_bytes_of_one(name, miniature, tmp_path):
    work, _ = miniature
    reference = outputs_of(work, name)
    two = copy_of(work, tmp_path / "two", processes=2)
    res = run_stage(two, name)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "2 processes under torchrun" in res.stdout
    assert comparable(outputs_of(two, name)) == comparable(reference)
    assert not (two / "data/tmp" / name.partition("@")[0]).exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", DATA_STAGES)
def test_a_kill_9_mid_chunk_resumes_to_the_bytes_of_an_uninterrupted_run(name, miniature,
                                                                         tmp_path):
    work, _ = miniature
    reference = outputs_of(work, name)
    run = copy_of(work, tmp_path / "run")
    for out in outputs(name):  # as `dvc repro` leaves them: deleted before the command
        shutil.rmtree(run / out) if (run / out).is_dir() else (run / out).unlink()
    killed = run_stage(run, name, prelude=KILL_IN_SECOND_CHUNK)
    assert killed.returncode == -9, killed.stderr[-3000:]
    store = next((run / "data/tmp" / name).iterdir())
    assert [p.name for p in sorted(store.iterdir())] == [".chunk-000001.tmp", "chunk-000000"]
    assert outputs_of(run, name) == {}  # nothing half-written under the outputs' names
    resumed = run_stage(run, name)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming, 1 of this process's" in resumed.stdout
    assert comparable(outputs_of(run, name)) == comparable(reference)
    assert not (run / "data/tmp" / name).exists()
