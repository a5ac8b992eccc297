"""Two-stage open-vocabulary segmentation of one image (OVSeg §3.1): the proposal net
gives masks and MaskFormer class probabilities over the vocabulary; CLIP (with its mask
prompts, if any) classifies each mask's crop; `two_stage` ensembles and fuses them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.clip.mask_classifier import (
    CLIP_LOGIT_SCALE,
    classify_masks,
    crop_cosines,
    crops_for_clip,
)
from pipeline.distributed.precision import autocast, weights_dtype
from pipeline.distributed.transfers import to_device
from pipeline.params import Params
from pipeline.proposals.inference import masks_to_image, net_batch, unit_image
from pipeline.proposals.model import ProposalNet, class_logits
from pipeline.segment.two_stage import (
    crop_masks,
    ensemble,
    fused_labels,
    mask_probs,
    maskformer_probs,
    variant_probs,
)


def image_tensor(image) -> torch.Tensor:
    """(H, W, 3) uint8 array -> (3, H, W) uint8 tensor, as decoded: the segmenter scales it
    to [0, 1] on its device (a quarter of float32's bytes go up)."""
    return torch.from_numpy(image.copy()).permute(2, 0, 1)


@dataclass
class MaskPredictions:
    """One image's two-stage evidence before the ensemble: per mask, MaskFormer's and
    CLIP's class probabilities; the label maps of any λ are a cheap recombination. All on
    the device the segmenter runs on, so that the fusion of Q full-size masks with K
    classes (Q x K x H x W multiply-adds per λ) runs there too."""

    p_maskformer: torch.Tensor  # (Q, K)
    p_clip: torch.Tensor  # (Q, K), zero rows where the crop is empty
    valid: torch.Tensor  # (Q,) bool, the mask's crop is not empty
    mask_logits: torch.Tensor  # (Q, H, W) at the size of the image handed in

    def label_maps(self, ensemble_lambda: float, size: tuple[int, int] | None = None,
                   sweep: tuple[float, ...] = ()
                   ) -> tuple[dict[str, torch.Tensor], dict[float, torch.Tensor]]:
        """({"maskformer" | "clip" | "ensemble": (h, w) int64 label map}, {λ: ensemble
        label map} for each λ of `sweep`), at `size` (h, w) (default: the image's): the
        sigmoid masks resized bilinearly before the fusion (sem_seg_postprocess). The
        label maps stay on the masks' device (the evaluation counts them there)."""
        masks = mask_probs(self.mask_logits, size)
        variants = {name: fused_labels(probs, masks[keep]) for name, (probs, keep) in
                    variant_probs(self.p_maskformer, self.p_clip, self.valid,
                                  ensemble_lambda).items()}
        swept = {lam: fused_labels(ensemble(self.p_maskformer, self.p_clip, self.valid, lam),
                                   masks) for lam in sweep}
        return variants, swept


@dataclass(frozen=True)
class SegmenterSettings:
    """How the two stages run and fuse; no defaults here: `segmenter_settings` reads them
    from params (pipeline/params/schema.py holds each one's default)."""

    short_side: int  # the proposal net's input short side, aspect kept
    size_divisor: int  # its input padded to a multiple (the backbone's largest stride)
    mask_threshold: float  # sigmoid(mask) above this is in the crop
    ensemble_lambda: float  # λ, CLIP's share of the ensemble (OVSeg §3.1)
    fill: str  # the masked crops' background
    batch_size: int  # masked crops per CLIP forward
    precision: str  # the networks' arithmetic (pipeline/distributed/precision.py)


def segmenter_settings(params: Params, dataset: str | None = None) -> SegmenterSettings:
    """proposals.short_side and size_divisor, and eval's mask threshold, λ (both per set
    where eval.per_dataset names `dataset`, a canonical name), fill, batch size and
    precision."""
    p = params.eval
    lam, threshold = p.settings_for(dataset) if dataset else (p.ensemble_lambda,
                                                              p.mask_threshold)
    return SegmenterSettings(params.proposals.short_side, params.proposals.size_divisor,
                             threshold, lam, p.fill, p.batch_size, p.precision)


@dataclass
class Segmenter:
    net: ProposalNet
    net_text: torch.Tensor  # (K, E) vocabulary embeddings in the net's text space
    clip: torch.nn.Module
    clip_text: torch.Tensor  # (K, D) unit vectors, CLIP's zero-shot classifier
    short_side: int  # SegmenterSettings' fields, each as there
    size_divisor: int
    mask_threshold: float
    ensemble_lambda: float
    fill: str
    batch_size: int
    precision: str  # bf16 autocast of both networks or not; the fusion is float32
    prompts: torch.Tensor | None = None  # (depth, grid*grid, width) mask prompts

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (3, H, W) in [0, 1] -> {"maskformer" | "clip" | "ensemble": (H, W) int64
        label map} on the CPU."""
        return self.predict_batch([image])[0]

    @torch.no_grad()
    def classify_regions(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """CLIP alone on given masks: image (3, H, W) in [0, 1] or uint8, masks (N, H, W)
        bool -> (N, K) class probabilities of each mask's crop (zero rows for empty masks),
        on the segmenter's device."""
        device = self.clip_text.device  # the crops are cut where CLIP runs
        with autocast(device, self.precision):
            probs, _ = classify_masks(self.clip, unit_image(image, device),
                                      to_device(masks, device),
                                      self.clip_text, self.prompts, self.fill,
                                      batch_size=self.batch_size)
        return probs

    @torch.no_grad()
    def net_outputs(self, images: list[torch.Tensor]
                    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(3, H, W) images in [0, 1] (or uint8, scaled on the device) -> the proposal net's
        class logits (B, Q, K + 1) over the vocabulary, and each image's (Q, H, W) mask
        logits at its own size (one forward for all; inference.py's resize and padding),
        on the net's device."""
        device = self.net_text.device  # resized there (on a GPU, not on its host)
        x, sizes = net_batch([unit_image(im, device) for im in images], self.short_side,
                             self.size_divisor)
        with autocast(device, self.precision):
            out = self.net(x)[-1]
        logits = class_logits(out["query_text"], self.net_text, self.net.no_object,
                              self.net.cfg.temperature)  # (B, Q, K + 1)
        return logits, [masks_to_image(out["mask_logits"][b], size, image.shape[-2:])
                        for b, (image, size) in enumerate(zip(images, sizes))]

    @torch.no_grad()
    def predict_batch(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """`predict` for several images (any sizes): one proposal-net forward for all, and
        the masked crops of all images through CLIP in shared batches. The label maps come
        back on the CPU."""
        return [{name: m.cpu() for name, m in p.label_maps(self.ensemble_lambda)[0].items()}
                for p in self.mask_predictions(images)]

    @torch.no_grad()
    def mask_predictions(self, images: list[torch.Tensor]) -> list[MaskPredictions]:
        """(3, H, W) images in [0, 1] or uint8 -> each image's per-mask probabilities and
        masks: one proposal-net forward for all, the masked crops of all through CLIP in shared
        batches (CLIP runs once per mask, whatever λ the label maps use later)."""
        return self.classify_proposals(images, *self.net_outputs(images))

    @torch.no_grad()
    def classify_proposals(self, images: list[torch.Tensor], logits: torch.Tensor,
                           all_mask_logits: list[torch.Tensor]) -> list[MaskPredictions]:
        """The CLIP half of `mask_predictions`, given `net_outputs(images)`: each mask's
        crop (sigmoid > mask_threshold) through CLIP, in shared batches. The demo calls it
        alone when only the mask threshold changes."""
        device = self.clip_text.device  # the crops are cut where CLIP runs
        per_image = []
        for b, (image, mask_logits) in enumerate(zip(images, all_mask_logits)):
            crops, masks, valid = crops_for_clip(self.clip, unit_image(image, device), crop_masks(
                mask_logits, self.mask_threshold).to(device), self.fill)
            per_image.append((maskformer_probs(logits[b]).float().to(device),
                              mask_logits.to(device), crops[valid], masks[valid], valid))
        with autocast(device, self.precision):
            cos = crop_cosines(self.clip, torch.cat([c for _, _, c, _, _ in per_image]),
                               torch.cat([m for _, _, _, m, _ in per_image]),
                               self.clip_text, self.prompts, self.batch_size)
        p_clip = (CLIP_LOGIT_SCALE * cos.to(device)).softmax(dim=-1)  # (valid crops, K)
        results, start = [], 0
        for p_mf, mask_logits, _, _, valid in per_image:
            p = torch.zeros_like(p_mf)
            p[valid] = p_clip[start:start + int(valid.sum())]
            start += int(valid.sum())
            results.append(MaskPredictions(p_mf, p, valid, mask_logits))
        return results


@dataclass
class SegmenterModels:
    """The pipeline's trained networks, loaded once and set up for any vocabulary by
    `segmenter_for_names` (the demo changes vocabulary without reloading them)."""

    net: ProposalNet  # on `device`
    base_clip: torch.nn.Module  # float32, for the net's class embeddings (its text space)
    text_clip: torch.nn.Module  # the adapted CLIP's float32 text tower, for the crop
    # classifier's text (its image tower is `clip`'s, shared: only `encode_text` runs here)
    clip: torch.nn.Module  # the adapted CLIP cast for inference
    # (all on `device`: a new vocabulary's text features, ADE-847's 12K prompts through
    # two text towers, take seconds on a GPU and minutes on its host)
    prompts: torch.Tensor | None  # (depth, grid*grid, width) mask prompts, on `device`
    tokenizer: object
    device: torch.device
    text_cache: Path
    templates: str
    # (base, adapted) `text_tower_hash`, the text cache's keys: hashed once at load, not
    # per vocabulary (the demo changes vocabulary; on a GPU each hash copies a tower down)
    text_hashes: tuple[str, str]


def load_segmenter_models(proposals_dir: str | Path = "models/proposals",
                          adapted_dir: str | Path = "models/mask_prompts",
                          base_clip_dir: str | Path = "models/clip_base",
                          text_cache: str | Path = ".cache/text_classifiers",
                          dtype: str = "float32", templates: str = "vild",
                          device: torch.device | str = "cpu", precision: str = "fp32"
                          ) -> SegmenterModels:
    """The proposal net, the base CLIP and the adapted CLIP with its prompts, on `device`.
    The crops' CLIP takes `dtype`, or bf16 where `precision` runs it under bf16 autocast
    (`weights_dtype`). The text towers stay in float32 (FT and MPT freeze them; the class
    embeddings are the same whatever dtype the crops run in); the float32 CLIP shares the
    cast one's image tower instead of keeping its own (1.2 GB for ViT-L/14)."""
    import copy

    from pipeline.adapt.adapted_model import load_adapted
    from pipeline.clip.mask_classifier import cast_for_inference
    from pipeline.clip.model import load_clip, tokenizer_for
    from pipeline.clip.text_classifier import text_tower_hash
    from pipeline.proposals.model import load_proposal_net

    device = torch.device(device)
    net, _, _ = load_proposal_net(proposals_dir)
    base = load_clip(base_clip_dir).eval()
    clip, prompts, _ = load_adapted(adapted_dir)
    clip = clip.eval()
    hashes = (text_tower_hash(base), text_tower_hash(clip))  # on the host, before the copy
    dtype = weights_dtype(device, precision, dtype)
    image_clip = cast_for_inference(clip if dtype == "float32" else copy.deepcopy(clip), dtype)
    clip.visual = image_clip.visual
    return SegmenterModels(net.to(device), base.to(device), clip.to(device),
                           image_clip.to(device),
                           None if prompts is None else prompts.to(device),
                           tokenizer_for(base_clip_dir), device, Path(text_cache), templates,
                           hashes)


def models_dtype(models: SegmenterModels) -> str:
    """The dtype the crops' CLIP runs in: "float32", or "bfloat16" under bf16 precision."""
    return str(next(models.clip.visual.parameters()).dtype).removeprefix("torch.")


def segmenter_for_names(models: SegmenterModels, class_names: list[str],
                        settings: SegmenterSettings) -> Segmenter:
    """`models` set up for `class_names`: the proposal net's class embeddings from the base
    CLIP's text tower (the space it was trained in), the crop classifier from the adapted
    CLIP's; both read from the text cache when there."""
    from pipeline.clip.text_classifier import TEMPLATE_SETS, cached_text_classifier

    templates = TEMPLATE_SETS[models.templates]
    net_text, clip_text = (cached_text_classifier(model, models.tokenizer, class_names,
                                                  models.text_cache, templates, text_hash)
                           for model, text_hash in zip((models.base_clip, models.text_clip),
                                                       models.text_hashes))
    return Segmenter(models.net, net_text.to(models.device), models.clip,
                     clip_text.to(models.device), **dataclasses.asdict(settings),
                     prompts=models.prompts)


def load_segmenter(class_names: list[str], settings: SegmenterSettings,
                   proposals_dir: str | Path = "models/proposals",
                   adapted_dir: str | Path = "models/mask_prompts",
                   base_clip_dir: str | Path = "models/clip_base",
                   text_cache: str | Path = ".cache/text_classifiers", dtype: str = "float32",
                   templates: str = "vild", device: torch.device | str = "cpu") -> Segmenter:
    """The pipeline's trained models, set up for `class_names` on `device`
    (`load_segmenter_models`, then `segmenter_for_names`). The fusion of the masks into
    label maps runs on `device` too; the label maps come back on the CPU."""
    models = load_segmenter_models(proposals_dir, adapted_dir, base_clip_dir, text_cache,
                                   dtype, templates, device, settings.precision)
    return segmenter_for_names(models, class_names, settings)
