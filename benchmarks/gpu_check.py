"""`make gpu-check`: does the GPU path work here, and how fast? On a machine with a CUDA GPU:

1. the default graph (every stage command of dvc.yaml, in order, without DVC) with
   `compute.device: cuda`, in a copy of the code under --out, each stage timed; the
   checkout's data/, models/ and metrics/ are left alone;
2. the tests marked `gpu` (tests/test_gpu.py: the device-sensitive unit checks on CUDA);
3. benchmarks/bench_heavy_stages.py at the paper's shapes, bf16, with one profiled call of
   each inference row (--out/profiles/: each op's device time, largest first);

then one report, --out/report.md (and report.json): each stage's time, the run's metrics
beside the committed CPU run's with the CPU's cross-seed spread, the tests' outcome, the
benchmark table.

    make gpu-check                             # the project's .venv, if it has one
    python3 -m benchmarks.gpu_check            # any interpreter that has the packages
    python3 -m benchmarks.gpu_check --skip bench --set data.workers=12

Without a GPU it says so in one line and exits with status 2; with packages missing, it
names them and how to bring them to a machine without internet (status 3).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The modules the stages and tests import, by the distribution that provides each.
REQUIRED = {"torch": "torch", "torchvision": "torchvision", "open_clip": "open_clip_torch",
            "timm": "timm", "webdataset": "webdataset", "pycocotools": "pycocotools",
            "nltk": "nltk", "pyarrow": "pyarrow", "numpy": "numpy", "PIL": "pillow",
            "scipy": "scipy", "safetensors": "safetensors", "yaml": "pyyaml", "tqdm": "tqdm",
            "matplotlib": "matplotlib", "pandas": "pandas", "pytest": "pytest"}
# Dense bf16 datasheet peaks (TFLOP/s) for the benchmark's MFU column, by name fragment.
PEAK_TFLOPS = {"H200": 989, "H100": 989, "B200": 2250, "A100": 312, "L40S": 362, "A10": 125}
EXIT_NO_GPU, EXIT_MISSING = 2, 3


def missing_modules(modules: dict | None = None) -> list[str]:
    """The modules of `modules` that do not import here, each as the module that was
    missing (a dependency's, e.g. ftfy for open_clip, where that is what failed)."""
    missing = []
    for name in REQUIRED if modules is None else modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            missing.append(e.name or name)
        except ImportError as e:  # present but broken (e.g. a wheel for another torch)
            missing.append(f"{name} ({e})")
    return sorted(set(missing))


def pinned(names: list[str], lock: Path = REPO / "requirements.lock") -> list[str]:
    """`name==version` from requirements.lock where it pins the distribution."""
    pins = {}
    if lock.is_file():
        for line in lock.read_text().splitlines():
            dist, sep, version = line.partition("==")
            if sep:
                pins[dist.strip().lower().replace("_", "-")] = version.strip()
    out = []
    for n in names:
        dist = REQUIRED.get(n, n).split(" ")[0]
        v = pins.get(dist.lower().replace("_", "-"))
        out.append(f"{dist}=={v}" if v else dist)
    return out


def missing_help(missing: list[str], python: str) -> str:
    wheels = " ".join(pinned(missing))
    return (f"gpu-check: {python} lacks {', '.join(missing)}. With internet: "
            f"{python} -m pip install {wheels}. Without: on a machine with internet, "
            f"pip download --no-deps --only-binary=:all: --python-version "
            f"{sys.version_info.major}.{sys.version_info.minor} {wheels}, carry the wheels "
            f"here, pip install --no-index --no-deps --target DIR *.whl and set PYTHONPATH=DIR "
            f"(shared/device/README.md lists what such a machine lacked).")


def gpu_line() -> str | None:
    """None when torch sees a CUDA GPU; else the one line that says why not."""
    try:
        import torch
    except ModuleNotFoundError:
        return f"gpu-check: no torch for {sys.executable}; nothing to check"
    if not torch.cuda.is_available():
        return (f"gpu-check: no CUDA GPU visible to torch {torch.__version__} (built for CUDA "
                f"{torch.version.cuda}); run it on a machine with one")
    return None


def peak_tflops(name: str) -> float:
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), 0.0)


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"


def run_tests(python: str, out: Path, timeout: float) -> str:
    """pytest -m gpu over tests/test_gpu.py: its summary (and failures), as pytest says."""
    cmd = [python, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
           "tests/test_gpu.py"]
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        text = r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        text = f"timed out after {timeout:.0f} s\n{e.stdout or ''}"
    (out / "tests.log").write_text(text)
    return "\n".join(text.splitlines()[-30:])


def run_benchmark(python: str, device: str, out: Path, timeout: float,
                  extra: tuple[str, ...] = ()) -> str:
    """bench_heavy_stages on `device`, its table as text; `extra`: more of its options
    (--bench-args)."""
    import torch

    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    cmd = [python, "-m", "benchmarks.bench_heavy_stages", "--device", device,
           "--repeats", "1", "--gpus", "8", "--threads", str(min(12, os.cpu_count() or 2)),
           "--peak-tflops", str(peak_tflops(name)), "--profile", str(out / "profiles"),
           *extra]
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        text, tail = r.stdout, r.stderr[-3000:] if r.returncode else ""
    except subprocess.TimeoutExpired:
        text, tail = "", f"timed out after {timeout:.0f} s"
    (out / "benchmark.log").write_text(text + tail)
    return (text.strip() + ("\n" + tail if tail else "")).strip()


def graph_facts(args, python: str, out: Path, say) -> tuple[list, str | None, dict, list]:
    """Run the graph in out/work: (stage runs as dicts, the failed stage's log tail, the
    run's headline metrics, the eval sets)."""
    import yaml

    from benchmarks.gpu_report import headline_metrics
    from benchmarks.stage_graph import copy_code, graph_commands, log_tail, run_graph

    work = out / "work"
    params = copy_code(REPO, work, [f"compute.device={args.device}", *args.set])
    datasets = list(params["eval"]["datasets"])
    stages = yaml.safe_load((work / "dvc.yaml").read_text())["stages"]
    commands = [(label, argv) for label, argv in graph_commands(stages, datasets, python)
                if not args.stages or label.partition("@")[0] in args.stages]
    runs = run_graph(work, commands, out / "logs", timeout=args.stage_timeout, say=say)
    failed = next((r for r in runs if r.returncode), None)
    stage_rows = [{"label": r.label, "seconds": r.seconds, "returncode": r.returncode}
                  for r in runs]
    return (stage_rows, log_tail(failed.log) if failed else None,
            headline_metrics(work / "metrics", datasets), datasets)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "gpu-check",
                    help="report.md, report.json, logs/ and the graph's work/ folder")
    ap.add_argument("--skip", nargs="*", default=[], choices=("graph", "tests", "bench"))
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="params.yaml overrides for the graph, e.g. data.workers=12")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: the same run on the CPU, for comparison or a dry run")
    ap.add_argument("--stages", nargs="*", default=[],
                    help="only these stages of dvc.yaml (default: all), e.g. for a dry run")
    ap.add_argument("--stage-timeout", type=float, default=1800)
    ap.add_argument("--bench-args", default="",
                    help='more bench_heavy_stages options, e.g. "--compile --only mine_pairs '
                         'evaluate" (issue 31: CLIP under torch.compile against the eager rows)')
    args = ap.parse_args(argv)
    if args.device == "cuda" and (line := gpu_line()):
        print(line)
        return EXIT_NO_GPU
    python = sys.executable
    missing = missing_modules()
    if missing:
        print(missing_help(missing, python))
        return EXIT_MISSING
    from pipeline.mining.nltk_setup import INSTALL_HELP, wordnet_reader

    if "graph" not in args.skip and wordnet_reader() is None:
        print(f"gpu-check: mine_pairs needs WordNet, which is not installed here. "
              f"{INSTALL_HELP} Or carry a .nltk_data folder and set NLTK_DATA to it.")
        return EXIT_MISSING
    import torch

    from benchmarks.gpu_report import comparison_rows, headline_metrics, render, seed_spreads

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    device = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    facts = {"device": device, "torch": f"{torch.__version__} (CUDA {torch.version.cuda})",
             "commit": commit(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
             "overrides": [f"compute.device={args.device}", *args.set], "verdicts": []}
    if "graph" not in args.skip:
        stages, failure, metrics, datasets = graph_facts(args, python, out, print)
        facts.update(stages=stages, failure_log=failure)
        cpu = headline_metrics(REPO / "metrics", datasets)
        spread = seed_spreads(REPO / "reports" / "paper_tables" / "runs.json")
        facts["metrics"] = comparison_rows(cpu, metrics, spread)
        facts["verdicts"].append(f"graph: stopped at {stages[-1]['label']}" if failure else
                                 f"graph: all {len(stages)} stage commands ran")
        outside = [r["metric"] for r in facts["metrics"] if r["within_spread"] is False]
        facts["verdicts"].append(
            f"mIoU outside the CPU's cross-seed spread: {', '.join(outside)}" if outside else
            "every mIoU compared lies within the CPU's cross-seed spread")
    if "tests" not in args.skip:
        print("gpu-check: tests marked gpu ...", flush=True)
        facts["tests"] = run_tests(python, out, args.stage_timeout)
        facts["verdicts"].append("tests: " + (facts["tests"].splitlines() or ["no output"])[-1])
    if "bench" not in args.skip:
        print("gpu-check: bench_heavy_stages ...", flush=True)
        facts["benchmark"] = run_benchmark(python, args.device, out, args.stage_timeout,
                                           tuple(shlex.split(args.bench_args)))
    facts["total_seconds"] = time.monotonic() - start
    (out / "report.json").write_text(json.dumps(facts, indent=1) + "\n")
    (out / "report.md").write_text(render(facts))
    print(f"gpu-check: report in {out / 'report.md'} ({facts['total_seconds']:.0f} s)")
    summary = (facts.get("tests") or "").strip().splitlines()[-1:]
    tests_failed = bool(summary) and ("failed" in summary[0] or "error" in summary[0])
    return 1 if facts.get("failure_log") or tests_failed else 0


if __name__ == "__main__":
    sys.exit(main())
