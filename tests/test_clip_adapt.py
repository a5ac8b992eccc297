import contextlib
import socket

import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from pipeline.adapt import training_run as adapt_run
from pipeline.adapt.adapted_model import finetune_plan, prompt_tune_phases
from pipeline.adapt.shard_loader import Augment, Batch, ShardBatches
from pipeline.adapt.train import (
    AdaptPlan,
    MaskedCropEncoder,
    adaptation_optimizer,
    train_adaptation,
)
from pipeline.adapt.training_run import LoaderSettings, run_adaptation
from pipeline.clip.mask_prompts import MaskPrompts
from pipeline.distributed.process_group import Distributed
from tests.test_shard_loader import NOUNS, write_toy_shards


def tiny_clip(seed=0) -> CLIP:
    torch.manual_seed(seed)
    return CLIP(16, CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=4,
                                  image_size=16),
                CLIPTextCfg(context_length=8, vocab_size=64, width=16, heads=2, layers=1))


def noun_text(seed=1) -> torch.Tensor:
    return F.normalize(torch.randn(len(NOUNS), 16, generator=torch.Generator().manual_seed(seed)),
                       dim=-1)


def colour_batches(steps, batch=10, seed=0):
    """Each noun has its own colour; half of each crop is background."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(len(NOUNS), 3, 1, 1, generator=g) * 2 - 1
    out = []
    for step in range(steps):
        idx = torch.randint(len(NOUNS), (batch,), generator=g)
        images = colours[idx] + 0.3 * torch.randn(batch, 3, 16, 16, generator=g)
        masks = torch.zeros(batch, 16, 16, dtype=torch.bool)
        masks[:, 4:12, 2:14] = True
        out.append(Batch(step, images, masks, [NOUNS[i] for i in idx]))
    return out


def train(encoder, plan, data, start=0):
    logs = []
    opt = adaptation_optimizer(encoder, plan)
    train_adaptation(encoder, data[start:], noun_text(), {n: i for i, n in enumerate(NOUNS)},
                     opt, plan, start, on_step=logs.append)
    return logs


def test_a_few_ft_steps_lower_the_loss():
    encoder = MaskedCropEncoder(tiny_clip())
    data = colour_batches(40)
    logs = train(encoder, AdaptPlan(True, False, 40, 2, clip_lr=3e-3), data)
    first = sum(r.loss for r in logs[:5]) / 5
    last = sum(r.loss for r in logs[-5:]) / 5
    assert last < first - 0.2, (first, last)


def test_mpt_only_leaves_every_clip_weight_bit_identical():
    clip = tiny_clip()
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    prompts = MaskPrompts.for_model(clip, depth=2)
    encoder = MaskedCropEncoder(clip, prompts)
    logs = train(encoder, AdaptPlan(False, True, 20, 2, prompt_lr=2e-2), colour_batches(20))
    for k, v in clip.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert prompts.prompts.abs().sum() > 0  # the prompts did train
    assert sum(r.loss for r in logs[-5:]) < sum(r.loss for r in logs[:5])


def test_ft_trains_only_the_image_tower_and_simultaneous_trains_both():
    clip = tiny_clip()
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    prompts = MaskPrompts.for_model(clip, depth=1)
    train(MaskedCropEncoder(clip, prompts), AdaptPlan(True, True, 3, 0, 1e-3, 0.2, 2e-2, 0.0),
          colour_batches(3))
    changed = {k for k, v in clip.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("visual.") for k in changed)
    assert "visual.proj" in changed and prompts.prompts.abs().sum() > 0


def test_mpt_then_ft_trains_the_prompts_then_the_image_tower():
    clip = tiny_clip()
    encoder = MaskedCropEncoder(clip, MaskPrompts.for_model(clip, depth=2))
    train(encoder, AdaptPlan(False, True, 3, 0, prompt_lr=2e-2), colour_batches(3))
    prompts = encoder.prompts.prompts.detach().clone()
    proj = clip.visual.proj.detach().clone()
    train(encoder, AdaptPlan(True, False, 3, 0, clip_lr=1e-3), colour_batches(3, seed=1))
    assert torch.equal(encoder.prompts.prompts, prompts)  # fixed in the FT phase
    assert not torch.equal(clip.visual.proj, proj)


def test_order_decides_which_stage_trains_what():
    assert finetune_plan(True, True, "ft_then_mpt")
    assert not finetune_plan(True, True, "mpt_then_ft")
    assert finetune_plan(True, False, "simultaneous")  # FT alone, whatever the order
    assert not finetune_plan(False, True, "ft_then_mpt")
    assert prompt_tune_phases(True, True, "ft_then_mpt") == ["mpt"]
    assert prompt_tune_phases(True, True, "mpt_then_ft") == ["mpt", "ft"]
    assert prompt_tune_phases(True, True, "simultaneous") == ["simultaneous"]
    assert prompt_tune_phases(False, True, "mpt_then_ft") == ["mpt"]
    assert prompt_tune_phases(True, False, "ft_then_mpt") == []


def shard_run(shards, resume, steps=6, ddp=None, every=2, progress=adapt_run.no_progress):
    encoder = MaskedCropEncoder(tiny_clip(), None)
    loader = LoaderSettings(Augment(16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
                            batch_size=8, seed=0, buffer=10)
    plan = AdaptPlan(True, False, steps, 1, clip_lr=1e-3, clip_weight_decay=0.2)
    logs, timing = run_adaptation(encoder, plan, shards, loader, noun_text(), NOUNS, resume,
                                  "tag", every, torch.device("cpu"), ddp or Distributed(),
                                  progress=progress)
    return encoder, logs, timing


def test_progress_starts_at_the_resumed_step_and_sees_each_loss(tmp_path):
    shards = write_toy_shards(tmp_path / "shards")
    shard_run(shards, tmp_path / "a.pt", steps=4)  # leaves the step-2 checkpoint behind
    opened, losses = [], []

    @contextlib.contextmanager
    def progress(desc, start, total):
        opened.append((start, total))
        yield losses.append

    _, logs, _ = shard_run(shards, tmp_path / "a.pt", steps=4, progress=progress)
    assert opened == [(2, 4)] and len(logs) == 4
    assert losses == [r["loss"] for r in logs[2:]]


class Interrupted(Exception):
    pass


def after_each_step(monkeypatch, call):
    """Make run_adaptation call `call(log)` after each training step's own callback."""
    real = adapt_run.train_adaptation

    def wrapped(*args):
        *rest, inner = args  # run_adaptation passes on_step last

        def on_step(log):
            inner(log)
            call(log)
        return real(*rest, on_step)

    monkeypatch.setattr(adapt_run, "train_adaptation", wrapped)


def interrupt_after_step_3(shards, resume, monkeypatch):
    """A 6-step run killed after step 3: its step-4 checkpoint is left at `resume`."""
    def stop(log):
        if log.step == 3:
            raise Interrupted

    with monkeypatch.context() as m:
        after_each_step(m, stop)
        with pytest.raises(Interrupted):
            shard_run(shards, resume)
    assert torch.load(resume, weights_only=True)["step"] == 4  # checkpoint every 2 steps


def test_resume_after_an_interruption_continues_from_the_saved_step(tmp_path, monkeypatch):
    shards = write_toy_shards(tmp_path / "shards")
    straight, straight_logs, _ = shard_run(shards, tmp_path / "a.pt")
    resume = tmp_path / "b.pt"
    interrupt_after_step_3(shards, resume, monkeypatch)
    resumed, logs, _ = shard_run(shards, resume)
    assert [r["step"] for r in logs] == list(range(6))  # 0-3 from the checkpoint, then 4, 5
    assert [r["loss"] for r in logs] == pytest.approx([r["loss"] for r in straight_logs],
                                                      abs=1e-5)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_a_resumed_run_reports_the_rate_of_the_steps_it_ran(tmp_path, monkeypatch):
    """Issue 12 item 7. On a clock that moves 0.25 s a step, 6 steps of 8 samples resumed
    at step 4 run 2 steps in 0.5 s: 32 samples/s, as a run that was never interrupted
    reports, not all 48 samples over the resumed 0.5 s (96/s)."""
    shards = write_toy_shards(tmp_path / "shards")
    resume = tmp_path / "a.pt"
    interrupt_after_step_3(shards, resume, monkeypatch)
    clock = [0.0]
    monkeypatch.setattr(adapt_run, "perf_counter", lambda: clock[0])
    after_each_step(monkeypatch, lambda log: clock.__setitem__(0, clock[0] + 0.25))
    plan = AdaptPlan(True, False, 6, 1, clip_lr=1e-3, clip_weight_decay=0.2)
    _, logs, resumed = shard_run(shards, resume)
    _, _, straight = shard_run(shards, tmp_path / "straight.pt")
    assert len(logs) == 6 and resumed == adapt_run.Timing(steps=2, seconds=0.5)
    assert straight == adapt_run.Timing(steps=6, seconds=1.5)
    summary = adapt_run.run_summary(plan, 8, resumed)
    assert summary == {"steps": 6, "samples": 48, "train_seconds": 0.5,
                       "samples_per_second": 32.0}
    assert adapt_run.run_summary(plan, 8, straight)["samples_per_second"] == 32.0
    nothing_run = adapt_run.run_summary(plan, 8, adapt_run.Timing(0, 0.0))
    assert nothing_run["samples_per_second"] is None  # e.g. a phase resumed at its end


def _ddp_worker(rank, world, port, shard_dir, out_dir):
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank))
    torch.set_num_threads(1)
    from pipeline.adapt.shard_loader import ShardList
    from pipeline.distributed.process_group import init_distributed

    ddp = init_distributed(torch.device("cpu"))
    encoder, _, _ = shard_run(ShardList.from_dir(shard_dir), out_dir / f"r{rank}.pt", steps=2,
                           ddp=ddp, every=100)
    torch.save(encoder.state_dict(), out_dir / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_process_gloo_run_matches_the_single_process_update(tmp_path):
    shards = write_toy_shards(tmp_path / "shards")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, tmp_path / "shards", tmp_path),
                                nprocs=2)
    single, _, _ = shard_run(shards, tmp_path / "single.pt", steps=2, every=100)
    init = MaskedCropEncoder(tiny_clip()).state_dict()
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    names = [k for k in init if k.startswith("clip.visual.")]
    delta = {name: torch.cat([(sd[k] - init[k]).flatten() for k in names])
             for name, sd in (("single", single.state_dict()), ("r0", r0), ("r1", r1))}
    assert torch.equal(delta["r0"], delta["r1"])  # the ranks stay in sync
    cos = F.cosine_similarity(delta["single"], delta["r0"], dim=0)
    assert cos > 0.9999, float(cos)
    # AdamW normalises each coordinate, so near-zero gradients may differ in rounding
    assert (delta["single"] - delta["r0"]).abs().max() < 0.05 * delta["single"].abs().max(), \
        float((delta["single"] - delta["r0"]).abs().max())
    # the text tower never moves
    for k in init:
        if not k.startswith("clip.visual."):
            assert torch.equal(init[k], r0[k]), k


def test_batches_of_the_shard_loader_feed_training(tmp_path):
    shards = write_toy_shards(tmp_path)
    data = ShardBatches(shards, Augment(16), 8, 3, seed=0, buffer=10)
    encoder = MaskedCropEncoder(tiny_clip(), MaskPrompts.for_model(tiny_clip(), 2))
    logs = []
    plan = AdaptPlan(False, True, 3, 0, prompt_lr=1e-2)
    train_adaptation(encoder, data, noun_text(), {n: i for i, n in enumerate(NOUNS)},
                     adaptation_optimizer(encoder, plan), plan, on_step=logs.append)
    assert [r.step for r in logs] == [0, 1, 2]
