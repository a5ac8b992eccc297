"""The GPU path guarded on the CPU (DESIGN §9; the first GPU run crashed where these look).
CI has no GPU, so a GPU is stood in for three ways:
- a network on the `meta` device: an op mixing a CPU tensor with its weights fails there as
  it fails on CUDA, so code that takes its inputs to the network's device runs through,
  up to the first value it reads back (a meta tensor has none);
- `torch.autocast("cpu", torch.bfloat16)`, which casts the ops CUDA's autocast casts
  (matmul, conv), around the crop cutters, the class logits and a mining batch;
- `torch.cuda` monkeypatched to report GPUs, for device selection and process counts.
The same checks on a real GPU are tests/test_gpu.py (`make gpu-check`)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from pipeline.clip.masked_crops import METHODS, masked_crops
from pipeline.clip.model import create_clip, tokenizer_for
from pipeline.distributed import launch
from pipeline.distributed.data_parallel import live_batchnorms, with_sync_batchnorm
from pipeline.distributed.device import select_device
from pipeline.distributed.precision import autocast, full_precision, uses_bf16, weights_dtype
from pipeline.proposals.model import ProposalNet, ProposalNetConfig, class_logits
from tests.conftest import REPO
from tests.test_faults_atomic import stage_call
from tests.test_pair_mining import mining_inputs

META_VALUE_READ = r"(cannot be called on meta tensors|Cannot copy out of meta tensor)"
BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


@pytest.fixture(scope="module")
def meta_clip():
    """The tiny CLIP with its weights on `meta`, as a GPU's would be: not on the CPU."""
    torch.manual_seed(0)
    return create_clip("ovseg-tiny-vit").eval().to("meta")


def runs_to_its_values(fn) -> None:
    """`fn` ran every op on the network's device: it ended, or stopped only where it read a
    value back from it (`.item()`, `.cpu()`), never at a device mismatch."""
    try:
        fn()
    except (RuntimeError, NotImplementedError) as e:
        if not re.search(META_VALUE_READ, str(e)):
            raise


# inputs go to the network's device

def test_text_classifier_takes_its_tokens_to_the_text_towers_device(meta_clip):
    from pipeline.clip.text_classifier import text_classifier

    out = text_classifier(meta_clip, tokenizer_for("ovseg-tiny-vit"), ["dog", "cat, kitty"],
                          ("a photo of a {}.",))
    assert out.device.type == "meta" and out.shape == (2, 64)


def test_image_tower_takes_crops_masks_and_prompts_to_its_device(meta_clip):
    from pipeline.clip.mask_prompts import encode_image

    crops, masks = torch.zeros(3, 3, 64, 64), torch.ones(3, 64, 64, dtype=torch.bool)
    for prompts in (None, torch.zeros(2, 64, 32)):  # depth 2, an 8x8 grid, width 32
        feats = encode_image(meta_clip, crops, masks, prompts)
        assert feats.device.type == "meta" and feats.shape == (3, 64)


def test_crop_cosines_run_on_the_clips_device(meta_clip):
    """The region probe (adaptation_report), the segmenter and `ovseg segment` classify
    crops cut on the CPU with a CLIP wherever it is."""
    from pipeline.clip.mask_classifier import crop_cosines

    crops, masks = torch.zeros(2, 3, 64, 64), torch.ones(2, 64, 64, dtype=torch.bool)
    runs_to_its_values(lambda: crop_cosines(meta_clip, crops, masks,
                                            F.normalize(torch.ones(4, 64), dim=-1)))


def test_clip_pretraining_takes_its_batches_to_the_models_device():
    """base_clip's loop: the batches come from the CPU loader."""
    from pipeline.clip.pretrain import train_clip

    torch.manual_seed(0)
    model = create_clip("ovseg-tiny-vit").to("meta")
    tokens = tokenizer_for("ovseg-tiny-vit")(["a dog"] * 4)
    batches = iter([(np.arange(4), np.zeros(4, int))])
    runs_to_its_values(lambda: train_clip(model, lambda i, c: (torch.zeros(4, 3, 64, 64),
                                                               tokens), batches, 1, 1e-3, 0.1, 0))


def test_zero_shot_probe_takes_its_crops_to_the_models_device(meta_clip):
    from pipeline.clip.region_probe import zero_shot_predictions

    runs_to_its_values(lambda: zero_shot_predictions(
        meta_clip, torch.zeros(3, 3, 64, 64), F.normalize(torch.ones(5, 64), dim=-1)))


# nothing read back while a GPU works (issue 31): on `meta` a read-back has no value to read

def test_whole_image_crops_read_nothing_back_where_window_crops_do():
    image, masks = torch.zeros(3, 48, 64, device="meta"), torch.zeros(5, 48, 64, dtype=torch.bool,
                                                                      device="meta")
    color = torch.zeros(3, device="meta")
    crops, crop_masks, valid = masked_crops(image, masks, 32, "mean", color, 1.2, method="whole")
    assert crops.shape == (5, 3, 32, 32) and crop_masks.shape == (5, 32, 32)
    with pytest.raises((RuntimeError, NotImplementedError)):
        masked_crops(image, masks, 32, "mean", color, method="matmul")  # reads its window


def test_mining_queues_the_next_batch_before_reading_the_last_back(tmp_path):
    """The mining loop on a device with no values: the crops, CLIP, the choice of proposals
    and the label checks of a batch, then the next batch's, all run before the first
    read-back (there, the first value read on `meta` stops it)."""
    from pipeline.mining.mine import mine_pairs
    from pipeline.params import MineParams

    clip, text, *rest = mining_inputs(tmp_path)
    clip, forwards = clip.to("meta"), []
    clip.visual.register_forward_hook(lambda m, args, out: forwards.append(len(out)))
    with pytest.raises((RuntimeError, NotImplementedError), match=META_VALUE_READ):
        mine_pairs(clip, text.to("meta"), *rest, MineParams(masks="gt", crop_batch_size=4),
                   tmp_path)
    assert len(forwards) == 2  # batch 2 queued, then batch 1's results read


class MetaPredictions:
    """An image's predictions made on `meta`: label maps with no values."""

    def __init__(self, size):
        self.mask_logits = torch.zeros(2, *size, device="meta")

    def label_maps(self, ensemble_lambda, size, sweep=()):
        def blank():
            return torch.zeros(size, dtype=torch.long, device="meta")
        return ({v: blank() for v in ("maskformer", "clip", "ensemble")},
                {lam: blank() for lam in sweep})


def test_evaluation_counts_every_image_where_its_predictions_are(tmp_path):
    """evaluate on a device with no values: every image's label maps, the λ sweep's
    included, are counted before anything is read back (the summed matrices, once)."""
    from pipeline.segment.evaluation import confusion_by_variant
    from tests.test_eval_protocol import eval_set

    class MetaSegmenter:
        ensemble_lambda, images = 0.7, 0

        def mask_predictions(self, images):
            self.images += len(images)
            return [MetaPredictions(im.shape[-2:]) for im in images]

    labels = np.random.default_rng(0).integers(0, 3, (12, 20))
    seg = MetaSegmenter()
    with pytest.raises((RuntimeError, NotImplementedError), match=META_VALUE_READ):
        confusion_by_variant(seg, eval_set(tmp_path, labels, images=5, seen=(True,) * 3),
                             2, 0, overlays=0, sweep=(0.0, 0.5))
    assert seg.images == 5  # all three batches ran; the read-back came after


def test_host_copies_are_the_tensors_on_the_host():
    from pipeline.distributed.transfers import HostCopy, to_device

    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    labels.flags.writeable = False  # as decoded files come
    up = to_device(labels, torch.device("cpu"))
    assert up.dtype == torch.uint8 and up.tolist() == labels.tolist()
    tensors = [torch.arange(5), torch.rand(2, 3), torch.zeros(0, dtype=torch.bool)]
    back = HostCopy(tensors).wait()
    assert all(torch.equal(a, b) and b.device.type == "cpu" for a, b in zip(tensors, back))


def test_the_proposal_nets_input_is_resized_and_padded_on_the_images_device():
    """extract_proposals and the segmenter hand their images to the net's device first:
    the resize and the padding run there, not on a GPU's host."""
    from pipeline.proposals.inference import net_batch

    images = [torch.zeros(3, 40, 50, device="meta"), torch.zeros(3, 30, 64, device="meta")]
    batch, sizes = net_batch(images, 64, 32)
    assert batch.device.type == "meta" and batch.shape == (2, 3, 64, 160)
    assert sizes == [(64, 80), (64, 137)]


# float32 where the numerics need it, under any autocast

@pytest.mark.parametrize("method", METHODS)
def test_masked_crops_are_float32_and_unchanged_under_bf16_autocast(method):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 40, 56, generator=g)
    masks = torch.rand(6, 40, 56, generator=g) > 0.6
    masks[2] = False  # an invalid crop too
    color = torch.tensor([0.48, 0.46, 0.41])
    want = masked_crops(image, masks, 32, "mean", color, method=method)
    with torch.autocast(**BF16):
        got = masked_crops(image, masks, 32, "mean", color, method=method)
    assert got[0].dtype == torch.float32
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_class_logits_at_temperature_001_are_float32_under_bf16_autocast():
    """The net's query embeddings come out of a bf16 forward; the cosines over the
    temperature (and so the scores written to parquet) are float32 all the same."""
    g = torch.Generator().manual_seed(0)
    query = torch.randn(2, 5, 64, generator=g).bfloat16()
    text, no_object = torch.randn(7, 64, generator=g), torch.randn(64, generator=g)
    want = class_logits(query.float(), text, no_object, 0.01)
    with torch.autocast(**BF16):
        got = class_logits(query, text, no_object, 0.01)
    assert got.dtype == torch.float32 and torch.equal(got, want)


def test_proposal_scores_are_float32_under_bf16_autocast():
    from pipeline.proposals.model import predict_proposals

    torch.manual_seed(0)
    net = ProposalNet(ProposalNetConfig()).eval()
    images, text = torch.rand(2, 3, 64, 64), F.normalize(torch.randn(5, 64), dim=-1)
    with torch.autocast(**BF16):
        _, scores = predict_proposals(net, images, text)
    _, fp32 = predict_proposals(net, images, text)
    assert scores.dtype == torch.float32
    assert (scores - fp32).abs().max() < 0.1  # only the bf16 forward differs


def test_a_mining_batch_under_bf16_autocast_is_the_bf16_precision_run(tmp_path):
    """`mine.precision: bf16` takes the GPU's numerical path on the CPU: the crops in
    float32, CLIP under bf16 autocast, the similarities written in float32. A caller's
    autocast around an fp32 run gives the same pairs."""
    from pipeline.mining.mine import mine_pairs
    from pipeline.params import MineParams

    inputs = mining_inputs(tmp_path)
    bf16 = mine_pairs(*inputs, MineParams(masks="gt", crop_batch_size=4, precision="bf16"),
                      tmp_path)
    with torch.autocast(**BF16):
        outer = mine_pairs(*inputs, MineParams(masks="gt", crop_batch_size=4,
                                               precision="fp32"), tmp_path)
    fp32 = mine_pairs(*inputs, MineParams(masks="gt", crop_batch_size=4, precision="fp32"),
                      tmp_path)
    assert bf16 == outer
    cols, ref = bf16[0], fp32[0]
    assert cols["image_id"] == ref["image_id"] and cols["noun"] == ref["noun"]
    assert len(cols["image_id"]) == 12
    assert max(abs(a - b) for a, b in zip(cols["similarity"], ref["similarity"])) < 0.05
    assert bf16 != fp32  # the bf16 path did run in bf16


def test_precision_names_where_bf16_autocast_runs():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert [uses_bf16(d, p) for d in (cpu, cuda) for p in ("auto", "bf16", "fp32")] == \
        [False, True, False, True, True, False]
    with pytest.raises(ValueError, match="precision must be one of"):
        uses_bf16(cpu, "half")
    with autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
        with full_precision(cpu):
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast(cpu, "auto"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with full_precision(torch.device("meta")):  # a device autocast does not know
        pass


def test_inference_weights_are_bf16_wherever_bf16_autocast_runs():
    """Issue 31: where autocast would cast each weight to bf16 at every forward, the
    inference towers hold bf16 weights; elsewhere eval.dtype decides."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert [weights_dtype(d, p) for d in (cpu, cuda) for p in ("auto", "bf16", "fp32")] == \
        ["float32", "bfloat16", "float32", "bfloat16", "bfloat16", "float32"]
    assert [weights_dtype(d, "fp32", "bfloat16") for d in (cpu, cuda)] == ["bfloat16"] * 2


def test_a_bf16_image_tower_under_autocast_mines_the_pairs_of_fp32_weights(tmp_path):
    """stages/mine_pairs casts the image tower to bf16 where autocast runs it in bf16:
    autocast rounds the fp32 weights to the same bf16 values at each forward, so only the
    ops it keeps in float32 (layer norms) see other weights, and the pairs hardly move."""
    import copy

    from pipeline.clip.mask_classifier import cast_for_inference
    from pipeline.mining.mine import mine_pairs
    from pipeline.params import MineParams

    clip, *inputs = mining_inputs(tmp_path)
    p = MineParams(masks="gt", crop_batch_size=4, precision="bf16")
    want = mine_pairs(clip, *inputs, p, tmp_path)
    tower = copy.deepcopy(clip)
    cast_for_inference(tower.visual, weights_dtype(torch.device("cpu"), p.precision))
    assert tower.visual.conv1.weight.dtype == torch.bfloat16
    got = mine_pairs(tower, *inputs, p, tmp_path)
    cols, ref = got[0], want[0]
    for key in ("image_id", "noun", "proposal_id"):
        assert cols[key] == ref[key], key
    assert max(abs(a - b) for a, b in zip(cols["similarity"], ref["similarity"])) < 0.01
    assert got[1:] == want[1:]


def test_the_segmenter_runs_both_networks_under_its_precision():
    """eval.precision: the proposal net and CLIP under bf16 autocast when it says bf16
    (auto: on CUDA), neither when fp32; the probabilities and label maps stay float32 and
    int64, and near the fp32 run's."""
    from pipeline.segment.segmenter import Segmenter
    from tests.test_proposal_inference import settings_at

    torch.manual_seed(0)
    net, clip = ProposalNet(ProposalNetConfig()).eval(), create_clip("ovseg-tiny-vit").eval()
    text = F.normalize(torch.randn(5, 64), dim=-1)
    image, masks = torch.rand(3, 90, 120), torch.rand(4, 90, 120) > 0.5
    seen = []
    for name, module in (("net", net), ("clip", clip.visual)):
        module.register_forward_pre_hook(
            lambda m, args, name=name: seen.append((name, torch.is_autocast_enabled("cpu"))))
    runs = {}
    for precision in ("fp32", "bf16"):
        seg = Segmenter(net, text, clip, text, **{**settings_at(64), "precision": precision})
        runs[precision] = seg.mask_predictions([image])[0], seg.classify_regions(image, masks)
    assert seen == [("net", False), ("clip", False), ("clip", False),
                    ("net", True), ("clip", True), ("clip", True)]
    (fp32, regions32), (bf16, regions16) = runs["fp32"], runs["bf16"]
    assert bf16.p_clip.dtype == bf16.p_maskformer.dtype == regions16.dtype == torch.float32
    assert (bf16.p_maskformer - fp32.p_maskformer).abs().max() < 0.05
    assert (bf16.p_clip - fp32.p_clip).abs().max() < 0.05
    assert (regions16 - regions32).abs().max() < 0.05
    labels32, labels16 = fp32.label_maps(0.7)[0], bf16.label_maps(0.7)[0]
    for name, labels in labels16.items():
        agree = (labels == labels32[name]).float().mean()
        assert labels.dtype == torch.int64 and agree > 0.95, (name, float(agree))


def test_the_segmenter_takes_decoded_bytes_and_scales_them_where_it_runs():
    """evaluate hands the segmenter uint8 images (a quarter of float32's bytes to copy up):
    the same predictions as the float image in [0, 1], and on `meta` the image goes to
    the net's device before it is scaled or resized."""
    from pipeline.proposals.inference import unit_image
    from pipeline.segment.segmenter import Segmenter
    from tests.test_proposal_inference import settings_at

    torch.manual_seed(0)
    net, clip = ProposalNet(ProposalNetConfig()).eval(), create_clip("ovseg-tiny-vit").eval()
    text = F.normalize(torch.randn(5, 64), dim=-1)
    seg = Segmenter(net, text, clip, text, **{**settings_at(64), "precision": "fp32"})
    image = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8)
    masks = torch.rand(3, 50, 70) > 0.5
    as_bytes, as_float = (seg.mask_predictions([im])[0] for im in (image, image.float() / 255))
    for field in ("p_maskformer", "p_clip", "valid", "mask_logits"):
        assert torch.equal(getattr(as_bytes, field), getattr(as_float, field)), field
    assert torch.equal(seg.classify_regions(image, masks),
                       seg.classify_regions(image.float() / 255, masks))
    up = unit_image(image, "meta")
    assert up.device.type == "meta" and up.dtype == torch.float32
    assert unit_image(torch.rand(3, 4, 4), "cpu").dtype == torch.float32


# devices and processes

@pytest.fixture
def gpus(monkeypatch):
    """torch.cuda reporting `n` GPUs (set_device a no-op): gpus(n)."""
    def report(n: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    return report


def test_cpu_device_runs_one_process_whatever_gpus_the_machine_has(gpus):
    gpus(8)
    assert launch.process_count(0, "cpu") == 1
    assert launch.process_count(0, "auto") == launch.process_count(0, "cuda") == 8
    assert launch.process_count(3, "cpu") == 3


def test_more_processes_than_gpus_stop_before_any_starts(gpus, monkeypatch):
    gpus(2)
    started = []
    monkeypatch.setattr(launch.subprocess, "run", lambda *a, **k: started.append(a))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    with pytest.raises(SystemExit, match="compute.processes is 3.*2 GPU.*compute.device: cpu"):
        launch.relaunch_under_torchrun("stages.evaluate", [], 3, "auto")
    assert not started
    launch.check_one_gpu_each(2, "auto", 2)
    launch.check_one_gpu_each(3, "cpu", 2)  # CPU processes share nothing
    launch.check_one_gpu_each(3, "auto", 0)  # no GPU: auto is the CPU


def test_each_local_rank_gets_its_own_gpu_or_a_message(gpus):
    gpus(2)
    assert select_device("auto", 1) == torch.device("cuda", 1)
    assert select_device("cpu", 5) == torch.device("cpu")
    with pytest.raises(SystemExit, match="local rank 2 has no GPU.*2"):
        select_device("cuda", 2)


def test_live_batchnorm_is_synced_on_gpus_and_named_on_cpus():
    torch.manual_seed(0)
    net = ProposalNet(ProposalNetConfig(backbone="small_cnn"))
    params = list(net.parameters())
    assert live_batchnorms(net)
    synced = with_sync_batchnorm(net, torch.device("cuda", 0))
    norms = [m for m in synced.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    assert all(a is b for a, b in zip(params, synced.parameters()))  # the optimizer's own
    frozen = ProposalNet(ProposalNetConfig(backbone="small_cnn", freeze_bn=True))
    assert not live_batchnorms(frozen) and with_sync_batchnorm(frozen, "cuda") is frozen
    cpu_net = ProposalNet(ProposalNetConfig(backbone="small_cnn"))
    with pytest.warns(UserWarning, match="SyncBatchNorm needs CUDA"):
        assert with_sync_batchnorm(cpu_net, torch.device("cpu")) is cpu_net


NETWORK_STAGES = ("base_clip", "train_proposals", "extract_proposals", "mine_pairs",
                  "finetune", "prompt_tune", "adaptation_report", "evaluate@world_full")


@pytest.mark.parametrize("stage", NETWORK_STAGES)
def test_every_network_stage_honours_compute_device(stage, tmp_path, gpus, monkeypatch):
    """compute.device: cuda on a machine without a GPU stops each stage that runs a network
    before it reads an input, saying what to set: the stage asked for its device."""
    gpus(0)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["compute"]["device"] = "cuda"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)  # no data/, no models/: nothing to read
    module, argv = stage_call(stage)
    with pytest.raises(SystemExit, match="compute.device is cuda, but torch finds no CUDA"):
        module.main(argv)


def test_proposal_training_syncs_its_batchnorm_under_ddp(monkeypatch):
    """train_proposal_net wraps the net through data_parallel (SyncBatchNorm on GPUs)."""
    import pipeline.proposals.training_loop as train
    from pipeline.distributed.process_group import Distributed
    from pipeline.proposals.loss import LossWeights

    wrapped = []
    monkeypatch.setattr(train, "data_parallel", lambda model, ddp: wrapped.append(ddp) or model)
    net = ProposalNet(ProposalNetConfig())
    train.train_proposal_net(net, None, 4, torch.zeros(3, 64), LossWeights(0.1, 1, 20, 1),
                             torch.optim.AdamW(net.parameters()), 0, 2, lambda s: 0.0, 0,
                             ddp=Distributed(0, 2, 0))
    assert wrapped == [Distributed(0, 2, 0)]


def test_the_region_probe_puts_every_clip_and_its_prompts_on_the_stage_device(monkeypatch):
    """adaptation_report's rows (base, FT, FT then MPT) go where compute.device says."""
    from types import SimpleNamespace

    import stages.adaptation_report as report
    from pipeline.params import load_params

    def clip(_path=None):
        return torch.nn.Linear(2, 2)  # a stand-in: only where its weights are matters

    monkeypatch.setattr(report, "load_clip", clip)
    monkeypatch.setattr(report, "was_finetuned", lambda path: True)
    monkeypatch.setattr(report, "load_adapted", lambda path: (
        clip(), torch.zeros(3, 4), {"phases": ["mpt"], "clip_finetuned_before": True}))
    args = SimpleNamespace(adapted="a", base_clip="b", ft_clip="f")
    models, _ = report.variant_models(load_params(REPO / "params.yaml"), args,
                                      torch.device("meta"), None)
    assert set(models) == {"base", "ft", "ft_then_mpt"}
    for row, (model, prompts) in models.items():
        assert model.weight.device.type == "meta", row
        assert prompts is None or prompts.device.type == "meta", row
