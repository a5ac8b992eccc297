"""The params schema's `eval` section (OVSeg §4.1's protocol), with the checks of its list
and mapping values: the per-dataset λ and mask threshold, and the λ sweep."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipeline.params.fields import ParamsError, check_value, join_key, spec

# eval.per_dataset: the keys a dataset may set for itself, over the section's own, and
# their types.
EVAL_OVERRIDES = {"ensemble_lambda": float, "mask_threshold": float, "open_similarity": str}


def _check_per_dataset(key: str, value: dict) -> dict:
    """eval.per_dataset: {dataset: {ensemble_lambda | mask_threshold | open_similarity:
    value}}, each value
    checked as the section's key of that name. Dataset names are checked against the
    known sets by pipeline/params/checks.py."""
    specs = {f.name: dict(f.metadata) for f in dataclasses.fields(EvalParams)}
    out = {}
    for name, entry in value.items():
        where = join_key(key, str(name))
        if not isinstance(entry, dict):
            raise ParamsError(f"params: '{where}' must be a mapping of "
                              f"{' and/or '.join(EVAL_OVERRIDES)}, got {entry!r}")
        unknown = sorted(set(entry) - set(EVAL_OVERRIDES))
        if unknown:
            raise ParamsError(f"params: unknown key '{where}.{unknown[0]}'; allowed: "
                              f"{', '.join(EVAL_OVERRIDES)}")
        out[str(name)] = {k: check_value(join_key(where, k), v, EVAL_OVERRIDES[k], specs[k])
                          for k, v in entry.items()}
    return out


# eval.open_similarity: the measures pipeline/similarity/name_similarity.py computes.
OPEN_SIMILARITY_MEASURES = ("wordnet_path", "clip_text", "identity")


def open_similarity_error(value: str) -> str | None:
    """Why `value` cannot be eval.open_similarity (a measure or a user's .csv file), or
    None if it can."""
    if value in OPEN_SIMILARITY_MEASURES or value.endswith(".csv"):
        return None
    return (f"expected one of {', '.join(OPEN_SIMILARITY_MEASURES)} or a path to a .csv "
            f"file, got {value!r}")


def _check_open_similarity(key: str, value: str) -> str:
    why = open_similarity_error(value)
    if why:
        raise ParamsError(f"params: '{key}': {why}")
    return value


def _check_lambdas(key: str, value: list) -> list:
    """eval.lambda_sweep: distinct ensemble weights in [0, 1]."""
    lams = [check_value(f"{key}[{i}]", v, float, {"ge": 0.0, "le": 1.0})
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

    datasets: list = spec(["world_full", "world_things"],
                          doc="synthetic eval splits and/or ade20k_150, ade20k_847, "
                              "pascal_context_59, pascal_context_459, pascal_voc_20 (or "
                              "their ov-seg / SAN names, pipeline/data/eval_datasets.py)")
    root: str = spec("datasets", doc="root of the real evaluation sets (detectron2 layouts)")
    ensemble_lambda: float = spec(0.7, ge=0.0, le=1.0,
                                  doc="CLIP's share of the geometric ensemble, for sets "
                                      "per_dataset does not list (ov-seg's config: 0.7)")
    mask_threshold: float = spec(0.5, gt=0.0, lt=1.0,
                                 doc="sigmoid(mask) > this is cropped, for sets per_dataset "
                                     "does not list (R101c: 0.5, Swin-B: 0.4)")
    per_dataset: dict = spec(
        {"ade20k_150": {"ensemble_lambda": 0.7}, "ade20k_847": {"ensemble_lambda": 0.7},
         "pascal_context_59": {"ensemble_lambda": 0.6},
         "pascal_context_459": {"ensemble_lambda": 0.6},
         "pascal_voc_20": {"ensemble_lambda": 0.45}},
        check=_check_per_dataset,
        doc="{dataset (canonical name): {ensemble_lambda, mask_threshold, open_similarity}} "
            "over the section's")
    lambda_sweep: list = spec([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                              check=_check_lambdas,
                              doc="ensemble weights also scored, from the same CLIP pass "
                                  "(OVSeg appendix A.5); empty: off")
    open_similarity: str = spec(
        "wordnet_path", check=_check_open_similarity,
        doc="class-name similarity of Open mIoU: wordnet_path | clip_text | identity | a "
            "K x K .csv file (pipeline/similarity/name_similarity.py)")
    confusions: int = spec(20, ge=1, doc="class pairs in metrics/eval/<set>_confusions.*")
    fill: str = spec("mean", choices=("mean", "zero", "none"),
                     doc="masked-crop background; none: crop without the mask, background "
                         "kept (OVSeg appendix A.1)")
    bottleneck: bool = spec(True, doc="also score OVSeg Fig. 1(c)'s ground-truth masks + "
                                      "CLIP and proposals + oracle classes")
    short_side: int = spec(512, ge=0, doc="resize images to this short side, aspect kept "
                                          "(R101c: 512, Swin-B: 640); 0: as stored")
    max_images: int = spec(0, ge=0, doc="evaluate the first N images; 0: all")
    overlays: int = spec(4, ge=1, le=32, doc="images drawn with their predictions")
    dtype: str = spec("float32", choices=("float32", "bfloat16"),
                      doc="CLIP weights for inference (bf16 pays on CPUs with AMX/AVX512-BF16)")
    precision: str = spec("auto", choices=("auto", "bf16", "fp32"),
                          doc="the proposal net and CLIP: auto: bf16 autocast (and CLIP's "
                              "image tower in bf16) on GPU, fp32 on CPU")
    batch_size: int = spec(256, ge=1, doc="masked crops per CLIP forward")
    images_per_batch: int = spec(16, ge=1, doc="images per proposal-net forward")
    threads: int = spec(2, ge=1, le=256)

    def open_similarity_for(self, name: str) -> str:
        """eval.open_similarity of evaluation set `name` (canonical name): its per_dataset
        entry's, else the section's."""
        return self.per_dataset.get(name, {}).get("open_similarity", self.open_similarity)

    def settings_for(self, name: str) -> tuple[float, float]:
        """(ensemble_lambda, mask_threshold) of evaluation set `name` (canonical name):
        its per_dataset entry's, else the section's."""
        own = self.per_dataset.get(name, {})
        return (own.get("ensemble_lambda", self.ensemble_lambda),
                own.get("mask_threshold", self.mask_threshold))
