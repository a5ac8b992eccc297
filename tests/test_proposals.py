import itertools

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from pipeline.data.proposal_table import (
    ImageProposals,
    ProposalWriter,
    decode_masks,
    encode_masks,
    iter_image_proposals,
)
from pipeline.proposals.loss import (
    BatchTargets,
    LossWeights,
    MaskLoss,
    layer_loss,
    match_batch,
    pairwise_dice,
    pairwise_mask_cost,
    pixel_mask_loss,
    set_loss,
)
from pipeline.proposals.model import ProposalNet, ProposalNetConfig, class_logits
from pipeline.proposals.recall import segment_recall
from pipeline.proposals.training_loop import batch_indices, train_proposal_net


def one_image_match(prob, logits, labels, masks, weight, w, m):
    """One image's assignment from its own (Q, G) cost, no padding: (query, gt) indices."""
    cost = (-w.ce * prob[:, labels] + w.mask * pairwise_mask_cost(logits, masks, weight, m)
            + w.dice * pairwise_dice(logits, masks, weight))
    q, g = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(q), torch.as_tensor(g)


def brute_force_cost(cost: np.ndarray) -> float:
    """Minimum over every injective map of the G columns to the Q rows."""
    q, g = cost.shape
    return min(sum(cost[rows[j], j] for j in range(g))
               for rows in itertools.permutations(range(q), g))


MASK_LOSSES = [MaskLoss("focal"), MaskLoss("bce"), MaskLoss("focal", alpha=-1, gamma=1.5)]


@pytest.mark.parametrize("seed", range(6))
def test_matcher_agrees_with_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    q, k, n_gt, pixels = 5, 4, 1 + seed % 3, 30
    prob = torch.rand(q, k + 1, generator=g).softmax(-1)
    logits = torch.randn(q, pixels, generator=g) * 3
    labels = torch.randint(0, k, (n_gt,), generator=g)
    masks = (torch.rand(n_gt, pixels, generator=g) > 0.5).float()
    weight = (torch.rand(pixels, generator=g) > 0.2).float()
    w, m = LossWeights(), MASK_LOSSES[seed % 3]
    one = BatchTargets(labels[None], masks[None], weight[None], (n_gt,))
    _, qi, gi = match_batch(prob[None], logits[None], one, w, m)
    cost = (-prob[:, labels] + w.mask * pairwise_mask_cost(logits, masks, weight, m)
            + w.dice * pairwise_dice(logits, masks, weight)).numpy()
    assert sorted(gi.tolist()) == list(range(n_gt)) and len(set(qi.tolist())) == n_gt
    assert np.isclose(cost[qi.numpy(), gi.numpy()].sum(), brute_force_cost(cost))


def random_targets(g, n_images, pixels, k):
    """Images with 0 to 3 segments each, as segment_targets gives them: a segment's share
    of a cell is at most the cell's labelled share."""
    targets = []
    for i in range(n_images):
        n_gt = i % 4
        valid = (torch.rand(pixels, generator=g) > 0.2).float()
        targets.append({"labels": torch.randint(0, k, (n_gt,), generator=g),
                        "masks": torch.rand(n_gt, pixels, generator=g).round() * 0.5 * valid,
                        "valid": valid})
    return targets


def per_image_layer_loss(logits, mask_logits, targets, w, m):
    """The layer loss image by image: `one_image_match`, then the matched pairs' terms."""
    b, q, k1 = logits.shape
    class_target = torch.full((b, q), k1 - 1, dtype=torch.long)
    mask_terms, dice_terms = [], []
    for i, t in enumerate(targets):
        weight = t["valid"] if m.labelled_only else torch.ones(t["masks"].shape[1])
        masks = t["masks"] / weight.clamp(min=1e-6)
        qi, gi = one_image_match(logits[i].softmax(-1), mask_logits[i], t["labels"], masks,
                                 weight, w, m)
        class_target[i, qi] = t["labels"][gi]
        pred, gt = mask_logits[i][qi], masks[gi]
        mask_terms.append((pixel_mask_loss(pred, gt, m) * weight).sum(1) / weight.sum())
        p = pred.sigmoid() * weight
        dice_terms.append(1 - (2 * (p * gt).sum(1) + 1) / (p.sum(1) + (gt * weight).sum(1) + 1))
    class_weight = torch.ones(k1)
    class_weight[-1] = w.no_object
    return {"ce": F.cross_entropy(logits.transpose(1, 2), class_target, class_weight),
            "mask": torch.cat(mask_terms).mean(), "dice": torch.cat(dice_terms).mean()}


@pytest.mark.parametrize("m", MASK_LOSSES + [MaskLoss("focal", labelled_only=False)])
def test_batched_layer_loss_equals_the_image_by_image_loss(m):
    g = torch.Generator().manual_seed(3)
    b, q, k, pixels = 7, 6, 5, 40
    logits = torch.randn(b, q, k + 1, generator=g)
    mask_logits = torch.randn(b, q, pixels, generator=g) * 3
    targets = random_targets(g, b, pixels, k)
    w = LossWeights()
    padded = BatchTargets.pad(targets, m)
    image, query, gt = match_batch(logits.softmax(-1), mask_logits, padded, w, m)
    for i, t in enumerate(targets):  # each image's assignment is its own, unpadded
        weight = t["valid"] if m.labelled_only else torch.ones(pixels)
        masks = t["masks"] / weight.clamp(min=1e-6)
        qi, gi = one_image_match(logits[i].softmax(-1), mask_logits[i], t["labels"], masks,
                                 weight, w, m)
        assert query[image == i].tolist() == qi.tolist() and gt[image == i].tolist() == gi.tolist()
    got = layer_loss(logits, mask_logits[..., None], targets, w, m)  # (B, Q, P, 1) masks
    want = per_image_layer_loss(logits, mask_logits, targets, w, m)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6, msg=key)


def test_a_batch_without_segments_has_only_the_class_loss():
    g = torch.Generator().manual_seed(0)
    targets = [{"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 4, 4)}] * 2
    logits = torch.randn(2, 3, 4, generator=g)
    parts = layer_loss(logits, torch.randn(2, 3, 4, 4, generator=g), targets, LossWeights())
    want = F.cross_entropy(logits.transpose(1, 2), torch.full((2, 3), 3),
                           torch.tensor([1, 1, 1, 0.1]))
    assert torch.isclose(parts["ce"], want) and parts["mask"] == 0 and parts["dice"] == 0


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 2.0), (0.5, 0.0), (0.75, 3.0)])
def test_focal_loss_equals_torchvision(alpha, gamma):
    from torchvision.ops import sigmoid_focal_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, generator=g) * 4
    targets = torch.rand(4, 50, generator=g)  # soft targets too (area-downsampled masks)
    targets[:2] = targets[:2].round()
    ours = pixel_mask_loss(logits, targets, MaskLoss("focal", alpha, gamma))
    ref = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="none")
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("m", MASK_LOSSES)
def test_pairwise_costs_match_elementwise_formulas(m):
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(3, 10, generator=g), (torch.rand(2, 10, generator=g) > 0.5)
    targets = targets.float()
    weight = torch.tensor([1.0, 1, 0, 1, 0.5, 1, 1, 0, 1, 1])
    for i in range(3):
        for j in range(2):
            mask = (pixel_mask_loss(logits[i], targets[j], m) * weight).sum() / weight.sum()
            p = logits[i].sigmoid() * weight
            t = targets[j] * weight
            dice = 1 - (2 * (p * targets[j]).sum() + 1) / (p.sum() + t.sum() + 1)
            assert torch.isclose(pairwise_mask_cost(logits, targets, weight, m)[i, j], mask,
                                 atol=1e-6)
            assert torch.isclose(pairwise_dice(logits, targets, weight)[i, j], dice, atol=1e-6)


def test_ignored_pixels_enter_no_loss_term_when_labelled_only():
    """Changing the predictions on ignored cells (valid = 0) changes neither the matching
    nor any loss, and their gradient is zero; with `labelled_only` off they count."""
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(8, 8)
    valid[:, 5:] = 0  # right three columns: ignore label / crop padding
    masks = torch.zeros(2, 8, 8)
    masks[0, :, :3] = 1
    masks[1, :, 3:5] = 1
    target = [{"labels": torch.tensor([0, 2]), "masks": masks, "valid": valid}]
    logits = torch.randn(1, 4, 4, generator=g)
    mask_logits = torch.randn(1, 4, 8, 8, generator=g)
    changed = mask_logits.clone()
    changed[..., 5:] = torch.randn(1, 4, 8, 3, generator=g) * 10
    for m in (MaskLoss("focal"), MaskLoss("bce")):
        a = layer_loss(logits, mask_logits, target, LossWeights(), m)
        b = layer_loss(logits, changed, target, LossWeights(), m)
        for k in a:
            assert torch.isclose(a[k], b[k]), k
        x = mask_logits.clone().requires_grad_()
        parts = layer_loss(logits, x, target, LossWeights(), m)
        (parts["mask"] + parts["dice"]).backward()
        assert x.grad[..., 5:].abs().max() == 0 and x.grad[..., :5].abs().max() > 0
    everywhere = MaskLoss("focal", labelled_only=False)
    assert not torch.isclose(layer_loss(logits, mask_logits, target, LossWeights(),
                                        everywhere)["mask"],
                             layer_loss(logits, changed, target, LossWeights(),
                                        everywhere)["mask"])


def toy_batch(n=4, size=32, seed=0):
    """Images of 1-2 coloured rectangles on grey; class = colour."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.tensor([[1.0, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.2, 1.0]])
    images = torch.full((n, 3, size, size), 0.5)
    targets = []
    for b in range(n):
        labels, masks = [], []
        for _ in range(1 + b % 2):
            c = int(torch.randint(0, 3, (1,), generator=g))
            y0, x0 = (int(v) for v in torch.randint(0, size // 2, (2,), generator=g))
            m = torch.zeros(size, size)
            m[y0:y0 + size // 2, x0:x0 + size // 2] = 1
            images[b, :, m.bool()] = colours[c][:, None]
            masks = [mm * (1 - m) for mm in masks] + [m]
            labels.append(c)
        small = F.interpolate(torch.stack(masks)[None], size=(size // 4,) * 2, mode="area")[0]
        targets.append({"labels": torch.tensor(labels), "masks": small})
    return images, targets


def test_model_overfits_a_handful_of_images():
    torch.manual_seed(0)
    cfg = ProposalNetConfig(width=16, hidden=32, queries=6, decoder_layers=2, text_dim=8)
    model = ProposalNet(cfg)
    text = F.normalize(torch.randn(3, 8), dim=-1)
    images, targets = toy_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    w = LossWeights()
    losses = []
    for _ in range(150):
        out = model(images)
        assert out[-1]["mask_logits"].shape == (4, 6, 8, 8)
        loss, _ = set_loss(out, lambda qt: class_logits(qt, text, model.no_object,
                                                         cfg.temperature), targets, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] / 5, (losses[0], losses[-1])


def test_rle_round_trips_exactly():
    g = np.random.default_rng(0)
    masks = g.random((5, 13, 17)) > 0.5
    masks[2] = False
    back = decode_masks(encode_masks(masks), 13, 17)
    assert back.dtype == bool and np.array_equal(back, masks)


def image_proposals(image_id, n, seed):
    g = np.random.default_rng(seed)
    masks = g.random((n, 9, 11)) > 0.6
    return ImageProposals(image_id, masks, g.random(n).astype(np.float32),
                          g.integers(0, 5, n).astype(np.int32))


def test_parquet_round_trips_and_reads_with_plain_pandas(tmp_path):
    images = [image_proposals(i, n, i) for i, n in zip([3, 7, 8, 20], [4, 0, 5, 3])]
    path = tmp_path / "part-00000-of-00001.parquet"
    with ProposalWriter(path, row_group_size=4) as w:
        for p in images:
            w.add(p)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3  # 12 rows in groups of 4
    back = list(iter_image_proposals(tmp_path))
    assert [p.image_id for p in back] == [3, 8, 20]  # an image without proposals has no rows
    for want, got in zip([images[0], images[2], images[3]], back):
        assert np.array_equal(want.masks, got.masks)
        assert np.array_equal(want.scores, got.scores)
        assert np.array_equal(want.labels, got.labels)
    only = list(iter_image_proposals(tmp_path, image_ids={8}))
    assert [p.image_id for p in only] == [8]
    df = pd.read_parquet(tmp_path)
    assert list(df.columns[:8]) == ["image_id", "proposal_id", "height", "width", "rle",
                                    "bbox", "area", "score"]
    row = df.iloc[0]
    mask = images[0].masks[0]
    ys, xs = np.nonzero(mask)
    assert list(row["bbox"]) == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                 ys.max() - ys.min() + 1]
    assert row["area"] == mask.sum()
    # same proposals, same bytes
    with ProposalWriter(tmp_path / "again.parquet", row_group_size=4) as w:
        for p in images:
            w.add(p)
    assert path.read_bytes() == (tmp_path / "again.parquet").read_bytes()


def test_writer_refuses_out_of_order_images_and_leaves_no_file(tmp_path):
    path = tmp_path / "p.parquet"
    with pytest.raises(ValueError, match="increasing image_id"):
        with ProposalWriter(path, 8) as w:
            w.add(image_proposals(5, 2, 0))
            w.add(image_proposals(4, 2, 1))
    assert list(tmp_path.iterdir()) == []


def test_segment_recall_counts_iou_at_least_half():
    gt = np.zeros((2, 10, 10), dtype=bool)
    gt[0, :5] = True  # 50 pixels
    gt[1, 5:] = True
    props = np.zeros((2, 10, 10), dtype=bool)
    props[0, :4] = True  # IoU 0.8 with gt 0
    props[1, 5:7, :5] = True  # IoU 0.2 with gt 1
    assert segment_recall(props, gt).tolist() == [True, False]
    assert segment_recall(np.zeros((0, 10, 10), dtype=bool), gt).tolist() == [False, False]


def test_resumed_training_equals_uninterrupted():
    """Interrupt after 2 of 4 steps, restore model + optimizer state, resume at step 2: the
    weights equal those of an uninterrupted run (batches depend only on seed and step)."""
    cfg = ProposalNetConfig(width=8, hidden=16, queries=4, decoder_layers=1, text_dim=8)
    text = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    images, targets = toy_batch(n=6)

    def load_batch(idx, step):
        return images[torch.as_tensor(idx)], [targets[i] for i in idx]

    def fresh():
        torch.manual_seed(0)
        model = ProposalNet(cfg)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train(model, opt, start=0, on_step=lambda log: None):
        train_proposal_net(model, load_batch, 6, text, LossWeights(), opt, steps=4,
                           batch_size=2, lr_at=lambda s: 1e-3 * min(1.0, s + 0.5), seed=0,
                           start_step=start, on_step=on_step, grad_clip_norm=0.05)

    straight, opt = fresh()
    train(straight, opt)

    class Interrupt(Exception):
        pass

    def stop_after_two(log):
        if log.step == 1:
            raise Interrupt

    first, opt1 = fresh()
    with pytest.raises(Interrupt):
        train(first, opt1, on_step=stop_after_two)
    saved = {"model": first.state_dict(), "opt": opt1.state_dict()}
    resumed, opt2 = fresh()
    resumed.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    train(resumed, opt2, start=2)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k
    assert batch_indices(6, 2, 0, 2).tolist() != batch_indices(6, 2, 0, 1).tolist()


def _ddp_worker(rank, world, port, out_dir):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank))
    torch.set_num_threads(1)
    from pipeline.distributed.process_group import init_distributed

    ddp = init_distributed(torch.device("cpu"))
    cfg = ProposalNetConfig(width=8, hidden=16, queries=4, decoder_layers=1, text_dim=8)
    torch.manual_seed(0)
    model = ProposalNet(cfg)
    text = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    images, targets = toy_batch(n=8)
    seen = []

    def load_batch(idx, step):
        seen.append(idx.tolist())
        return images[torch.as_tensor(idx)], [targets[i] for i in idx]

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_proposal_net(model, load_batch, 8, text, LossWeights(), opt, steps=2, batch_size=4,
                       lr_at=lambda s: 1e-3, seed=0, ddp=ddp)
    torch.save({"state": model.state_dict(), "seen": seen}, f"{out_dir}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_distributed_ranks_split_batches_and_stay_in_sync(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for step in range(2):
        both = batch_indices(8, 4, 0, step).tolist()
        assert r0["seen"][step] == both[0::2] and r1["seen"][step] == both[1::2]
    # parameters stay identical (gradients are averaged); BatchNorm running statistics are
    # per rank, and rank 0's are the ones saved
    params = {n for n, _ in ProposalNet(ProposalNetConfig(
        width=8, hidden=16, queries=4, decoder_layers=1, text_dim=8)).named_parameters()}
    for k in params:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    torch.manual_seed(0)
    init = ProposalNet(ProposalNetConfig(width=8, hidden=16, queries=4, decoder_layers=1,
                                         text_dim=8)).state_dict()
    assert not torch.equal(init["class_embed.weight"], r0["state"]["class_embed.weight"])


FROZEN = dict(width=8, hidden=16, queries=4, decoder_layers=1, text_dim=8, freeze_bn=True)


def _train_frozen_bn_net(ddp, steps=3):
    """A frozen-BN, dropout-free net trained by SGD on the toy batch: (state, segments per
    step seen by this process)."""
    torch.manual_seed(0)
    model = ProposalNet(ProposalNetConfig(**FROZEN))
    text = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    images, targets = toy_batch(n=8)
    segments = []

    def load_batch(idx, step):
        segments.append(sum(len(targets[i]["labels"]) for i in idx))
        return images[torch.as_tensor(idx)], [targets[i] for i in idx]

    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    train_proposal_net(model, load_batch, 8, text, LossWeights(), opt, steps=steps,
                       batch_size=4, lr_at=lambda s: 1e-4, seed=0, ddp=ddp)
    return model.state_dict(), segments


def test_loss_shares_make_the_mean_of_half_batch_gradients_the_whole_batchs():
    """ddp_loss_shares without processes: two halves holding 3 and 5 segments, each loss
    scaled by its share, average to the whole batch's gradient (what DDP's all-reduce
    does); unscaled per-half means do not."""
    from pipeline.proposals.loss import ddp_loss_shares, set_loss

    torch.manual_seed(0)
    model = ProposalNet(ProposalNetConfig(**FROZEN))
    text = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    images, targets = toy_batch(n=6)  # image b holds 1 + b % 2 segments
    halves = [[0, 2, 4], [1, 3, 5]]  # 3 and 6 segments
    w = LossWeights(no_object=0.1)

    def grads(idx, shares):
        model.zero_grad()
        loss, _ = set_loss(model(images[idx]), lambda qt: class_logits(
            qt.float(), text, model.no_object, model.cfg.temperature),
            [targets[i] for i in idx], w, shares=shares)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    def summed(local):  # the all-reduce: both halves' [class weight, segments]
        return torch.tensor([[3 + 9 * 0.1, 3], [6 + 6 * 0.1, 6]], dtype=torch.float64).sum(0)

    shares = [ddp_loss_shares([targets[i] for i in h], 4, w, 2, summed, torch.device("cpu"))
              for h in halves]
    assert shares[0] == pytest.approx(((3 + 0.9) * 2 / 10.5, 3 * 2 / 9))
    whole = grads(list(range(6)), (1.0, 1.0))
    scaled = (grads(halves[0], shares[0]) + grads(halves[1], shares[1])) / 2
    plain = (grads(halves[0], (1.0, 1.0)) + grads(halves[1], (1.0, 1.0))) / 2
    assert torch.allclose(scaled, whole, rtol=1e-4, atol=1e-4 * float(whole.abs().max()))
    assert not torch.allclose(plain, whole, rtol=1e-2, atol=1e-2 * float(whole.abs().max()))
    assert ddp_loss_shares(targets, 4, w, 1, None, torch.device("cpu")) == (1.0, 1.0)


def _ddp_frozen_worker(rank, world, port, out_dir):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank))
    torch.set_num_threads(1)
    from pipeline.distributed.process_group import init_distributed

    state, segments = _train_frozen_bn_net(init_distributed(torch.device("cpu")))
    torch.save({"state": state, "segments": segments}, f"{out_dir}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_ranks_train_the_weights_of_one_process(tmp_path):
    """DDP is one process's training split in two, not an approximation of it: with frozen
    BatchNorm and no dropout (the two things that are per process by design: live BN's
    batch statistics on CPU ranks, which have no SyncBatchNorm, and dropout's random
    numbers), two ranks' weights after 3 SGD steps equal one process's to float32 rounding
    (rtol 1e-4, atol 1e-6), though the ranks hold different numbers of segments: the
    losses are normalised by the global batch's segments and class weights, as MaskFormer
    normalises its mask losses by the segments of all ranks."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.set_num_threads(1)
    one, _ = _train_frozen_bn_net(None)
    torch.multiprocessing.spawn(_ddp_frozen_worker, args=(2, port, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["segments"] != r1["segments"]  # unequal shares: a per-rank mean would differ
    torch.manual_seed(0)
    init = ProposalNet(ProposalNetConfig(**FROZEN)).state_dict()
    moved = 0
    for k, want in one.items():
        got = r0["state"][k]
        assert torch.allclose(got.float(), want.float(), rtol=1e-4, atol=1e-6), \
            (k, float((got.float() - want.float()).abs().max()))
        moved += not torch.equal(want, init[k])
    assert moved > len(one) // 2  # the steps trained the net


def test_show_proposals_command_draws_a_png(tmp_path):
    import json

    from PIL import Image

    from pipeline.data.layouts import IndexRow, write_index
    from pipeline.segment.cli import main

    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((9, 11, 3), 128, np.uint8)).save(tmp_path / "img/a.jpg")
    write_index(tmp_path / "train.parquet", [IndexRow(7, "a.jpg", "a.png", 9, 11, ("x",))])
    (tmp_path / "splits.json").write_text(json.dumps({"splits": {"train": {
        "role": "train", "image_dir": str(tmp_path / "img"), "label_dir": str(tmp_path),
        "index": str(tmp_path / "train.parquet"), "classes": "unused.json"}}}))
    with ProposalWriter(tmp_path / "props/part-00000-of-00001.parquet", 8) as w:
        w.add(image_proposals(7, 3, 0))
    out = tmp_path / "view.png"
    assert main(["show-proposals", "--proposals", str(tmp_path / "props"), "--splits",
                 str(tmp_path / "splits.json"), "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 100
    assert main(["show-proposals", "--proposals", str(tmp_path / "props"), "--splits",
                 str(tmp_path / "splits.json"), "--image-id", "8", "--out", str(out)]) == 1


def test_param_groups_scale_the_backbone_lr_and_spare_norms_and_embeddings_from_decay():
    from pipeline.proposals.training_recipe import param_groups

    model = ProposalNet(ProposalNetConfig(width=8, hidden=16, queries=4, decoder_layers=1,
                                          text_dim=8))
    groups = param_groups(model, weight_decay=0.05, backbone_lr_multiplier=0.1)
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())  # each exactly once
    backbone = {id(p) for p in model.backbone.parameters()}
    norms = {id(p) for m in model.modules()
             if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm))
             for p in m.parameters(recurse=False)}
    for g in groups:
        for p in g["params"]:
            assert g["lr_scale"] == (0.1 if id(p) in backbone else 1.0)
            no_decay = id(p) in norms or p is model.query_embed or p is model.no_object
            assert g["weight_decay"] == (0.0 if no_decay else 0.05)
    # the loop applies lr_at(step) x lr_scale to each group
    opt = torch.optim.AdamW(groups, lr=1.0)
    text = F.normalize(torch.randn(3, 8), dim=-1)
    images, targets = toy_batch(n=2)
    train_proposal_net(model, lambda idx, step: (images[torch.as_tensor(idx)],
                                           [targets[i] for i in idx]),
                       2, text, LossWeights(), opt, steps=1, batch_size=2,
                       lr_at=lambda s: 3e-4, seed=0)
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([3e-5, 3e-4])
