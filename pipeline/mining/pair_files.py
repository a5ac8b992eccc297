"""The pairs on disk: `data/pairs.parquet` (pipeline/mining/pairs.py's PAIR_SCHEMA) and a
mining chunk's folder (its pairs and its checked / correct counts), merged in chunk order
into the stage's output, so any number of processes writes the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data.files import json_bytes
from pipeline.mining.pairs import PAIR_SCHEMA

PAIRS_FILE, COUNTS_FILE = "pairs.parquet", "counts.json"  # in a chunk's folder


def write_pair_chunk(folder: Path, columns: dict[str, list], checked: int, correct: int,
                     row_group_size: int) -> None:
    write_pairs(folder / PAIRS_FILE, columns, row_group_size)
    (folder / COUNTS_FILE).write_bytes(json_bytes({"checked": checked, "correct": correct}))


def merge_chunk_folders(folders: list[Path]) -> tuple[dict[str, list], int, int]:
    """`merge_pair_chunks` of the chunk folders, in the order given."""
    return merge_pair_chunks([Path(f) / PAIRS_FILE for f in folders],
                             [Path(f) / COUNTS_FILE for f in folders])


def merge_pair_chunks(pair_files: list[Path], count_files: list[Path]
                      ) -> tuple[dict[str, list], int, int]:
    """The PAIR_SCHEMA columns of the chunks' pair files, in chunk order, and their summed
    checked and correct pair counts (each chunk's counts.json)."""
    columns = {name: [] for name in PAIR_SCHEMA.names}
    checked = correct = 0
    for pairs, counts in zip(pair_files, count_files):
        for name, values in pq.read_table(pairs).to_pydict().items():
            columns[name].extend(values)
        c = json.loads(Path(counts).read_text())
        checked, correct = checked + c["checked"], correct + c["correct"]
    return columns, checked, correct


def write_pairs(path: Path, columns: dict[str, list], row_group_size: int) -> None:
    """The pairs parquet, written to a temporary sibling and renamed into place."""
    path = Path(path)
    table = pa.table(columns, schema=PAIR_SCHEMA)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, row_group_size=row_group_size, compression="zstd")
    tmp.replace(path)
