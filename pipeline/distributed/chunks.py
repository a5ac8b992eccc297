"""Resumable, rank-independent work for the data stages (extract_proposals, mine_pairs,
write_shards).

A stage's images are cut into chunks of `compute.chunk_images`; rank r of w takes a fixed,
contiguous run of chunks. A chunk's results are written into a folder staged as
`.chunk-<c>.tmp` and renamed to `chunk-<c>` when complete, under
`data/tmp/<stage>/<fingerprint>/`: outside the stage's DVC outputs (which DVC deletes
before it runs a stage), and named by a hash of everything the results depend on, so a
rerun after a kill (even kill -9) skips the finished chunks of the same inputs and never
reuses those of other ones. Everything a chunk computes, its batches included, depends only
on its images, never on the rank or the process count; rank 0 then merges the chunks in
order. So one process, eight, or a run killed twice give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.files import remove_path

WORK_ROOT = Path("data/tmp")  # beside train_proposals' and finetune's resume checkpoints


@dataclass(frozen=True)
class Chunks:
    """`n` items cut into chunks of `size` (the last one shorter)."""

    n: int
    size: int

    @property
    def count(self) -> int:
        return -(-self.n // self.size)

    def items(self, chunk: int) -> range:
        return range(chunk * self.size, min((chunk + 1) * self.size, self.n))

    def slice(self, items: list, chunk: int) -> list:
        r = self.items(chunk)
        return items[r.start:r.stop]

    def owned(self, rank: int, world: int) -> range:
        """The chunks rank `rank` of `world` computes: a contiguous run, nearly equal."""
        return range(self.count * rank // world, self.count * (rank + 1) // world)


class ChunkStore:
    """The finished chunks of one stage run, in `root` (`data/tmp/<stage>/<fingerprint>`)."""

    def __init__(self, stage: str, key: str, work_root: str | Path = WORK_ROOT):
        self.stage_dir = Path(work_root) / stage
        self.root = self.stage_dir / key

    def path(self, chunk: int) -> Path:
        return self.root / f"chunk-{chunk:06d}"

    def done(self, chunk: int) -> bool:
        return self.path(chunk).is_dir()

    def compute(self, chunk: int, work: Callable[[Path], None]) -> None:
        """`work(folder)` writes chunk `chunk`'s files into a staged folder, renamed into place
        when it returns; what a killed run left staged is cleared first."""
        final = self.path(chunk)
        tmp = final.with_name(f".{final.name}.tmp")
        remove_path(tmp)
        tmp.mkdir(parents=True)
        work(tmp)
        tmp.rename(final)

    def run(self, chunks: Chunks, rank: int, world: int, work: Callable[[int, Path], None],
            progress: Callable[[Iterable, str], Iterable] | None = None) -> int:
        """Compute this rank's unfinished chunks; returns how many were already done."""
        owned = chunks.owned(rank, world)
        todo = [c for c in owned if not self.done(c)]
        if len(todo) < len(owned):
            print(f"{self.stage_dir.name}: resuming, {len(owned) - len(todo)} of this "
                  f"process's {len(owned)} chunks already done in {self.root}", flush=True)
        for c in (progress(todo, self.stage_dir.name) if progress else todo):
            self.compute(c, lambda folder, c=c: work(c, folder))
        return len(owned) - len(todo)

    def clear(self) -> None:
        """Remove this stage's chunks (of every fingerprint): its outputs are in place."""
        remove_path(self.stage_dir)
