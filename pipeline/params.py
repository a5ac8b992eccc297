"""Typed, validated view of params.yaml: one dataclass per stage section.

Every tunable lives in params.yaml (so `dvc exp run -S key=value` can reach it). Loading
checks each key against these dataclasses and stops on an unknown or missing key, a
duplicate key, a wrong type, a non-finite number or an out-of-range value with a message
that names the key and what is allowed. A params file must set every key: the dataclass
defaults document the paper's values and never stand in for a missing key.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ParamsError(ValueError):
    """A params.yaml value that cannot be used; the message names the key."""


def _spec(default, *, ge=None, gt=None, le=None, lt=None, choices=None, check=None, doc=""):
    """A dataclass field carrying its allowed range or choices; `check(key, value)`
    validates (and may normalise) what a list or mapping holds."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "check": check,
            "doc": doc}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class CocoPaths:
    """Real COCO layout (detectron2-prepared COCO-Stuff); paths relative to `root`."""

    root: str = _spec("datasets/coco", doc="COCO root directory")
    images: str = _spec("train2017", doc="folder of training JPEGs")
    captions: str = _spec("annotations/captions_train2017.json", doc="COCO captions JSON")
    labels: str = _spec("stuffthingmaps_detectron2/train2017", doc="COCO-Stuff label PNGs")
    probe_images: int = _spec(2000, ge=1, doc="images scanned for single-thing probe samples")


@dataclass(frozen=True)
class DataParams:
    source: str = _spec("synthetic", choices=("synthetic", "coco"))
    seed: int = _spec(0, ge=0)
    image_size: int = _spec(64, ge=32, le=1024, doc="synthetic image side in pixels")
    train_images: int = _spec(10000, ge=8)
    eval_images: int = _spec(300, ge=4, doc="images per synthetic evaluation split")
    probe_images: int = _spec(640, ge=4, doc="single-object images for the CLIP probe")
    captions_per_image: int = _spec(5, ge=1, le=10)
    max_things: int = _spec(4, ge=1, le=8, doc="thing objects per training image, at most")
    workers: int = _spec(2, ge=1, le=64, doc="processes for rendering and checking images")
    # stop by default: a training set that silently shrinks changes results unnoticed.
    bad_items: str = _spec("stop", choices=("stop", "skip"),
                           doc="a bad image, label map or captions entry: stop naming it and "
                               "the fix, or skip it (left out, counted in the check metrics)")
    coco: CocoPaths = field(default_factory=CocoPaths)


@dataclass(frozen=True)
class ClipParams:
    pretrained: str = _spec(
        "", doc="open_clip pretrained tag or local checkpoint; empty: pretrain from scratch"
    )
    arch: str = _spec("ovseg-tiny-vit", doc="open_clip model config name")
    templates: str = _spec("vild", choices=("vild", "single"),
                           doc="text prompt templates: ViLD's 14 (OVSeg) or one")
    seed: int = _spec(0, ge=0)
    steps: int = _spec(300, ge=1)
    batch_size: int = _spec(128, ge=2)
    lr: float = _spec(2e-3, ge=0.0, le=1.0)
    weight_decay: float = _spec(0.1, ge=0.0, le=10.0)
    warmup_steps: int = _spec(30, ge=0)
    threads: int = _spec(2, ge=1, le=256, doc="torch CPU threads")
    probe_batch_size: int = _spec(256, ge=1)
    control_steps: int = _spec(600, ge=1, doc="steps of the outline-only control classifier")


@dataclass(frozen=True)
class ProposalParams:
    """The proposal net and its training, after MaskFormer (Cheng et al. 2021) as OVSeg §3.1
    and §4.1 train it; the defaults are the paper's R101c setting (ov-seg's
    configs/ovseg_R101c_vitB_bs32_120k.yaml), params.yaml sets the synthetic world's."""

    source: str = _spec("net", choices=("net", "gt"),
                        doc="net: the trained proposal net; gt: ground-truth segments")
    backbone: str = _spec("timm:resnet101c",
                          doc="small_cnn, or timm:<model name> (features at strides 4-32)")
    backbone_weights: str = _spec("", doc="'' random init, 'download' timm's, or a file")
    freeze_bn: bool = _spec(True, doc="backbone BatchNorm frozen (detectron2's FrozenBN)")
    width: int = _spec(32, ge=4, doc="small_cnn first-stage channels")
    hidden: int = _spec(256, ge=8, doc="pixel decoder / transformer width")
    queries: int = _spec(100, ge=1, le=1000)
    decoder_layers: int = _spec(6, ge=1, le=24)
    heads: int = _spec(8, ge=1)
    dim_feedforward: int = _spec(2048, ge=1, doc="transformer decoder feed-forward width")
    dropout: float = _spec(0.1, ge=0.0, lt=1.0, doc="transformer decoder dropout")
    temperature: float = _spec(0.01, ge=1e-4, le=1.0, doc="of the cosine class logits")
    crop_size: int = _spec(512, ge=32, le=2048, doc="training crop side (Swin-B: 640)")
    scale_min: float = _spec(0.5, gt=0.0, le=10.0, doc="short side jitter, x crop_size")
    scale_max: float = _spec(2.0, gt=0.0, le=10.0, doc="short side jitter, x crop_size")
    single_category_max_area: float = _spec(1.0, gt=0.0, le=1.0,
                                            doc="crop retried while one class exceeds it")
    flip: bool = _spec(True, doc="random horizontal flip")
    color_jitter: bool = _spec(True, doc="photometric jitter (SSD's)")
    mask_loss: str = _spec("focal", choices=("focal", "bce"), doc="MaskFormer: focal")
    mask_loss_pixels: str = _spec("labelled", choices=("labelled", "all"),
                                  doc="labelled: ignore-label pixels leave the mask losses")
    focal_alpha: float = _spec(0.25, ge=0.0, le=1.0)
    focal_gamma: float = _spec(2.0, ge=0.0, le=10.0)
    short_side: int = _spec(512, ge=32, le=4096, doc="inference: short side, aspect kept")
    size_divisor: int = _spec(32, ge=1, le=256, doc="inference: pad to a multiple")
    steps: int = _spec(120000, ge=1)
    batch_size: int = _spec(32, ge=1, doc="images per step, over all processes")
    lr: float = _spec(2e-4, ge=0.0, le=1.0)
    weight_decay: float = _spec(1e-4, ge=0.0, le=10.0)
    lr_schedule: str = _spec("poly", choices=("poly", "cosine"))
    poly_power: float = _spec(0.9, gt=0.0, le=10.0)
    warmup_steps: int = _spec(1500, ge=0)
    backbone_lr_multiplier: float = _spec(0.1, ge=0.0, le=10.0)
    grad_clip_norm: float = _spec(0.01, ge=0.0, doc="full-model L2 norm; 0: off")
    autocast: str = _spec("bf16", choices=("bf16", "off"), doc="on CUDA only")
    no_object_weight: float = _spec(0.1, ge=0.0)
    mask_weight: float = _spec(20.0, ge=0.0)
    dice_weight: float = _spec(1.0, ge=0.0)
    seed: int = _spec(0, ge=0)
    threads: int = _spec(2, ge=1, le=256, doc="torch CPU threads per process")
    checkpoint_every: int = _spec(100, ge=1, doc="steps between resumable checkpoints")
    extract_batch_size: int = _spec(64, ge=1)
    min_score: float = _spec(0.0, ge=0.0, le=1.0, doc="drop proposals scoring below this")
    row_group_size: int = _spec(8192, ge=1, doc="parquet rows per row group")
    recall_images: int = _spec(300, ge=1, doc="images per split for metrics/proposals.json")

    @property
    def precision(self) -> str:
        """`autocast` as pipeline/distributed/precision.py reads it: bf16 on CUDA only."""
        return "auto" if self.autocast == "bf16" else "fp32"


@dataclass(frozen=True)
class MineParams:
    masks: str = _spec("proposals", choices=("proposals", "gt"),
                       doc="regions nouns are matched to")
    nouns: str = _spec("captions", choices=("captions", "gt_classes"),
                       doc="caption nouns, or the labelled classes' names")
    captions_per_image: int = _spec(1, ge=1, le=10, doc="OVSeg: 1")
    max_images: int = _spec(0, ge=0, doc="mine the first N training images; 0: all")
    fill: str = _spec("mean", choices=("mean", "zero"), doc="masked-crop background")
    expand_ratio: float = _spec(1.0, ge=1.0, le=3.0, doc="masked-crop box growth")
    threads: int = _spec(2, ge=1, le=256)
    row_group_size: int = _spec(65536, ge=1)
    crop_batch_size: int = _spec(512, ge=1, doc="masked crops per CLIP forward")
    precision: str = _spec("auto", choices=("auto", "bf16", "fp32"),
                           doc="CLIP on the crops; auto: bf16 autocast on GPU, fp32 on CPU")


@dataclass(frozen=True)
class ShardParams:
    crop_size: int = _spec(64, ge=8, le=1024, doc="crop side; CLIP's input size")
    expand_ratio: float = _spec(1.0, ge=1.0, le=3.0, doc="crop box growth")
    samples_per_shard: int = _spec(2000, ge=1)
    min_shards: int = _spec(4, ge=1, doc="at least one shard per loader worker")
    jpeg_quality: int = _spec(95, ge=1, le=100)
    seed: int = _spec(0, ge=0, doc="which shard each sample goes to")
    threads: int = _spec(2, ge=1, le=256)


@dataclass(frozen=True)
class AdaptParams:
    """Shared by finetune, prompt_tune and adaptation_report."""

    fill: str = _spec("mean", choices=("mean", "zero"),
                      doc="masked-crop background, applied after augmentation")
    scale_min: float = _spec(0.9, gt=0.0, le=1.0, doc="random resized crop: least area kept")
    scale_max: float = _spec(1.0, gt=0.0, le=1.0, doc="random resized crop: most area kept")
    shuffle_buffer: int = _spec(2000, ge=1, doc="samples in the seeded shuffle buffer")
    workers: int = _spec(0, ge=0, le=64, doc="loader processes per training process")
    threads: int = _spec(2, ge=1, le=256, doc="torch CPU threads per process")
    precision: str = _spec("auto", choices=("auto", "fp32", "bf16"),
                           doc="auto: bf16 autocast on GPU, fp32 on CPU")
    seed: int = _spec(0, ge=0)
    eval_batch_size: int = _spec(256, ge=1)
    mpt_only_row: bool = _spec(False, doc="adaptation_report trains MPT on the base CLIP for "
                                          "its 'mpt' row when the pipeline did not")


@dataclass(frozen=True)
class FinetuneParams:
    enabled: bool = _spec(True)
    epochs: float = _spec(5.0, gt=0.0, doc="passes over the shards (OVSeg: 5)")
    batch_size: int = _spec(128, ge=2, doc="global, over all processes")
    lr: float = _spec(5e-6, ge=0.0, le=1.0, doc="OVSeg: 5e-6 for a pretrained ViT-L")
    weight_decay: float = _spec(0.2, ge=0.0, le=10.0)
    warmup_steps: int = _spec(10, ge=0)
    checkpoint_every: int = _spec(50, ge=1, doc="steps between resumable checkpoints")


@dataclass(frozen=True)
class PromptTuneParams:
    enabled: bool = _spec(True)
    order: str = _spec("ft_then_mpt", choices=("ft_then_mpt", "mpt_then_ft", "simultaneous"))
    depth: int = _spec(3, ge=1, doc="prompted ViT blocks (OVSeg: 3)")
    epochs: float = _spec(5.0, gt=0.0)
    batch_size: int = _spec(128, ge=2, doc="global, over all processes")
    lr: float = _spec(2e-2, ge=0.0, le=10.0)
    weight_decay: float = _spec(0.0, ge=0.0, le=10.0)
    warmup_steps: int = _spec(10, ge=0)
    checkpoint_every: int = _spec(50, ge=1)


# eval.per_dataset: the keys a dataset may set for itself, over the section's own.
EVAL_OVERRIDES = ("ensemble_lambda", "mask_threshold")


def _check_per_dataset(key: str, value: dict) -> dict:
    """eval.per_dataset: {dataset: {ensemble_lambda | mask_threshold: value}}, each value
    checked as the section's key of that name. Dataset names are checked against the
    known sets by pipeline/params_checks.py."""
    specs = {f.name: dict(f.metadata) for f in dataclasses.fields(EvalParams)}
    out = {}
    for name, entry in value.items():
        where = _join(key, str(name))
        if not isinstance(entry, dict):
            raise ParamsError(f"params: '{where}' must be a mapping of "
                              f"{' and/or '.join(EVAL_OVERRIDES)}, got {entry!r}")
        unknown = sorted(set(entry) - set(EVAL_OVERRIDES))
        if unknown:
            raise ParamsError(f"params: unknown key '{where}.{unknown[0]}'; allowed: "
                              f"{', '.join(EVAL_OVERRIDES)}")
        out[str(name)] = {k: _check_value(_join(where, k), v, float, specs[k])
                          for k, v in entry.items()}
    return out


def _check_lambdas(key: str, value: list) -> list:
    """eval.lambda_sweep: distinct ensemble weights in [0, 1]."""
    lams = [_check_value(f"{key}[{i}]", v, float, {"ge": 0.0, "le": 1.0})
            for i, v in enumerate(value)]
    if len(set(lams)) != len(lams):
        raise ParamsError(f"params: '{key}' repeats a value: {lams}")
    return lams


@dataclass(frozen=True)
class EvalParams:
    """Evaluation as OVSeg's (§4.1; ov-seg's configs and GETTING_STARTED.md): single scale,
    the defaults are the R101c setting (configs/ovseg_R101c_vitB_bs32_120k.yaml: short
    side 512, MASK_THR 0.5; Swin-B: 640 and 0.4) with the paper's per-dataset ensemble
    weights, which ov-seg's released commands set (0.7 ADE, 0.6 Pascal Context, 0.45 VOC).
    params.yaml sets the synthetic world's."""

    datasets: list = _spec(["world_full", "world_things"],
                           doc="synthetic eval splits and/or ade20k_150, ade20k_847, "
                               "pascal_context_59, pascal_context_459, pascal_voc_20 (or "
                               "their ov-seg / SAN names, pipeline/data/eval_datasets.py)")
    root: str = _spec("datasets", doc="root of the real evaluation sets (detectron2 layouts)")
    ensemble_lambda: float = _spec(0.7, ge=0.0, le=1.0,
                                   doc="CLIP's share of the geometric ensemble, for sets "
                                       "per_dataset does not list (ov-seg's config: 0.7)")
    mask_threshold: float = _spec(0.5, gt=0.0, lt=1.0,
                                  doc="sigmoid(mask) > this is cropped, for sets per_dataset "
                                      "does not list (R101c: 0.5, Swin-B: 0.4)")
    per_dataset: dict = _spec(
        {"ade20k_150": {"ensemble_lambda": 0.7}, "ade20k_847": {"ensemble_lambda": 0.7},
         "pascal_context_59": {"ensemble_lambda": 0.6},
         "pascal_context_459": {"ensemble_lambda": 0.6},
         "pascal_voc_20": {"ensemble_lambda": 0.45}},
        check=_check_per_dataset,
        doc="{dataset (canonical name): {ensemble_lambda, mask_threshold}} over the above")
    lambda_sweep: list = _spec([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                               check=_check_lambdas,
                               doc="ensemble weights also scored, from the same CLIP pass "
                                   "(OVSeg appendix A.5); empty: off")
    fill: str = _spec("mean", choices=("mean", "zero", "none"),
                      doc="masked-crop background; none: crop without the mask, background "
                          "kept (OVSeg appendix A.1)")
    bottleneck: bool = _spec(True, doc="also score OVSeg Fig. 1(c)'s ground-truth masks + "
                                       "CLIP and proposals + oracle classes")
    short_side: int = _spec(512, ge=0, doc="resize images to this short side, aspect kept "
                                           "(R101c: 512, Swin-B: 640); 0: as stored")
    max_images: int = _spec(0, ge=0, doc="evaluate the first N images; 0: all")
    overlays: int = _spec(4, ge=1, le=32, doc="images drawn with their predictions")
    dtype: str = _spec("float32", choices=("float32", "bfloat16"),
                       doc="CLIP weights for inference (bf16 pays on CPUs with AMX/AVX512-BF16)")
    batch_size: int = _spec(256, ge=1, doc="masked crops per CLIP forward")
    images_per_batch: int = _spec(16, ge=1, doc="images per proposal-net forward")
    threads: int = _spec(2, ge=1, le=256)

    def settings_for(self, name: str) -> tuple[float, float]:
        """(ensemble_lambda, mask_threshold) of evaluation set `name` (canonical name):
        its per_dataset entry's, else the section's."""
        own = self.per_dataset.get(name, {})
        return (own.get("ensemble_lambda", self.ensemble_lambda),
                own.get("mask_threshold", self.mask_threshold))


@dataclass(frozen=True)
class ComputeParams:
    """Where and how wide the stages run (README, "Every GPU and every machine"). Neither
    the device nor the process count is a DVC param of any stage: the data stages write
    the same bytes with any process count."""

    device: str = _spec("auto", choices=("auto", "cpu", "cuda"),
                        doc="auto: each process's GPU when CUDA is there, else the CPU")
    processes: int = _spec(0, ge=0, le=4096,
                           doc="torchrun processes per heavy stage under dvc repro; "
                               "0: one per visible GPU, 1 without one")
    chunk_images: int = _spec(500, ge=1,
                              doc="images per resumable chunk of the data stages")


@dataclass(frozen=True)
class Params:
    compute: ComputeParams = field(default_factory=ComputeParams)
    data: DataParams = field(default_factory=DataParams)
    clip: ClipParams = field(default_factory=ClipParams)
    proposals: ProposalParams = field(default_factory=ProposalParams)
    mine: MineParams = field(default_factory=MineParams)
    shards: ShardParams = field(default_factory=ShardParams)
    adapt: AdaptParams = field(default_factory=AdaptParams)
    ft: FinetuneParams = field(default_factory=FinetuneParams)
    mpt: PromptTuneParams = field(default_factory=PromptTuneParams)
    eval: EvalParams = field(default_factory=EvalParams)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _check_value(key: str, value: Any, tp, meta: dict) -> Any:
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"params: '{key}' must be a mapping of {_type_name(tp)} keys")
        return _build(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    # YAML reads 1e-3 without a dot as a string; accept it where a float is expected.
    if tp is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"params: '{key}' = {value!r}; must be a finite number")
    if tp is bool and not isinstance(value, bool) or (
        tp is not bool and (not isinstance(value, tp) or isinstance(value, bool))
    ):
        raise ParamsError(
            f"params: '{key}' must be {_type_name(tp)}, got {value!r} ({type(value).__name__})"
        )
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ParamsError(f"params: '{key}' = {value!r}; allowed: {', '.join(meta['choices'])}")
    if meta.get("ge") is not None and value < meta["ge"]:
        raise ParamsError(f"params: '{key}' = {value!r}; must be >= {meta['ge']}")
    if meta.get("gt") is not None and value <= meta["gt"]:
        raise ParamsError(f"params: '{key}' = {value!r}; must be > {meta['gt']}")
    if meta.get("lt") is not None and value >= meta["lt"]:
        raise ParamsError(f"params: '{key}' = {value!r}; must be < {meta['lt']}")
    if meta.get("le") is not None and value > meta["le"]:
        raise ParamsError(f"params: '{key}' = {value!r}; must be <= {meta['le']}")
    if meta.get("check") is not None:
        value = meta["check"](key, value)
    return value


def _build(cls, raw: dict, prefix: str = "", complete: bool = False):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"'{prefix}'" if prefix else "the top level"
        raise ParamsError(
            f"params: unknown key '{_join(prefix, unknown[0])}' in {where}; "
            f"allowed: {', '.join(sorted(fields))}"
        )
    missing = [name for name in fields if name not in raw]
    if complete and missing:
        raise ParamsError(f"params: missing key '{_join(prefix, missing[0])}'; a params file "
                          "sets every key (copy it from the committed params.yaml)")
    values = {}
    for name, value in raw.items():
        key, tp = _join(prefix, name), hints[name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            values[name] = _build(tp, value, key, complete)
        else:
            values[name] = _check_value(key, value, tp, dict(fields[name].metadata))
    return cls(**values)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def parse_params(raw: dict | None, complete: bool = False) -> Params:
    """Validate a params mapping (as read from YAML) into `Params`; `complete`: every key
    must be present (a file), otherwise missing keys take the dataclass defaults (tests)."""
    return _build(Params, raw or {}, complete=complete)


def load_params(path: str | Path = "params.yaml") -> Params:
    """The complete params of a file, each key validated. The checks across sections, which
    need the CLIP's model config, are pipeline/params_checks.py's (the check_params stage)."""
    from pipeline.params_file import read_params_yaml

    return parse_params(read_params_yaml(path), complete=True)


def to_dict(params) -> dict:
    return dataclasses.asdict(params)
