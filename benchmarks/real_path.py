"""The published study (configs/imagenette-14.yaml) on this machine, stage by stage: time and
peak memory, as a user with a warm timm cache runs it offline.

Builds what tests/test_real_path.py builds (random weights for the tags in a Hugging Face
cache in the hub's layout, HF_HUB_OFFLINE=1; the shared Imagenette photos as imagenette2-320,
repeated mirrored and cropped up to --images), then runs every stage as its own
`xaicompare <stage>` process, as a user resuming stage by stage would, and prints per stage:
wall seconds, CPU seconds (user + sys; a shared machine inflates them less than wall time)
and peak resident memory (the stage process's ru_maxrss, from wait4). Every stage process
loads the models again: the `load` row, a process that only loads them, is that fixed cost.
Then the explain stage's seconds per model and method (run.json).

Published budgets by default (14 tags, 128 images, IG 64 steps, KernelSHAP 350 samples over
50 superpixels, 10 corruptions x 5 severities, ...): hours on 2 CPU cores. Cut them:

    PYTHONPATH=. python benchmarks/real_path.py --small \
        --tags deit_tiny_patch16_224.fb_in1k resnet18d.ra2_in1k --images 4

--small takes every budget of tests/real_path_fixture.py's SMALL_BUDGETS; the flags
--images, --ig-steps, --shap-samples and --shap-segments override either; --memory sets
executor.memory (peak RSS of the explain stage should stay near it plus the models' weights).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from real_path_fixture import (  # noqa: E402  (shared with the test)
    SMALL_BUDGETS,
    imagenette_photos,
    narrowed_study,
    offline_env,
    published_tags,
    write_hub_cache,
    write_imagenette,
)

STAGES = ("explain", "compare", "cluster", "diversity", "trust", "report")
LOAD_ONLY = "from xaicompare.study import Study; import sys; Study.from_yaml(sys.argv[1]).models"


def run_measured(command: list[str], env: dict, log: Path) -> dict:
    """Run `command` to completion; its wall and CPU seconds and peak RSS (GB)."""
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text()[-2000:]
        raise SystemExit(f"{' '.join(command[-3:])} failed ({process.returncode}):\n{tail}")
    return {"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_gb": usage.ru_maxrss * 1024 / 1e9}  # ru_maxrss is in KiB on Linux


def budgets_from(args) -> dict:
    budgets = dict(SMALL_BUDGETS) if args.small else {}
    for key, value in (("dataset.n_images", args.images),
                       ("methods.integrated_gradients.n_steps", args.ig_steps),
                       ("methods.kernelshap.n_samples", args.shap_samples),
                       ("methods.kernelshap.n_segments", args.shap_segments),
                       ("executor.memory", args.memory)):
        if value is not None:
            budgets[key] = value
    return budgets


def prepare(args, work: Path) -> tuple[Path, dict]:
    photos = imagenette_photos()
    if not photos:
        raise SystemExit("no Imagenette photos found in ../shared/data/imagenet-samples")
    budgets = budgets_from(args)
    n_images = budgets.get("dataset.n_images", 128)
    hf_home = work / "hf"
    start = time.perf_counter()
    write_hub_cache(hf_home, args.tags, seed=0)
    write_imagenette(work / "data", photos, copies=math.ceil(n_images / len(photos)))
    print(f"hub cache ({len(args.tags)} tags) and imagenette2-320 ({n_images} images wanted) "
          f"written in {time.perf_counter() - start:.0f} s under {work}")
    config = work / "study.yaml"
    study = narrowed_study(args.tags, work / "data", work / "run", budgets)
    config.write_text(yaml.safe_dump(study, sort_keys=False))
    env = offline_env(hf_home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return config, env


def print_budgets(config: Path) -> None:
    study = yaml.safe_load(config.read_text())
    methods = ", ".join(f"{m} {p}" for m, p in study["methods"].items())
    diversity = study.get("diversity", {})
    print(f"{len(study['models'])} models, {study['dataset']['n_images']} images; {methods}; "
          f"corruptions {len(diversity.get('corruptions', []))} x severities "
          f"{diversity.get('severities', [1, 2, 3, 4, 5])}; trust {study.get('trust', {})}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tags", nargs="+", default=None,
                        help="tags of configs/imagenette-14.yaml (default: all 14)")
    parser.add_argument("--images", type=int, default=None, help="dataset.n_images")
    parser.add_argument("--ig-steps", type=int, default=None)
    parser.add_argument("--shap-samples", type=int, default=None)
    parser.add_argument("--shap-segments", type=int, default=None)
    parser.add_argument("--memory", default=None,
                        help="executor.memory (e.g. 4GB): the explain stage's pass budget")
    parser.add_argument("--small", action="store_true", help="the test's small budgets")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="kept afterwards (default: a temporary folder, removed)")
    args = parser.parse_args()
    args.tags = args.tags or published_tags()
    with tempfile.TemporaryDirectory(prefix="xc-real-path-") as scratch:
        work = args.workdir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        config, env = prepare(args, work)
        print_budgets(config)
        print(f"{'stage':<10}{'wall s':>9}{'CPU s':>9}{'peak RSS GB':>13}")
        rows = {"load": run_measured([sys.executable, "-c", LOAD_ONLY, str(config)], env,
                                     work / "load.log")}
        print(f"{'load':<10}{rows['load']['wall_s']:9.1f}{rows['load']['cpu_s']:9.1f}"
              f"{rows['load']['peak_gb']:13.2f}", flush=True)
        for stage in args.stages:
            rows[stage] = run_measured(
                [sys.executable, "-m", "xaicompare.cli", stage, str(config), "--quiet"], env,
                work / f"{stage}.log")
            print(f"{stage:<10}{rows[stage]['wall_s']:9.1f}{rows[stage]['cpu_s']:9.1f}"
                  f"{rows[stage]['peak_gb']:13.2f}", flush=True)
        stages = [rows[s] for s in args.stages]
        print(f"{'total':<10}{sum(r['wall_s'] for r in stages):9.1f}"
              f"{sum(r['cpu_s'] for r in stages):9.1f}{max(r['peak_gb'] for r in stages):13.2f}"
              "  (stages only; each includes one model load)")
        run_json = work / "run" / "run.json"
        if run_json.is_file():
            seconds = json.loads(run_json.read_text()).get("explain", {}).get("seconds", {})
            print("explain seconds per model and unit (run.json):")
            for unit, value in seconds.items():
                print(f"  {unit:<60}{value:9.1f}")


if __name__ == "__main__":
    main()
