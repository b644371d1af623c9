"""The published study (configs/imagenette-14.yaml) end to end as a user with a warm timm cache
runs it: four of its tags (EfficientNet-B4 at 320 px, DeiT, Swin, PVT) loaded through timm's
real pretrained path from a Hugging Face cache in the hub's layout with HF_HUB_OFFLINE=1, the
Imagenette photos of ../shared arranged as imagenette2-320, every stage through the CLI, at
budgets cut small (tests/real_path_fixture.py), under a memory budget (executor.memory) small
enough that EfficientNet-B4's IG steps of one image are split across passes.
benchmarks/real_path.py is the full version.

One study run (module fixture, ~6 CPU-minutes: most of it EfficientNet-B4 at 320 px), then
each test reads what it wrote.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from real_path_fixture import (
    SAMPLES,
    SMALL_BUDGETS,
    imagenette_photos,
    narrowed_study,
    offline_env,
    write_hub_cache,
    write_imagenette,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TAGS = ["efficientnet_b4.ra2_in1k", "deit_tiny_patch16_224.fb_in1k",
        "swin_tiny_patch4_window7_224.ms_in1k", "pvt_v2_b2.in1k"]
METHODS = ("gradcam", "integrated_gradients", "kernelshap")
WEIGHTS_SEED = 20  # not the study's seed 0: a silent random init would not match the hub
N_IMAGES = SMALL_BUDGETS["dataset.n_images"]
IG_STEPS = SMALL_BUDGETS["methods.integrated_gradients.n_steps"]
# One EfficientNet-B4 evaluation at 320 px with gradients keeps ~0.5 GB of activations
# (engine/memory.py's probe); the process holds ~2.9 GB when the explain stage starts (the
# four models loaded; measured on 2 CPU cores). 3.5 GB leaves room for one of them (fewer
# than IG's 4 steps of one image whenever the process holds more than ~1.1 GB) and for
# several of DeiT-Tiny's (~30 MB each).
MEMORY_BUDGET = "3.5GB"

# Run in the study's environment (HF_HOME is read when huggingface_hub is imported): what a
# user of the Study API sees after the run, as JSON.
CHECK_SCRIPT = """
import json, sys
import numpy as np, torch
from xaicompare.study import Study

study = Study.from_yaml(sys.argv[1], progress=False)
out = {"models": {}, "labels": study.dataset.labels.tolist(),
       "class_names": list(study.dataset.class_names)}
for m, model in enumerate(study.models):
    net = model.net
    with torch.no_grad():  # timm's own NCHW feature maps, prefix tokens stripped
        last = net.forward_intermediates(torch.zeros(1, 3, *model.input_size),
                                         intermediates_only=True)[-1]
    maps = {}
    for method in study.config.methods:
        x = study.read_maps(method)[m]
        maps[method] = {"shape": list(x.shape), "finite": bool(np.isfinite(x).all()),
                        "min_std": float(x.reshape(len(x), -1).std(axis=1).min())}
    out["models"][model.name] = {
        "input_size": list(model.input_size), "cam_grid": list(model.cam.grid),
        "timm_last_grid": list(last.shape[-2:]), "maps": maps,
        "logits_finite": bool(np.isfinite(study.read_logits()[m]).all())}
print(json.dumps(out))
"""


def shared_photos() -> dict[str, Path]:
    """The 10 Imagenette photos; absent ones skip the module loudly here and fail it in CI."""
    photos = imagenette_photos()
    if len(photos) < 10:
        message = (f"the real-path test needs the 10 Imagenette photos of "
                   f"../shared/data/imagenet-samples; found {len(photos)} at {SAMPLES}")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return photos


def in_study_env(hf_home: Path) -> dict[str, str]:
    env = offline_env(hf_home)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    return env


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    photos = shared_photos()
    base = tmp_path_factory.mktemp("real_path")
    hf_home = base / "hf"
    snapshots = write_hub_cache(hf_home, TAGS, seed=WEIGHTS_SEED)
    write_imagenette(base / "data", photos)
    study = narrowed_study(TAGS, base / "data", base / "run",
                           {**SMALL_BUDGETS, "executor.memory": MEMORY_BUDGET})
    config = base / "study.yaml"
    config.write_text(yaml.safe_dump(study, sort_keys=False))
    env = in_study_env(hf_home)
    run, peak_rss = run_measured([sys.executable, "-m", "xaicompare.cli", "run", str(config),
                                  "--quiet"], env, base)
    assert run.returncode == 0, run.stderr[-3000:]
    check = subprocess.run([sys.executable, "-c", CHECK_SCRIPT, str(config)],
                           capture_output=True, text=True, env=env, timeout=1800)
    assert check.returncode == 0, check.stderr[-3000:]
    return {"run": run, "dir": base / "run", "snapshots": snapshots, "peak_rss": peak_rss,
            "checks": json.loads(check.stdout.strip().splitlines()[-1])}


def run_measured(command: list[str], env: dict, folder: Path
                 ) -> tuple[subprocess.CompletedProcess, int]:
    """Run `command` to completion; it and its peak resident memory in bytes (its own
    ru_maxrss from wait4, not that of the other processes this test starts)."""
    out, err = folder / "run.stdout", folder / "run.stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, text=True)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    run = subprocess.CompletedProcess(command, process.returncode, out.read_text(),
                                      err.read_text())
    return run, usage.ru_maxrss * 1024  # KiB on Linux


def test_every_tag_loads_the_hub_cache_weights_offline(real_run):
    import timm
    from safetensors.torch import load_file

    from xaicompare.models.checkpoints import weights_hash

    meta = json.loads((real_run["dir"] / "run.json").read_text())
    assert [m["name"] for m in meta["models"]] == TAGS
    for record in meta["models"]:
        tag = record["name"]
        snapshot = real_run["snapshots"][tag]
        assert record["weights_source"] == f"hf-hub:timm/{tag}@{snapshot.name}"
        reference = timm.create_model(tag, pretrained=False)
        reference.load_state_dict(load_file(snapshot / "model.safetensors"))
        assert record["weights"] == weights_hash(reference)  # the cached weights, bit for bit
    families = {m["name"]: m["family"] for m in meta["models"]}
    assert families[TAGS[0]] == "cnn" and {families[t] for t in TAGS[1:]} == {"transformer"}
    assert [m["rule"] for m in meta["class_space"]["models"]] == ["wnid"] * len(TAGS)


def test_every_stage_ran_and_the_report_names_every_model(real_run):
    out = real_run["run"].stdout
    meta = json.loads((real_run["dir"] / "run.json").read_text())
    assert set(meta["timings"]) == {"explain", "compare", "cluster", "diversity", "trust",
                                    "report"}
    assert meta["explain"]["failed"] in ({}, []) and not meta["not_applicable"]
    report = real_run["dir"] / "report.html"
    assert f"Report: {report}" in out and report.stat().st_size > 100_000
    html = report.read_text()
    for tag in TAGS:
        assert tag in html
    assert html.count("<img") > 10  # figures embedded
    assert "Traceback" not in real_run["run"].stderr


def test_the_memory_budget_split_efficientnet_b4s_steps_and_bounded_the_run(real_run):
    """run.json records each model's cap on inputs per pass and the passes each method made
    (engine/summary.py):
    EfficientNet-B4's IG ran fewer inputs per pass than the steps of one image (split),
    DeiT-Tiny more; the whole run's peak RSS stayed within the budget plus the weights."""
    from xaicompare.sizes import parse_memory

    explained = json.loads((real_run["dir"] / "run.json").read_text())["explain"]
    limits, passes = explained["pass_limits"], explained["passes"]
    assert set(limits) == set(TAGS)
    cnn = TAGS[0]
    ig = passes[f"{cnn}/integrated_gradients"]
    assert limits[cnn]["backward"] < IG_STEPS and ig["largest"] <= limits[cnn]["backward"]
    assert ig["largest"] < IG_STEPS  # the steps of one image across passes
    assert ig["passes"] >= N_IMAGES * math.ceil(IG_STEPS / ig["largest"])
    deit = TAGS[1]  # an evaluation ~1/15 of EfficientNet-B4's: a larger cap
    assert limits[deit]["backward"] > limits[cnn]["backward"]
    for key, seen in passes.items():  # no method of any model passed the cap
        model = key.rsplit("/", 1)[0]
        assert seen["largest"] <= max(limits[model].values()), key
    weights = sum((s / "model.safetensors").stat().st_size
                  for s in real_run["snapshots"].values())
    assert real_run["peak_rss"] <= parse_memory(MEMORY_BUDGET) + weights, real_run["peak_rss"]


def test_images_are_the_imagenette_val_photos_with_their_labels(real_run):
    manifest = json.loads((real_run["dir"] / "manifest.json").read_text())
    ids = manifest["ids"]
    assert len(ids) == N_IMAGES and all(i.startswith("val/n") for i in ids)
    checks = real_run["checks"]
    names = checks["class_names"]
    wnids = [i.split("/")[1] for i in ids]
    from xaicompare.data.classes import IMAGENETTE_CLASSES

    by_wnid = {c.wnid: c.name for c in IMAGENETTE_CLASSES}
    assert [names[k] for k in checks["labels"]] == [by_wnid[w] for w in wnids]


def test_maps_of_every_model_and_method_on_the_right_grid(real_run):
    expected_input = {TAGS[0]: [320, 320], TAGS[1]: [224, 224], TAGS[2]: [224, 224],
                      TAGS[3]: [224, 224]}
    for tag, info in real_run["checks"]["models"].items():
        assert info["input_size"] == expected_input[tag]
        # Grad-CAM's native grid is the model's last feature map at its own input size
        assert info["cam_grid"] == info["timm_last_grid"], tag
        assert info["logits_finite"], tag
        for method in METHODS:
            maps = info["maps"][method]
            assert maps["shape"] == [N_IMAGES, 224, 224], (tag, method)  # the canonical frame
            assert maps["finite"] and maps["min_std"] > 0, (tag, method)  # no blank map
    grids = {tag: info["cam_grid"] for tag, info in real_run["checks"]["models"].items()}
    assert grids == {TAGS[0]: [10, 10], TAGS[1]: [14, 14], TAGS[2]: [7, 7], TAGS[3]: [7, 7]}


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, comment="#", index_col=0)


def test_similarity_and_cluster_tables_are_complete(real_run):
    tables = real_run["dir"] / "tables"
    for method in METHODS:
        for metric in ("cosine", "rbf", "kappa", "spearman"):
            for statistic in ("mean", "dissimilarity"):
                table = read_table(tables / "similarity" / method / f"{metric}_{statistic}.csv")
                assert list(table.index) == TAGS and list(table.columns) == TAGS
                values = table.to_numpy()
                assert np.isfinite(values).all(), (method, metric, statistic)
                np.testing.assert_allclose(values, values.T, atol=1e-9)
            assignments = read_table(tables / "cluster" / method / f"{metric}_assignments.csv")
            assert sorted(assignments.index) == sorted(TAGS)
        boot = pd.read_csv(tables / "trust" / method / "cosine_bootstrap.csv", comment="#")
        assert np.isfinite(boot[["estimate", "low", "high"]].to_numpy()).all()
    faithfulness = pd.read_csv(tables / "trust" / "faithfulness.csv", comment="#")
    assert len(faithfulness) == len(TAGS) * len(METHODS) * 2
    assert np.isfinite(faithfulness[["deletion_auc", "insertion_auc"]].to_numpy()).all()


def test_diversity_scores_every_model_under_the_corruptions(real_run):
    tables = real_run["dir"] / "tables" / "diversity"
    accuracy = read_table(tables / "model_metrics.csv").loc[TAGS, "accuracy"]
    assert all(math.isfinite(a) and 0 <= a <= 1 for a in accuracy)
    retention = pd.read_csv(tables / "retention.csv", comment="#")
    corruptions = set(SMALL_BUDGETS["diversity.corruptions"])
    assert set(retention["corruption"]) == corruptions
    assert set(retention["severity"]) == set(SMALL_BUDGETS["diversity.severities"])


LOAD_SCRIPT = """
import json, sys
import timm, torch
from safetensors.torch import load_file
from xaicompare.models import load_model

tag, file = sys.argv[1], sys.argv[2]
written = load_file(file)
net = timm.create_model(tag, pretrained=True)  # timm's own hub path, offline
model = load_model(tag, probe=False)


def same(module):
    state = module.state_dict()
    return set(state) == set(written) and all(torch.equal(state[k], written[k]) for k in written)


print(json.dumps({"weights_source": model.weights_source,
                  "timm": same(net), "load_model": same(model.net)}))
"""


def test_hub_cache_fixture_is_what_timm_loads_offline(tmp_path):
    """The fixture alone, on a small tag: timm and load_model read the written weights."""
    tag = "resnet10t.c3_in1k"
    snapshot = write_hub_cache(tmp_path / "hf", [tag], seed=WEIGHTS_SEED)[tag]
    assert snapshot.parent.parent.name == f"models--timm--{tag}"
    assert (snapshot.parent.parent / "refs" / "main").read_text() == snapshot.name
    assert (snapshot / "config.json").is_file()
    result = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, tag,
                             str(snapshot / "model.safetensors")], capture_output=True,
                            text=True, env=in_study_env(tmp_path / "hf"), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {"weights_source": f"hf-hub:timm/{tag}@{snapshot.name}", "timm": True,
                      "load_model": True}


def test_weights_source_names_random_init_and_checkpoints(tmp_path):
    from xaicompare.models import load_model, save_model

    model = load_model("resnet10t", pretrained=False, probe=False, input_size=32)
    assert model.weights_source == "random-init"
    path = save_model(model, tmp_path / "m.safetensors")
    assert load_model(path, probe=False).weights_source == f"checkpoint:{path}"
    again = load_model("resnet10t", checkpoint=path, probe=False)
    assert again.weights_source == f"checkpoint:{path}"
