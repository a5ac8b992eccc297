"""`dvc repro` of the paper's R101c + ViT-B/16 preset, shrunk to a few images and steps, on
trees in the real datasets' layouts and shapes (tests/real_fixtures.py): COCO-Stuff for
training, ADE20K-150 (listed by its ov-seg name) and Pascal-Context-459 for evaluation.
Random weights (no downloads), CPU. Every stage runs, at the real shapes: 512-pixel crops
through ResNet-101c, 100 proposals per image, 224-pixel crops through ViT-B/16."""

import json

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO
from tests.repo_copy import copy_repo, run, with_overrides
from tests.test_distributed import outputs_of
from tests.test_faults_atomic import comparable, stage_call

pytestmark = pytest.mark.slow

PRESET = REPO / "presets/coco_r101c_vitb16.yaml"
COCO_IMAGES, EVAL_IMAGES = 4, 2


def shrunk(coco_root, eval_root) -> dict:
    """The preset with no downloads, few steps and few images (every shape kept)."""
    return {
        "data": {"workers": 2, "coco": {"root": str(coco_root), "probe_images": COCO_IMAGES}},
        # one prompt per class: ViT-B/16 embeds ~25 prompts/s on 2 cores, and 14 ViLD
        # templates x (171 + 150 + 459) classes would take most of CI's time
        "clip": {"pretrained": "", "templates": "single", "steps": 2, "batch_size": 4,
                 "warmup_steps": 1, "threads": 2, "probe_batch_size": 32, "control_steps": 2},
        # lr ~0: two real steps of a random net push every mask logit below 0 (no
        # proposals, so nothing to mine); the steps still run the whole training path
        "proposals": {"backbone_weights": "", "steps": 2, "batch_size": 2, "warmup_steps": 1,
                      "lr": 1e-9,
                      "threads": 2, "checkpoint_every": 1, "extract_batch_size": 2,
                      "recall_images": COCO_IMAGES},
        # several chunks: 2 processes both get a share; random 2-step nets label every pixel
        # with one class, which evaluate would stop at (compute.empty_outputs: stop)
        "compute": {"chunk_images": 1, "empty_outputs": "warn"},
        "mine": {"threads": 2},
        "shards": {"threads": 2, "samples_per_shard": 64, "min_shards": 1},
        "adapt": {"workers": 0, "threads": 2, "shuffle_buffer": 32, "eval_batch_size": 16},
        "ft": {"epochs": 1.0, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 1},
        "mpt": {"epochs": 1.0, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 1},
        "eval": {"datasets": ["ade20k_sem_seg_val", "pascal_context_459"],
                 "root": str(eval_root), "max_images": EVAL_IMAGES, "images_per_batch": 1,
                 "threads": 2, "batch_size": 32, "lambda_sweep": [0.0, 0.6, 1.0]},
    }


def test_preset_runs_every_stage_on_real_layouts(tmp_path):
    from tests.real_fixtures import make_all

    trees = make_all(tmp_path / "datasets", coco=COCO_IMAGES, ade=EVAL_IMAGES,
                     pascal=EVAL_IMAGES)
    work = tmp_path / "repo"
    params = with_overrides(yaml.safe_load(PRESET.read_text()),
                            shrunk(trees["coco_stuff_171"].root, tmp_path / "datasets"))
    env = copy_repo(work, params)
    out = run([".venv/bin/dvc", "repro"], work, env, timeout=3600)
    for stage in ("check_params", "prepare_data", "base_clip", "train_proposals",
                  "extract_proposals", "mine_pairs", "write_shards", "finetune", "prompt_tune",
                  "adaptation_report", "evaluate@ade20k_sem_seg_val",
                  "evaluate@pascal_context_459"):
        assert f"Running stage '{stage}'" in out, stage
    assert "synthetic world's value" not in out  # the preset leaves nothing at the world's
    # values; the only warnings are evaluate's, whose random 2-step nets label one class
    assert out.count("warning:") == out.count("every scored pixel was labelled")

    source = json.loads((work / "data/world/coco/SOURCE.json").read_text())
    assert source["files"] == 2 * COCO_IMAGES + 1
    net = json.loads((work / "models/proposals/config.json").read_text())["config"]
    assert (net["backbone"], net["queries"], net["input_size"]) == ("timm:resnet101c", 100, 512)
    proposals = pd.read_parquet(work / "data/proposals")
    index = pd.read_parquet(work / "data/index/train.parquet")
    sizes = dict(zip(index.image_id, zip(index.height, index.width)))
    for row in proposals.drop_duplicates("image_id").itertuples():
        assert (row.height, row.width) == sizes[row.image_id]  # masks at each image's size
    assert proposals.groupby("image_id").size().max() <= 100
    assert json.loads((work / "metrics/mining.json").read_text())["pairs"] > 0
    clip_cfg = json.loads((work / "models/clip_ft/open_clip_config.json").read_text())
    assert clip_cfg["model_cfg"]["vision_cfg"]["image_size"] == 224

    for name, classes, lam in (("ade20k_sem_seg_val", 150, 0.7),
                               ("pascal_context_459", 459, 0.6)):
        report = json.loads((work / f"metrics/eval/{name}.json").read_text())
        assert report["images"] == EVAL_IMAGES and report["classes"] == classes
        assert report["ensemble_lambda"] == lam and report["mask_threshold"] == 0.5
        assert 0 <= report["ensemble"]["miou"] <= 1
        sweep = pd.read_csv(work / f"metrics/eval/{name}_lambda.csv")
        assert sweep["lambda"].tolist() == [0.0, 0.6, 1.0]
        # every real class has its shipped synset; partial credit only raises the score
        ens, info = report["ensemble"], report["open_similarity"]
        assert info["automatic_synsets"] == 0 and info["without_synset"] == []
        assert ens["miou_d2_legacy"] <= ens["open"]["miou_d2_legacy"] <= 1
        assert (sweep["open_miou_d2_legacy"] >= sweep["miou_d2_legacy"] - 1e-9).all()
        confusions = pd.read_csv(work / f"metrics/eval/{name}_confusions.csv")
        assert len(confusions) <= 20 and confusions["similarity"].between(0, 1).all()
        print(f"{name}: ensemble mIoU {ens['miou_d2_legacy']:.4f}, Open mIoU "
              f"{ens['open']['miou_d2_legacy']:.4f}; most confused:\n"
              f"{confusions.head(5).to_string(index=False)}")

    # The heavy data stages again as 2 torchrun processes (gloo), each taking its share of
    # the chunks (or evaluation batches): the bytes of the single process above.
    params["compute"]["processes"] = 2
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for name in ("extract_proposals", "mine_pairs", "write_shards", "evaluate@ade20k_sem_seg_val"):
        one = outputs_of(work, name)
        module, argv = stage_call(name)
        out = run([".venv/bin/python", "-m", module.__name__, *argv], work, env)
        assert "2 processes under torchrun" in out, name
        assert comparable(outputs_of(work, name)) == comparable(one), name
