"""The stages' device RLE path (issue 31), forced on here on the CPU: masks kept as tensors
from the proposal net to the parquet strings, and decoded back as tensors for mining, give
the same parquet bytes and the same pairs as pycocotools on numpy masks (the CPU path)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.data import rle_device
from pipeline.data.image_io import read_labels
from pipeline.data.layouts import Split
from pipeline.data.proposal_table import (
    ImageProposals,
    ProposalWriter,
    gt_proposals,
    host_masks,
    proposals_for_rows,
)
from pipeline.params import MineParams, ProposalParams
from tests.test_pair_mining import mining_inputs
from tests.test_proposal_inference import small_net, write_images
from tests.test_rle_device import blobs


def written_bytes(path, images) -> bytes:
    with ProposalWriter(path, row_group_size=64) as w:
        for p in images:
            w.add(p)
    return path.read_bytes()


def test_tensor_masks_write_the_bytes_of_numpy_masks(tmp_path):
    rng = np.random.default_rng(0)
    images = []
    for i, n in enumerate([5, 0, 100, 3]):  # an image without proposals; a real-shape one
        masks = blobs(rng, n, 48, 64) if n else np.zeros((0, 48, 64), dtype=bool)
        if n:
            masks[0] = False  # an empty mask: bbox 0 0 0 0, area 0
        images.append(ImageProposals(i, masks, rng.random(n).astype(np.float32)))
    want = written_bytes(tmp_path / "numpy.parquet", images)
    as_tensors = [ImageProposals(p.image_id, torch.from_numpy(p.masks), p.scores)
                  for p in images]
    assert written_bytes(tmp_path / "tensor.parquet", as_tensors) == want
    # extract_proposals on a GPU: the run lengths counted there, the strings built later
    counted = [ImageProposals(p.image_id, rle_device.RunLengths(
        rle_device.rle_counts(torch.from_numpy(p.masks)), 48, 64), p.scores) for p in images]
    assert written_bytes(tmp_path / "counted.parquet", counted) == want
    for p, c in zip(images, counted):
        assert np.array_equal(host_masks(c.masks), p.masks) and c.masks.shape == p.masks.shape

    import pandas as pd

    df = pd.read_parquet(tmp_path / "numpy.parquet")
    areas = np.concatenate([p.masks.sum((1, 2)) for p in images])
    assert df["area"].tolist() == areas.tolist()  # the areas, counted another way


def test_streamed_masks_decoded_as_tensors_equal_pycocotools(tmp_path):
    rng = np.random.default_rng(1)
    rows = [type("Row", (), {"image_id": i, "height": 30, "width": 41}) for i in range(4)]
    images = [ImageProposals(i, blobs(rng, n, 30, 41), np.ones(n, np.float32))
              for i, n in [(0, 6), (2, 9)]]  # rows 1 and 3 have none
    written_bytes(tmp_path / "part-00000-of-00001.parquet", images)
    host = list(proposals_for_rows(rows, tmp_path))
    device = list(proposals_for_rows(rows, tmp_path, device="cpu"))
    assert [type(m) for m in device] == [torch.Tensor] * 4
    for h, d in zip(host, device):
        assert d.dtype == torch.bool and np.array_equal(h, d.numpy())
    assert [len(m) for m in device] == [6, 0, 9, 0]


def test_a_proposal_chunk_with_device_rle_is_byte_identical(tmp_path):
    from pipeline.proposals.extract import write_proposal_chunk

    rows = write_images(tmp_path / "im", [(64, 64), (50, 90), (70, 40), (64, 64)])
    split = Split("train", "train", str(tmp_path / "im"), str(tmp_path / "im"), "", "")
    net, text = small_net(), F.normalize(torch.randn(3, 8), dim=-1)
    p = ProposalParams(short_side=64, size_divisor=32, extract_batch_size=3)
    counts = [write_proposal_chunk(tmp_path / f"{on}.parquet", split, rows, net, text, p,
                                   device_rle=on) for on in (False, True)]
    assert counts[0] == counts[1] > 0
    assert (tmp_path / "False.parquet").read_bytes() == (tmp_path / "True.parquet").read_bytes()
    # the GPU's way whole: files decoded by threads, run lengths, their strings built on
    # the writer thread
    assert write_proposal_chunk(tmp_path / "behind.parquet", split, rows, net, text, p,
                                device_rle=True, write_behind_images=2,
                                decode_threads=3) == counts[0]
    assert (tmp_path / "behind.parquet").read_bytes() == (tmp_path / "False.parquet").read_bytes()


def test_a_batch_is_handed_on_only_once_the_next_forward_is_queued(tmp_path):
    """extract_proposals builds a batch's strings while the net runs the next batch: the
    proposals of batch k reach the caller after forward k + 1 (the last batch's after
    its own), and they are the proposals of one batch at a time."""
    from pipeline.proposals.extract import iter_split_proposals, net_proposals

    rows = write_images(tmp_path / "im", [(64, 64)] * 5)
    split = Split("train", "train", str(tmp_path / "im"), str(tmp_path / "im"), "", "")
    net, text = small_net(), F.normalize(torch.randn(3, 8), dim=-1)
    forwards = []
    net.register_forward_hook(lambda m, args, out: forwards.append(len(args[0])))
    p = ProposalParams(short_side=64, size_divisor=32, extract_batch_size=2)
    seen = [(row.image_id, len(forwards), props)
            for row, props in iter_split_proposals(split, rows, net, text, p, "",
                                                   device_rle=True)]
    assert [(i, n) for i, n, _ in seen] == [(0, 2), (1, 2), (2, 3), (3, 3), (4, 3)]
    assert forwards == [2, 2, 1]
    alone = net_proposals(net, text, rows, tmp_path / "im", p, device_rle=True)
    for (_, _, props), want in zip(seen, alone):
        assert props.masks.counts and all(
            np.array_equal(a, b) for a, b in zip(props.masks.counts, want.masks.counts))


@pytest.mark.parametrize("masks", ["proposals", "gt"])
def test_mined_pairs_are_the_same_with_masks_decoded_on_the_device(tmp_path, masks):
    from pipeline.mining.mine import mine_pairs

    inputs = mining_inputs(tmp_path)
    write_gt_proposals(tmp_path, inputs[5])
    p = MineParams(masks=masks, crop_batch_size=4)
    runs = [mine_pairs(*inputs, p, tmp_path, device_rle=on) for on in (False, True)]
    assert runs[0] == runs[1]
    assert len(runs[0][0]["image_id"]) == 12 and runs[0][1] == 12 and runs[0][2] > 0


def write_gt_proposals(folder, rows) -> None:
    """The labels' segments (mining_inputs' label maps) as the proposals parquet."""
    written_bytes(folder / "part-00000-of-00001.parquet", [
        gt_proposals(r.image_id, read_labels(folder / "labels" / r.label_file))
        for r in rows])


def test_images_decoded_by_threads_are_the_images_in_order(tmp_path):
    """extract_proposals on a GPU decodes each batch's files on DECODE_THREADS threads."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.data.image_io import encode_jpeg
    from pipeline.data.layouts import IndexRow
    from pipeline.proposals.extract import read_images

    rng, shapes = np.random.default_rng(5), [(40, 60), (64, 48), (30, 30), (50, 70), (20, 90)]
    rows = []
    for i, (h, w) in enumerate(shapes):
        (tmp_path / f"{i}.jpg").write_bytes(encode_jpeg(rng.integers(0, 256, (h, w, 3),
                                                                     dtype=np.uint8)))
        rows.append(IndexRow(i, f"{i}.jpg", "", h, w))
    alone = read_images(rows, tmp_path)
    with ThreadPoolExecutor(3) as pool:
        threaded = read_images(rows, tmp_path, pool)
    assert [tuple(t.shape) for t in threaded] == [(3, h, w) for h, w in shapes]
    assert all(a.dtype == torch.uint8 and torch.equal(a, b) for a, b in zip(alone, threaded))


def test_a_chunk_of_ground_truth_proposals_needs_no_net(tmp_path):
    """proposals.source gt (the oracle runs): the stage passes no net and no text; the chunk
    holds each labelled segment of each image, written without a writer thread."""
    import pyarrow.parquet as pq

    from pipeline.data.image_io import encode_png
    from pipeline.data.layouts import IndexRow
    from pipeline.proposals.extract import write_proposal_chunk

    labels = np.zeros((20, 30), dtype=np.uint8)
    labels[:, 15:], labels[:4] = 2, 255
    rows = []
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(encode_png(labels))
        rows.append(IndexRow(i, f"{i}.png", f"{i}.png", 20, 30))
    split = Split("train", "train", str(tmp_path), str(tmp_path), "", "")
    p = ProposalParams(source="gt", extract_batch_size=2)
    assert write_proposal_chunk(tmp_path / "gt.parquet", split, rows, None, None, p) == 6
    assert pq.read_table(tmp_path / "gt.parquet").column("image_id").to_pylist() == \
        [0, 0, 1, 1, 2, 2]
