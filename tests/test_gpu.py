"""The device-sensitive unit checks on a real GPU (marker `gpu`; skipped without CUDA, run
by `make gpu-check`): each compares the CUDA result with the CPU's, under the bf16 autocast
the stages use there. tests/test_device_path.py guards the same paths on the CPU."""

from __future__ import annotations

import copy
import socket

import pytest
import torch
import torch.nn.functional as F

from pipeline.clip.mask_classifier import cast_for_inference
from pipeline.clip.model import create_clip, tokenizer_for
from pipeline.distributed.precision import weights_dtype

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="no CUDA GPU: `make gpu-check` runs these on one")]
CUDA = torch.device("cuda")


def tiny_clip():
    torch.manual_seed(0)
    return create_clip("ovseg-tiny-vit").eval()


def test_text_classifier_on_cuda_matches_the_cpu_and_the_cache_hands_back_there(tmp_path):
    from pipeline.clip.text_classifier import cached_text_classifier, text_classifier

    clip, tokenizer = tiny_clip(), tokenizer_for("ovseg-tiny-vit")
    names = ["dog", "cat, kitty", "traffic light"]
    cpu = text_classifier(clip, tokenizer, names)
    clip = clip.to(CUDA)
    with torch.autocast("cuda", torch.bfloat16):
        bf16 = text_classifier(clip, tokenizer, names)
    assert bf16.device.type == CUDA.type and bf16.dtype == torch.float32
    assert (bf16.cpu() - cpu).abs().max() < 0.03
    miss = cached_text_classifier(clip, tokenizer, names, tmp_path)
    hit = cached_text_classifier(clip, tokenizer, names, tmp_path)
    assert miss.device == hit.device == clip.logit_scale.device
    assert torch.equal(miss, hit) and (miss.cpu() - cpu).abs().max() < 1e-4


@pytest.mark.parametrize("method", ["matmul", "loop", "whole"])
def test_masked_crops_on_cuda_under_autocast_match_the_cpu(method):
    from pipeline.clip.masked_crops import masked_crops

    g = torch.Generator().manual_seed(0)
    image, masks = torch.rand(3, 120, 160, generator=g), torch.rand(9, 120, 160, generator=g) > .7
    color = torch.tensor([0.48, 0.46, 0.41])
    want = masked_crops(image, masks, 64, "mean", color, method=method)
    with torch.autocast("cuda", torch.bfloat16):
        got = masked_crops(image.to(CUDA), masks.to(CUDA), 64, "mean", color.to(CUDA),
                           method=method)
    assert got[0].dtype == torch.float32
    assert (got[0].cpu() - want[0]).abs().max() < 1e-4
    assert torch.equal(got[1].cpu(), want[1]) and torch.equal(got[2].cpu(), want[2])


def test_proposal_inference_on_cuda_keeps_its_scores_float32():
    from pipeline.proposals.model import ProposalNet, ProposalNetConfig, predict_proposals

    torch.manual_seed(0)
    net = ProposalNet(ProposalNetConfig()).eval()
    images, text = torch.rand(4, 3, 96, 128), F.normalize(torch.randn(6, 64), dim=-1)
    masks_cpu, scores_cpu = predict_proposals(net, images, text)
    net = net.to(CUDA)
    with torch.autocast("cuda", torch.bfloat16):
        masks, scores = predict_proposals(net, images.to(CUDA), text.to(CUDA))
    assert scores.dtype == torch.float32 and (scores.cpu() - scores_cpu).abs().max() < 0.1
    agree = ((masks.float().cpu() > 0) == (masks_cpu > 0)).float().mean()
    assert agree > 0.95, float(agree)


def test_segmenter_on_cuda_labels_as_on_the_cpu():
    from pipeline.proposals.model import ProposalNet, ProposalNetConfig
    from pipeline.segment.segmenter import Segmenter
    from tests.test_proposal_inference import settings_at

    torch.manual_seed(0)
    net = ProposalNet(ProposalNetConfig()).eval()
    clip = tiny_clip()
    text = F.normalize(torch.randn(5, 64), dim=-1)
    image = torch.rand(3, 90, 120)
    # fp32 on both; and bf16 (eval.precision auto on CUDA: autocast, a bf16 image tower as
    # load_segmenter_models casts it) against the same arithmetic forced on the CPU
    for precision, least in (("fp32", 0.99), ("bf16", 0.95)):
        settings = {**settings_at(64), "precision": precision}
        tower = cast_for_inference(copy.deepcopy(clip), weights_dtype(CUDA, precision))
        cpu = Segmenter(net, text, tower, text, **settings).predict(image)
        gpu = Segmenter(copy.deepcopy(net).to(CUDA), text.to(CUDA), copy.deepcopy(tower).to(CUDA),
                        text.to(CUDA), **settings).predict(image.to(CUDA))
        for name, labels in cpu.items():
            agree = (gpu[name].cpu() == labels).float().mean()
            assert gpu[name].device.type == "cpu" and agree > least, \
                (precision, name, float(agree))


def test_a_mining_batch_on_cuda_pairs_as_on_the_cpu(tmp_path):
    from pipeline.mining.mine import mine_pairs
    from pipeline.params import MineParams
    from tests.test_pair_mining import mining_inputs

    clip, text, *rest = mining_inputs(tmp_path)
    p = MineParams(masks="gt", crop_batch_size=4)  # precision auto: bf16 on CUDA
    cpu = mine_pairs(clip, text, *rest, p, tmp_path)
    gpu = mine_pairs(clip.to(CUDA), text.to(CUDA), *rest, p, tmp_path)
    assert gpu[0]["image_id"] == cpu[0]["image_id"] and gpu[0]["noun"] == cpu[0]["noun"]
    assert max(abs(a - b) for a, b in zip(gpu[0]["similarity"], cpu[0]["similarity"])) < 0.05


def test_host_copies_on_cuda_come_back_whole():
    from pipeline.distributed.transfers import HostCopy, to_device

    tensors = [torch.arange(1000, device=CUDA), torch.rand(64, 3, device=CUDA),
               torch.zeros(0, dtype=torch.bool, device=CUDA)]
    up = to_device(torch.arange(7).numpy(), CUDA)
    back = HostCopy(tensors).wait()
    assert up.device.type == "cuda" and up.tolist() == list(range(7))
    assert all(b.device.type == "cpu" and torch.equal(a.cpu(), b) for a, b in zip(tensors, back))


def test_mining_on_cuda_waits_for_the_gpu_only_to_read_a_batch_back(tmp_path):
    """Issue 31: between batches the mining loop reads nothing back from the GPU (no
    `.item()`, no pageable copy, no stream synchronize; torch's sync debug mode raises at
    any), with the image tower in bf16 as stages/mine_pairs casts it; the pairs are
    those of the same run without the check."""
    from pipeline.mining.mine import mine_pairs
    from pipeline.params import MineParams
    from tests.test_pair_mining import mining_inputs

    clip, text, *rest = mining_inputs(tmp_path)
    clip, text = clip.to(CUDA), text.to(CUDA)
    cast_for_inference(clip.visual, weights_dtype(CUDA, "auto"))
    p = MineParams(masks="gt", crop_batch_size=4)
    want = mine_pairs(clip, text, *rest, p, tmp_path, read_ahead_images=0)
    torch.cuda.set_sync_debug_mode("error")
    try:
        got = mine_pairs(clip, text, *rest, p, tmp_path, read_ahead_images=0)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert got == want and len(got[0]["image_id"]) == 12


def test_rle_on_cuda_gives_pycocotools_strings_and_masks():
    import numpy as np

    from pipeline.data import rle_device
    from tests.test_rle_device import blobs, coco_strings

    masks = blobs(np.random.default_rng(0), 100, 480, 640)
    want = coco_strings(masks)
    assert rle_device.encode(torch.from_numpy(masks).to(CUDA)) == want
    back = rle_device.decode(want, 480, 640, CUDA)
    assert back.device.type == "cuda" and np.array_equal(back.cpu().numpy(), masks)


def test_evaluation_on_cuda_counts_the_matrices_of_the_cpu(tmp_path):
    """The same predictions on CUDA: the label maps counted there, with the files read
    ahead, give the CPU's matrices, sweep and overlays."""
    import numpy as np

    from pipeline.segment.evaluation import confusion_by_variant
    from pipeline.segment.segmenter import MaskPredictions
    from tests.test_eval_protocol import RandomSegmenter, eval_set

    class OnCuda(RandomSegmenter):
        def mask_predictions(self, images):
            return [MaskPredictions(*(getattr(m, f).to(CUDA) for f in (
                "p_maskformer", "p_clip", "valid", "mask_logits")))
                for m in super().mask_predictions(images)]

    labels = np.random.default_rng(4).integers(0, 4, (12, 20))
    labels[:2] = 255
    ds = eval_set(tmp_path, labels, images=5, seen=(True, True, False, False))
    kw = {"overlays": 2, "sweep": (0.0, 0.5, 1.0)}
    conf, swept, panels = confusion_by_variant(RandomSegmenter(4, 0.7), ds, 2, 0, **kw)
    conf2, swept2, panels2 = confusion_by_variant(OnCuda(4, 0.7), ds, 2, 0, **kw,
                                                  read_ahead_batches=2)
    assert all(np.array_equal(conf[v], conf2[v]) for v in conf)
    assert all(np.array_equal(swept[lam], swept2[lam]) for lam in swept)
    assert all(np.array_equal(a["clip"], b["clip"]) for a, b in zip(panels, panels2))


def test_the_bottleneck_variants_are_scored_on_cuda(tmp_path):
    """evaluate's whole loop with the stage's bf16 segmenter on CUDA and eval.bottleneck:
    ground-truth segments through CLIP and the oracle, made and counted on the device."""
    import numpy as np

    from pipeline.proposals.model import ProposalNet, ProposalNetConfig
    from pipeline.segment.evaluation import confusion_by_variant
    from pipeline.segment.segmenter import Segmenter
    from tests.test_eval_protocol import eval_set
    from tests.test_proposal_inference import settings_at

    torch.manual_seed(0)
    text = F.normalize(torch.randn(3, 64), dim=-1).to(CUDA)
    tower = cast_for_inference(tiny_clip(), weights_dtype(CUDA, "bf16")).to(CUDA)
    seg = Segmenter(ProposalNet(ProposalNetConfig()).eval().to(CUDA), text, tower, text,
                    **{**settings_at(64), "precision": "bf16"})
    labels = np.zeros((48, 64), dtype=np.uint8)
    labels[:, 32:], labels[:8] = 1, 255
    ds = eval_set(tmp_path, labels, images=3, seen=(True, True, False))
    conf, swept, _ = confusion_by_variant(seg, ds, 2, 64, overlays=0, sweep=(0.5,),
                                          bottleneck=True, read_ahead_batches=2)
    assert set(conf) == {"maskformer", "clip", "ensemble", "gt_masks_clip", "proposals_oracle"}
    assert all(m.sum() == 3 * 40 * 64 for m in [*conf.values(), *swept.values()])


def test_a_proposal_chunk_on_cuda_is_the_same_with_the_masks_encoded_on_the_host(tmp_path):
    from pipeline.data.layouts import Split
    from pipeline.params import ProposalParams
    from pipeline.proposals.extract import write_proposal_chunk
    from tests.test_proposal_inference import small_net, write_images

    rows = write_images(tmp_path / "im", [(64, 64), (50, 90), (70, 40), (64, 64)])
    split = Split("train", "train", str(tmp_path / "im"), str(tmp_path / "im"), "", "")
    net, text = small_net().to(CUDA), F.normalize(torch.randn(3, 8), dim=-1).to(CUDA)
    p = ProposalParams(short_side=64, size_divisor=32, extract_batch_size=3)
    for on in (False, True):
        write_proposal_chunk(tmp_path / f"{on}.parquet", split, rows, net, text, p,
                             device_rle=on)
    assert (tmp_path / "False.parquet").read_bytes() == (tmp_path / "True.parquet").read_bytes()


def test_mined_pairs_on_cuda_are_the_same_with_masks_decoded_on_the_host(tmp_path):
    from pipeline.mining.mine import mine_pairs
    from pipeline.params import MineParams
    from tests.test_device_rle_stages import write_gt_proposals
    from tests.test_pair_mining import mining_inputs

    clip, text, *rest = mining_inputs(tmp_path)
    write_gt_proposals(tmp_path, rest[3])
    p = MineParams(masks="proposals", crop_batch_size=4)
    runs = [mine_pairs(clip.to(CUDA), text.to(CUDA), *rest, p, tmp_path, device_rle=on)
            for on in (False, True)]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("phase", ["ft", "mpt"])
def test_ft_and_mpt_steps_on_cuda_lower_the_loss(phase):
    from pipeline.adapt.train import (
        AdaptPlan,
        MaskedCropEncoder,
        adaptation_optimizer,
        train_adaptation,
    )
    from pipeline.clip.mask_prompts import MaskPrompts
    from tests.test_clip_adapt import colour_batches, noun_text
    from tests.test_clip_adapt import tiny_clip as small_clip
    from tests.test_shard_loader import NOUNS

    clip = small_clip()
    prompts = MaskPrompts.for_model(clip, depth=2) if phase == "mpt" else None
    encoder = MaskedCropEncoder(clip, prompts).to(CUDA)
    plan = AdaptPlan(phase == "ft", phase == "mpt", 40, 2, clip_lr=3e-3, prompt_lr=2e-2)
    logs = []
    train_adaptation(encoder, colour_batches(40), noun_text().to(CUDA),
                     {n: i for i, n in enumerate(NOUNS)}, adaptation_optimizer(encoder, plan),
                     plan, precision="auto", on_step=logs.append)
    first, last = (sum(r.loss for r in part) / 5 for part in (logs[:5], logs[-5:]))
    assert last < first, (phase, first, last)


def _all_reduce_worker(rank: int, world: int, port: int) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    from pipeline.distributed.device import start_ranks
    from pipeline.distributed.process_group import all_reduce_sum

    device, ddp = start_ranks("cuda")
    x = all_reduce_sum(ddp, torch.full((3,), rank + 1, dtype=torch.int64, device=device))
    assert x.tolist() == [sum(range(1, world + 1))] * 3
    torch.distributed.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs 2 GPUs")
def test_nccl_all_reduce_over_two_gpus():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_all_reduce_worker, args=(2, port), nprocs=2)
