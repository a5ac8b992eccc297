"""Each stage's time and peak memory on the real-shape fixtures (tests/real_fixtures.py), at
1x and 4x their images, to check that the cost per image stays flat (streaming, no stage
loading a whole dataset): `dvc repro` of the R101c + ViT-B/16 preset shrunk as the slow
test shrinks it (tests/test_real_scale.py: random weights, CPU, every shape kept), one
stage at a time under GNU time.

    python -m benchmarks.bench_real_shapes                   # 1x = 4 COCO + 2+2 eval images
    python -m benchmarks.bench_real_shapes --coco 8 --eval 4 --scales 1 4

Per image: COCO images for the training-side stages, evaluation images for evaluate@.
Stages with a fixed number of steps (base_clip, train_proposals) are not expected to
scale; finetune and prompt_tune run one epoch over the mined pairs.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from tests.conftest import REPO
from tests.real_fixtures import make_all
from tests.repo_copy import copy_repo, with_overrides
from tests.test_real_scale import PRESET, shrunk

STAGES = ("check_params", "prepare_data", "base_clip", "train_proposals", "extract_proposals",
          "mine_pairs", "write_shards", "finetune", "prompt_tune", "adaptation_report",
          "evaluate@ade20k_sem_seg_val", "evaluate@pascal_context_459")


def run_scale(root: Path, coco: int, evals: int) -> dict[str, tuple[float, float]]:
    """stage -> (seconds, peak RSS in MiB of its largest process)."""
    trees = make_all(root / "datasets", coco=coco, ade=evals, pascal=evals)
    params = with_overrides(yaml.safe_load(PRESET.read_text()),
                            shrunk(trees["coco_stuff_171"].root, root / "datasets"))
    params["data"]["coco"]["probe_images"] = coco
    params["proposals"]["recall_images"] = coco
    params["eval"]["max_images"] = evals
    work = root / "repo"
    env = copy_repo(work, params)
    out = {}
    for stage in STAGES:
        report = root / "time.txt"
        t = time.perf_counter()
        res = subprocess.run(["/usr/bin/time", "-o", str(report), "-f", "%M",
                              ".venv/bin/dvc", "repro", "--single-item", stage], cwd=work,
                             env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t
        if res.returncode:
            raise SystemExit(f"{stage} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
        out[stage] = (seconds, int(report.read_text().split()[-1]) / 1024)
        print(f"  {coco} COCO / {evals} eval images: {stage} {seconds:.1f} s, "
              f"{out[stage][1]:.0f} MiB", flush=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coco", type=int, default=4, help="COCO images at 1x")
    ap.add_argument("--eval", type=int, default=2, help="images per evaluation set at 1x")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args(argv)
    results = {}
    for scale in args.scales:
        with tempfile.TemporaryDirectory(dir=REPO.parent) as tmp:
            results[scale] = run_scale(Path(tmp), args.coco * scale, args.eval * scale)
    lo, hi = args.scales[0], args.scales[-1]
    print(f"\nreal-shape graph (R101c + ViT-B/16 preset, random weights, CPU), "
          f"{lo}x = {args.coco * lo} COCO + {args.eval * lo} images per eval set")
    print(f"{'stage':30} " + " ".join(f"{f'{s}x s':>8} {f'{s}x MiB':>8} {f'{s}x s/img':>9}"
                                      for s in args.scales) + f" {'ratio':>6}")
    for stage in STAGES:
        per_image = {}
        cells = []
        for s in args.scales:
            seconds, mib = results[s][stage]
            images = (args.eval if stage.startswith("evaluate@") else args.coco) * s
            per_image[s] = seconds / images
            cells.append(f"{seconds:8.1f} {mib:8.0f} {per_image[s]:9.2f}")
        print(f"{stage:30} " + " ".join(cells) + f" {per_image[hi] / per_image[lo]:6.2f}")


if __name__ == "__main__":
    main()
