"""The paper's ablations as `dvc exp run` experiments on the miniature, the paper's numbers
beside them, and the paper's claims as directions (which row beats which).

Numbers are OVSeg's (CVPR 2023, arXiv v3), Swin-B + ViT-L/14, zero-shot mIoU on ADE-150
(Figure 1(c) and appendix A.1: ground-truth masks or proposals on ADE-150). The table
numbers follow the issue's (arXiv v1) names; v3 numbers the order, depth and ensemble
tables 5, 6 and 4.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BASE = {"ft.enabled": "false", "mpt.enabled": "false"}
NO_MPT = {"mpt.enabled": "false"}
NO_FT = {"ft.enabled": "false"}

# experiment name -> `dvc exp run -S key=value` overrides on params.yaml (data.seed is added
# per seed). "default" is params.yaml itself: proposals + 1 caption, FT then MPT, depth 3.
EXPERIMENTS: dict[str, dict[str, str]] = {
    "default": {},
    "base": BASE,
    "base_no_mask": {**BASE, "eval.fill": "none"},
    "mpt_only": NO_FT,
    "ft_only": NO_MPT,
    "mpt_then_ft": {"mpt.order": "mpt_then_ft"},
    "simultaneous": {"mpt.order": "simultaneous"},
    **{f"depth{d}": {"mpt.depth": str(d)} for d in (1, 6, 12)},
    **{f"depth{d}_no_ft": {**NO_FT, "mpt.depth": str(d)} for d in (1, 6, 12)},
    # Table 2's pair sources train FT alone, as the paper's rows (its (3) is Table 3's FT)
    "pairs_gt_masks_gt_classes": {**NO_MPT, "mine.masks": "gt", "mine.nouns": "gt_classes"},
    "pairs_gt_masks_1_caption": {**NO_MPT, "mine.masks": "gt"},
    "pairs_proposals_5_captions": {**NO_MPT, "mine.captions_per_image": "5"},
    # diagnostics the findings cite (no table reads them; `run --only` them): the default
    # with the paper's 5 MPT epochs instead of the miniature's 1
    "mpt_5_epochs": {"mpt.epochs": "5"},
}


@dataclass(frozen=True)
class Row:
    label: str
    experiment: str
    variant: str = "ensemble"  # a variant of metrics/eval/<split>.json
    paper: float | None = None  # the paper's ADE-150 mIoU (%)


@dataclass(frozen=True)
class Claim:
    """The paper finds row `better` above row `worse` (labels of the same table)."""

    better: str
    worse: str


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    rows: tuple[Row, ...]
    claims: tuple[Claim, ...] = field(default=())
    note: str = ""


TABLES: tuple[Table, ...] = (
    Table("fig1c", "Figure 1(c): where the bottleneck is", (
        Row("GT masks + base CLIP", "base", "gt_masks_clip", 20.1),
        Row("proposals + oracle classes", "base", "proposals_oracle", 66.5),
    ), (Claim("proposals + oracle classes", "GT masks + base CLIP"),),
        "The proposals with perfect classes score far above perfect masks classified by the "
        "base CLIP: CLIP on masked crops is the bottleneck."),
    Table("a1", "Appendix A.1: masked crops vs. crops without the mask", (
        Row("GT masks, masked crop", "base", "gt_masks_clip", 20.1),
        Row("GT masks, crop without mask", "base_no_mask", "gt_masks_clip", 13.8),
    ), (Claim("GT masks, masked crop", "GT masks, crop without mask"),)),
    Table("table2", "Table 2: where the mask-noun pairs come from (FT)", (
        Row("baseline (no adaptation)", "base", paper=21.8),
        Row("(1) GT masks + GT classes", "pairs_gt_masks_gt_classes", paper=23.0),
        Row("(2) GT masks + 1 caption", "pairs_gt_masks_1_caption", paper=24.2),
        Row("(3) proposals + 1 caption", "ft_only", paper=28.8),
        Row("(4) proposals + 5 captions", "pairs_proposals_5_captions", paper=28.6),
    ), (Claim("(1) GT masks + GT classes", "baseline (no adaptation)"),
        Claim("(2) GT masks + 1 caption", "baseline (no adaptation)"),
        Claim("(3) proposals + 1 caption", "(1) GT masks + GT classes"),
        Claim("(3) proposals + 1 caption", "(2) GT masks + 1 caption"),
        Claim("(3) proposals + 1 caption", "(4) proposals + 5 captions"))),
    Table("table3", "Table 3: mask prompt tuning and finetuning", (
        Row("base CLIP", "base", paper=21.8),
        Row("MPT only", "mpt_only", paper=26.5),
        Row("FT only", "ft_only", paper=28.8),
        Row("FT then MPT", "default", paper=29.6),
    ), (Claim("MPT only", "base CLIP"), Claim("FT only", "base CLIP"),
        Claim("FT only", "MPT only"), Claim("FT then MPT", "FT only"))),
    Table("table4", "Table 4: the order of FT and MPT", (
        Row("FT then MPT", "default", paper=29.6),
        Row("MPT then FT", "mpt_then_ft", paper=28.1),
        Row("FT and MPT together", "simultaneous", paper=29.0),
    ), (Claim("FT then MPT", "MPT then FT"), Claim("FT then MPT", "FT and MPT together"))),
    Table("table5", "Table 5: mask prompt depth, without and with FT", (
        Row("depth 1, no FT", "depth1_no_ft", paper=25.7),
        Row("depth 3, no FT", "mpt_only", paper=26.5),
        Row("depth 6, no FT", "depth6_no_ft", paper=26.8),
        Row("depth 12, no FT", "depth12_no_ft", paper=26.8),
        Row("depth 1, FT", "depth1", paper=29.3),
        Row("depth 3, FT", "default", paper=29.6),
        Row("depth 6, FT", "depth6", paper=29.4),
        Row("depth 12, FT", "depth12", paper=29.3),
    ), (Claim("depth 3, no FT", "depth 1, no FT"), Claim("depth 6, no FT", "depth 3, no FT"),
        Claim("depth 3, FT", "depth 1, FT"), Claim("depth 3, FT", "depth 6, FT"),
        Claim("depth 3, FT", "depth 12, FT"),
        *(Claim(f"depth {d}, FT", f"depth {d}, no FT") for d in (1, 3, 6, 12)))),
    Table("table6", "Table 6: MaskFormer alone, CLIP alone and their ensemble", (
        Row("base: MaskFormer only", "base", "maskformer", 19.6),
        Row("base: CLIP only", "base", "clip", 14.3),
        Row("base: ensemble", "base", "ensemble", 21.8),
        Row("adapted: MaskFormer only", "default", "maskformer", 19.6),
        Row("adapted: CLIP only", "default", "clip", 25.1),
        Row("adapted: ensemble", "default", "ensemble", 29.6),
    ), (Claim("base: ensemble", "base: MaskFormer only"),
        Claim("base: ensemble", "base: CLIP only"),
        Claim("adapted: ensemble", "adapted: MaskFormer only"),
        Claim("adapted: ensemble", "adapted: CLIP only"),
        Claim("adapted: CLIP only", "base: CLIP only"),
        Claim("adapted: ensemble", "base: ensemble"))),
)


def table_experiments() -> list[str]:
    """The experiments the tables read, in EXPERIMENTS order."""
    used = {r.experiment for t in TABLES for r in t.rows}
    return [name for name in EXPERIMENTS if name in used]
