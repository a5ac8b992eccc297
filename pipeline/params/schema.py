"""The params schema: one dataclass per stage section of params.yaml, each field with its
default (the paper's value or the embedded world's) and its allowed values.

Every tunable lives in params.yaml (so `dvc exp run -S key=value` can reach it). Loading
checks each key against these dataclasses and stops on an unknown or missing key, a
duplicate key, a wrong type, a non-finite number or an out-of-range value with a message
that names the key and what is allowed. A params file must set every key: the dataclass
defaults document the paper's values and never stand in for a missing key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.params.eval_schema import EvalParams
from pipeline.params.fields import spec


@dataclass(frozen=True)
class CocoPaths:
    """Real COCO layout (detectron2-prepared COCO-Stuff); paths relative to `root`."""

    root: str = spec("datasets/coco", doc="COCO root directory")
    images: str = spec("train2017", doc="folder of training JPEGs")
    captions: str = spec("annotations/captions_train2017.json", doc="COCO captions JSON")
    labels: str = spec("stuffthingmaps_detectron2/train2017", doc="COCO-Stuff label PNGs")
    probe_images: int = spec(2000, ge=1, doc="images scanned for single-thing probe samples")


@dataclass(frozen=True)
class DataParams:
    source: str = spec("synthetic", choices=("synthetic", "coco"))
    seed: int = spec(0, ge=0)
    image_size: int = spec(64, ge=32, le=1024, doc="synthetic image side in pixels")
    train_images: int = spec(10000, ge=8)
    eval_images: int = spec(300, ge=4, doc="images per synthetic evaluation split")
    probe_images: int = spec(640, ge=4, doc="single-object images for the CLIP probe")
    captions_per_image: int = spec(5, ge=1, le=10)
    max_things: int = spec(4, ge=1, le=8, doc="thing objects per training image, at most")
    workers: int = spec(2, ge=1, le=64, doc="processes for rendering and checking images")
    # stop by default: a training set that silently shrinks changes results unnoticed.
    bad_items: str = spec("stop", choices=("stop", "skip"),
                          doc="a bad image, label map or captions entry: stop naming it and "
                              "the fix, or skip it (left out, counted in the check metrics)")
    coco: CocoPaths = field(default_factory=CocoPaths)


@dataclass(frozen=True)
class ClipParams:
    pretrained: str = spec(
        "", doc="open_clip pretrained tag or local checkpoint; empty: pretrain from scratch"
    )
    arch: str = spec("ovseg-tiny-vit", doc="open_clip model config name")
    templates: str = spec("vild", choices=("vild", "single"),
                          doc="text prompt templates: ViLD's 14 (OVSeg) or one")
    seed: int = spec(0, ge=0)
    steps: int = spec(300, ge=1)
    batch_size: int = spec(128, ge=2)
    lr: float = spec(2e-3, ge=0.0, le=1.0)
    weight_decay: float = spec(0.1, ge=0.0, le=10.0)
    warmup_steps: int = spec(30, ge=0)
    threads: int = spec(2, ge=1, le=256, doc="torch CPU threads")
    probe_batch_size: int = spec(256, ge=1)
    control_steps: int = spec(600, ge=1, doc="steps of the outline-only control classifier")


@dataclass(frozen=True)
class ProposalParams:
    """The proposal net and its training, after MaskFormer (Cheng et al. 2021) as OVSeg §3.1
    and §4.1 train it; the defaults are the paper's R101c setting (ov-seg's
    configs/ovseg_R101c_vitB_bs32_120k.yaml), params.yaml sets the synthetic world's."""

    source: str = spec("net", choices=("net", "gt"),
                       doc="net: the trained proposal net; gt: ground-truth segments")
    backbone: str = spec("timm:resnet101c",
                         doc="small_cnn, or timm:<model name> (features at strides 4-32)")
    backbone_weights: str = spec("", doc="'' random init, 'download' timm's, or a file")
    freeze_bn: bool = spec(True, doc="backbone BatchNorm frozen (detectron2's FrozenBN)")
    width: int = spec(32, ge=4, doc="small_cnn first-stage channels")
    hidden: int = spec(256, ge=8, doc="pixel decoder / transformer width")
    queries: int = spec(100, ge=1, le=1000)
    decoder_layers: int = spec(6, ge=1, le=24)
    heads: int = spec(8, ge=1)
    dim_feedforward: int = spec(2048, ge=1, doc="transformer decoder feed-forward width")
    dropout: float = spec(0.1, ge=0.0, lt=1.0, doc="transformer decoder dropout")
    temperature: float = spec(0.01, ge=1e-4, le=1.0, doc="of the cosine class logits")
    crop_size: int = spec(512, ge=32, le=2048, doc="training crop side (Swin-B: 640)")
    scale_min: float = spec(0.5, gt=0.0, le=10.0, doc="short side jitter, x crop_size")
    scale_max: float = spec(2.0, gt=0.0, le=10.0, doc="short side jitter, x crop_size")
    single_category_max_area: float = spec(1.0, gt=0.0, le=1.0,
                                           doc="crop retried while one class exceeds it")
    flip: bool = spec(True, doc="random horizontal flip")
    color_jitter: bool = spec(True, doc="photometric jitter (SSD's)")
    mask_loss: str = spec("focal", choices=("focal", "bce"), doc="MaskFormer: focal")
    mask_loss_pixels: str = spec("labelled", choices=("labelled", "all"),
                                 doc="labelled: ignore-label pixels leave the mask losses")
    focal_alpha: float = spec(0.25, ge=0.0, le=1.0)
    focal_gamma: float = spec(2.0, ge=0.0, le=10.0)
    short_side: int = spec(512, ge=32, le=4096, doc="inference: short side, aspect kept")
    size_divisor: int = spec(32, ge=1, le=256, doc="inference: pad to a multiple")
    steps: int = spec(120000, ge=1)
    batch_size: int = spec(32, ge=1, doc="images per step, over all processes")
    lr: float = spec(2e-4, ge=0.0, le=1.0)
    weight_decay: float = spec(1e-4, ge=0.0, le=10.0)
    lr_schedule: str = spec("poly", choices=("poly", "cosine"))
    poly_power: float = spec(0.9, gt=0.0, le=10.0)
    warmup_steps: int = spec(1500, ge=0)
    backbone_lr_multiplier: float = spec(0.1, ge=0.0, le=10.0)
    grad_clip_norm: float = spec(0.01, ge=0.0, doc="full-model L2 norm; 0: off")
    autocast: str = spec("bf16", choices=("bf16", "off"), doc="on CUDA only")
    no_object_weight: float = spec(0.1, ge=0.0)
    mask_weight: float = spec(20.0, ge=0.0)
    dice_weight: float = spec(1.0, ge=0.0)
    seed: int = spec(0, ge=0)
    threads: int = spec(2, ge=1, le=256, doc="torch CPU threads per process")
    loader_workers: int = spec(0, ge=0, le=64, doc="train_proposals: processes reading and "
                               "augmenting batches ahead of the step (0: the training "
                               "process); the batches are the same")
    checkpoint_every: int = spec(100, ge=1, doc="steps between resumable checkpoints")
    extract_batch_size: int = spec(64, ge=1)
    min_score: float = spec(0.0, ge=0.0, le=1.0, doc="drop proposals scoring below this")
    row_group_size: int = spec(8192, ge=1, doc="parquet rows per row group")
    recall_images: int = spec(300, ge=1, doc="images per split for metrics/proposals.json")

    @property
    def precision(self) -> str:
        """`autocast` as pipeline/distributed/precision.py reads it: bf16 on CUDA only."""
        return "auto" if self.autocast == "bf16" else "fp32"


@dataclass(frozen=True)
class MineParams:
    masks: str = spec("proposals", choices=("proposals", "gt"),
                      doc="regions nouns are matched to")
    nouns: str = spec("captions", choices=("captions", "gt_classes"),
                      doc="caption nouns, or the labelled classes' names")
    captions_per_image: int = spec(1, ge=1, le=10, doc="OVSeg: 1")
    max_images: int = spec(0, ge=0, doc="mine the first N training images; 0: all")
    fill: str = spec("mean", choices=("mean", "zero"), doc="masked-crop background")
    expand_ratio: float = spec(1.0, ge=1.0, le=3.0, doc="masked-crop box growth")
    threads: int = spec(2, ge=1, le=256)
    row_group_size: int = spec(65536, ge=1)
    crop_batch_size: int = spec(512, ge=1, doc="masked crops per CLIP forward")
    precision: str = spec("auto", choices=("auto", "bf16", "fp32"),
                          doc="CLIP on the crops; auto: bf16 autocast (the image tower in bf16) "
                              "on GPU, fp32 on CPU")


@dataclass(frozen=True)
class ShardParams:
    crop_size: int = spec(64, ge=8, le=1024, doc="crop side; CLIP's input size")
    expand_ratio: float = spec(1.0, ge=1.0, le=3.0, doc="crop box growth")
    samples_per_shard: int = spec(2000, ge=1)
    min_shards: int = spec(4, ge=1, doc="at least one shard per loader worker")
    jpeg_quality: int = spec(95, ge=1, le=100)
    seed: int = spec(0, ge=0, doc="which shard each sample goes to")
    threads: int = spec(2, ge=1, le=256)


@dataclass(frozen=True)
class AdaptParams:
    """Shared by finetune, prompt_tune and adaptation_report."""

    fill: str = spec("mean", choices=("mean", "zero"),
                     doc="masked-crop background, applied after augmentation")
    scale_min: float = spec(0.9, gt=0.0, le=1.0, doc="random resized crop: least area kept")
    scale_max: float = spec(1.0, gt=0.0, le=1.0, doc="random resized crop: most area kept")
    shuffle_buffer: int = spec(2000, ge=1, doc="samples in the seeded shuffle buffer")
    workers: int = spec(0, ge=0, le=64, doc="loader processes per training process")
    threads: int = spec(2, ge=1, le=256, doc="torch CPU threads per process")
    precision: str = spec("auto", choices=("auto", "fp32", "bf16"),
                          doc="auto: bf16 autocast on GPU, fp32 on CPU")
    seed: int = spec(0, ge=0)
    eval_batch_size: int = spec(256, ge=1)
    mpt_only_row: bool = spec(False, doc="adaptation_report trains MPT on the base CLIP for "
                                         "its 'mpt' row when the pipeline did not")


@dataclass(frozen=True)
class FinetuneParams:
    enabled: bool = spec(True)
    epochs: float = spec(5.0, gt=0.0, doc="passes over the shards (OVSeg: 5)")
    batch_size: int = spec(128, ge=2, doc="global, over all processes")
    lr: float = spec(5e-6, ge=0.0, le=1.0, doc="OVSeg: 5e-6 for a pretrained ViT-L")
    weight_decay: float = spec(0.2, ge=0.0, le=10.0)
    warmup_steps: int = spec(10, ge=0)
    checkpoint_every: int = spec(50, ge=1, doc="steps between resumable checkpoints")


@dataclass(frozen=True)
class PromptTuneParams:
    enabled: bool = spec(True)
    order: str = spec("ft_then_mpt", choices=("ft_then_mpt", "mpt_then_ft", "simultaneous"))
    depth: int = spec(3, ge=1, doc="prompted ViT blocks (OVSeg: 3)")
    epochs: float = spec(5.0, gt=0.0)
    batch_size: int = spec(128, ge=2, doc="global, over all processes")
    lr: float = spec(2e-2, ge=0.0, le=10.0)
    weight_decay: float = spec(0.0, ge=0.0, le=10.0)
    warmup_steps: int = spec(10, ge=0)
    checkpoint_every: int = spec(50, ge=1)


@dataclass(frozen=True)
class ComputeParams:
    """Where and how wide the stages run (README, "Every GPU and every machine"), and what
    an empty output does. Neither the device, the process count nor `empty_outputs` is a
    DVC param of any stage: the data stages write the same bytes with any process count,
    and an output is the same whether a warning or a stop was asked for (a stopped stage
    writes nothing, so DVC runs it again)."""

    device: str = spec("auto", choices=("auto", "cpu", "cuda"),
                       doc="auto: each process's GPU when CUDA is there, else the CPU")
    processes: int = spec(0, ge=0, le=4096,
                          doc="torchrun processes per heavy stage under dvc repro; "
                              "0: one per visible GPU, 1 without one")
    chunk_images: int = spec(500, ge=1,
                             doc="images per resumable chunk of the data stages")
    # stop by default (as data.bad_items): an empty proposal set or pair set would
    # otherwise surface only stages later, at finetune, after hours on COCO.
    empty_outputs: str = spec("stop", choices=("stop", "warn"),
                              doc="a stage whose whole output is empty or degenerate (no "
                                  "proposals, no pairs, one class everywhere): stop naming "
                                  "the likely cause, or warn and write it")


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
