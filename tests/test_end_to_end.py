"""dvc repro on a copy of the repo with a reduced world: runs, caches, re-runs on change."""

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO
from tests.repo_copy import copy_repo, git_commit, run, with_overrides

pytestmark = pytest.mark.slow

SMALL = {
    "compute": {"empty_outputs": "warn"},  # 4-step nets may label every pixel one class
    "data": {"train_images": 192, "eval_images": 8, "probe_images": 32, "workers": 2},
    "clip": {"steps": 6, "batch_size": 32, "warmup_steps": 2, "control_steps": 20},
    "proposals": {"steps": 4, "batch_size": 4, "warmup_steps": 1, "recall_images": 8,
                  "checkpoint_every": 2, "row_group_size": 64},
    "mine": {"max_images": 48, "masks": "gt"},  # a 4-step proposal net may find no pairs
    "adapt": {"shuffle_buffer": 50, "eval_batch_size": 32, "mpt_only_row": True},
    "ft": {"epochs": 1, "batch_size": 16, "warmup_steps": 1, "checkpoint_every": 2},
    "mpt": {"epochs": 1, "batch_size": 16, "warmup_steps": 1, "checkpoint_every": 2},
}
ADAPTATION_ROWS = ("base", "ft", "mpt", "ft_then_mpt")


def test_dvc_repro_cache_and_experiment(tmp_path):
    work = tmp_path / "repo"
    params = with_overrides(yaml.safe_load((REPO / "params.yaml").read_text()), SMALL)
    env = copy_repo(work, params)
    dvc = [".venv/bin/dvc"]

    out = run(dvc + ["repro"], work, env)
    for stage in ("check_params", "prepare_data", "base_clip", "train_proposals",
                  "extract_proposals", "mine_pairs", "write_shards", "finetune", "prompt_tune",
                  "adaptation_report",
                  "evaluate@world_full", "evaluate@world_things"):
        assert f"Running stage '{stage}'" in out
    metrics = json.loads((work / "metrics/base_clip.json").read_text())
    assert set(metrics["zero_shot"]) >= {"whole_image", "masked_crop_mean", "masked_crop_zero"}
    assert {"things", "stuff"} <= set(metrics["outline_only_control"])
    assert (work / "models/clip_base/open_clip_model.safetensors").is_file()
    first = (work / "data/index/train.parquet").read_bytes()
    proposals = pd.read_parquet(work / "data/proposals")  # a 4-step net may propose little
    assert list(proposals.columns[:4]) == ["image_id", "proposal_id", "height", "width"]
    recall = json.loads((work / "metrics/proposals.json").read_text())
    assert {"train", "world_full", "world_things"} <= set(recall)
    assert not (work / "data/tmp/train_proposals/last.pt").exists()
    check_adaptation(work, depth=3)
    check_evaluation(work)

    out = run(dvc + ["repro"], work, env)
    assert "Running stage" not in out

    git_commit(work, env, "lock")
    # a prompt-tuning param re-runs prompt tuning and what follows, not finetuning
    out = run(dvc + ["exp", "run", "-S", "mpt.depth=2"], work, env)
    assert "Running stage 'prompt_tune'" in out and "Running stage 'adaptation_report'" in out
    assert "Running stage 'finetune'" not in out and "Running stage 'write_shards'" not in out
    check_adaptation(work, depth=2)
    check_training_curves_diff(work, env)
    check_rejected_value_deletes_nothing(work, env)

    out = run(dvc + ["exp", "run", "-S", "data.seed=1", "-S", "proposals.source=gt"], work, env)
    assert "Running stage 'prepare_data'" in out and "Running stage 'base_clip'" in out
    assert (work / "data/index/train.parquet").read_bytes() != first
    gt = pd.read_parquet(work / "data/proposals")
    assert gt["image_id"].nunique() > 150 and gt["image_id"].is_monotonic_increasing
    assert (gt["score"] == 1).all() and (gt["label"] >= 0).all()
    recall = json.loads((work / "metrics/proposals.json").read_text())
    assert recall["world_full"]["all"]["recall"] == 1.0  # ground truth covers itself
    pairs = pd.read_parquet(work / "data/pairs.parquet")
    mining = json.loads((work / "metrics/mining.json").read_text())
    assert len(pairs) == mining["pairs"] > 48 and pairs["image_id"].nunique() <= 48
    assert 0 <= mining["precision_iou50"]["precision"] <= 1  # a 6-step CLIP: any value
    sizes = json.loads((work / "data/shards/sizes.json").read_text())
    assert len(sizes) >= 4 and sum(sizes.values()) == len(pairs)
    run_readme_commands(work, env)  # now with proposals (the 4-step net may find none)


def readme_commands() -> list[str]:
    """The shell lines of the README and of docs/ that run in seconds on the pipeline's
    outputs: `.venv/bin/` commands other than experiments and benchmarks, and the `printf`
    that writes a file one of them reads."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    blocks = [b for page in pages for b in re.findall(r"```sh\n(.*?)```", page.read_text(), re.S)]
    lines = [line.split(" #")[0].strip() for b in blocks for line in b.splitlines()]
    from pipeline.demo.browser_check import chromium_path

    no_browser = chromium_path() is None  # tests/test_demo_browser.py says it is skipped
    return [line for line in lines if line.startswith("printf ") or (
        line.startswith(".venv/bin/") and "exp run" not in line and "benchmarks" not in line
        and not (no_browser and "browser_check" in line))]


def run_readme_commands(work: Path, env: dict) -> None:
    commands = readme_commands()
    assert any("ovseg segment" in c for c in commands) and len(commands) >= 6
    for command in commands:
        res = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, f"README: `{command}` failed:\n{res.stderr[-3000:]}"
    assert (work / "proposals.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((work / "seg").glob("*_labels.png"))) >= 2


def check_rejected_value_deletes_nothing(work: Path, env: dict) -> None:
    """A value the checks reject stops the experiment before DVC removes any output."""
    before = {p: p.read_bytes() for p in (work / "models/mask_prompts").iterdir()}
    res = subprocess.run([".venv/bin/dvc", "exp", "run", "-S", "mpt.depth=99"], cwd=work,
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode != 0 and "'mpt.depth' = 99" in res.stdout + res.stderr
    assert "Running stage 'prompt_tune'" not in res.stdout
    assert {p: p.read_bytes() for p in (work / "models/mask_prompts").iterdir()} == before
    run(["git", "checkout", "params.yaml"], work, env)


def check_adaptation(work: Path, depth: int) -> None:
    import open_clip

    from pipeline.adapt.adapted_model import load_adapted

    open_clip.create_model_and_transforms(f"local-dir:{work / 'models/clip_ft'}")
    model, prompts, manifest = load_adapted(work / "models/mask_prompts")
    assert manifest["clip"] == "../clip_ft" and prompts.shape[0] == depth
    report = json.loads((work / "metrics/adaptation.json").read_text())
    assert set(report["splits"]) == {"world_full", "world_things"}
    for split in report["splits"].values():
        for row in ADAPTATION_ROWS:
            assert 0 <= split[row]["all"] <= 1 and split[row]["n"] > 0
    for stage in ("finetune", "prompt_tune"):  # DVCLive logs: one TSV per value, and a summary
        live = work / "metrics/live" / stage
        log = (live / "plots/metrics/loss.tsv").read_text().splitlines()
        assert log[0] == "step\tloss" and len(log) > 2
        assert [int(line.split("\t")[0]) for line in log[1:]] == list(range(len(log) - 1))
        assert {p.name for p in (live / "plots/metrics").iterdir()} == {
            "loss.tsv", "clip_lr.tsv", "prompt_lr.tsv"}
        assert json.loads((live / "metrics.json").read_text())["step"] == len(log) - 2
        assert (work / f"metrics/{stage}_loss.png").read_bytes()[:4] == b"\x89PNG"
    assert not (work / "data/tmp/finetune/last.pt").exists()


def check_training_curves_diff(work: Path, env: dict) -> None:
    """`dvc plots diff` between the committed run (depth 3) and the experiment (depth 2)
    draws both runs' prompt-tuning curves from the DVCLive logs, with their own values."""
    loss = "metrics/live/prompt_tune/plots/metrics/loss.tsv"
    res = subprocess.run([".venv/bin/dvc", "plots", "diff", "HEAD", "--json"], cwd=work,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    plots = json.loads(res.stdout)["data"][loss]  # stdout alone: the JSON
    rows = [r for plot in plots for r in plot["content"]["data"]["values"]]
    by_rev = {}
    for r in rows:
        by_rev.setdefault(r["rev"], []).append(float(r["loss"]))
    assert set(by_rev) == {"HEAD", "workspace"} and by_rev["HEAD"] != by_rev["workspace"]
    steps = len((work / loss).read_text().splitlines()) - 1
    assert len(by_rev["workspace"]) == steps


def check_evaluation(work: Path) -> None:
    for ds in ("world_full", "world_things"):
        report = json.loads((work / f"metrics/eval/{ds}.json").read_text())
        assert report["images"] == SMALL["data"]["eval_images"]
        for variant in ("maskformer", "clip", "ensemble"):
            s = report[variant]
            assert 0 <= s["miou_d2_legacy"] <= s["miou"] <= 1  # the legacy mean divides by more
            assert {"seen", "unseen", "pixel_accuracy", "per_class_iou"} <= set(s)
            # partial credit only raises a class's IoU (tests/test_open_metrics.py)
            assert s["miou_d2_legacy"] <= s["open"]["miou_d2_legacy"] <= 1
        assert report["open_similarity"]["similarity"] == "wordnet_path"
        assert report["open_similarity"]["without_synset"] == []
        head = (work / f"metrics/eval/{ds}_confusions.csv").read_text().splitlines()[0]
        assert head == "rank,ground_truth,predicted,pixels,share_of_errors,share_of_class," \
                       "similarity"
        for png in (f"{ds}_iou.png", f"{ds}_predictions.png", f"{ds}_confusions.png"):
            assert (work / "metrics/eval" / png).read_bytes()[:4] == b"\x89PNG"
