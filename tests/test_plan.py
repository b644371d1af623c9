"""`xaicompare plan`: the evaluations it predicts are the ones a real explain makes."""

import pytest
import torch
import yaml

from xaicompare.cli import main
from xaicompare.engine.runner import run_explanations
from xaicompare.plan import format_plan, plan_study
from xaicompare.store import Store
from xaicompare.study import Study
from xaicompare.study_config import parse_config


def study_dict(tmp_path, methods):
    return {"name": "plan", "output": str(tmp_path / "run"),
            "dataset": {"name": "shapes", "options": {"split": "test", "n": 20, "size": 32},
                        "n_images": 2},
            "models": [{"source": "zoo:shapes-resnet"}, {"source": "zoo:shapes-pvt"}],
            "methods": methods, "executor": {"memory": "none"},
            "diversity": {"corruptions": ["gaussian_noise"], "severities": [1, 3]}}


def counted_evaluations(study, method, params, tmp_path):
    """Images through each model while explaining 2 images with `method` alone:
    {model: (forward only, with gradients)}, the logits pass left out."""
    counts, hooks = {}, []
    for model in study.models:
        counts[model.name] = [0, 0]

        def hook(module, args, out, name=model.name):
            counts[name][1 if torch.is_grad_enabled() else 0] += len(args[0])

        hooks.append(model.register_forward_hook(hook))
    try:
        run_explanations(study.models, study.dataset, {method: params},
                         Store(tmp_path / method), dataset_identity=study.dataset_identity,
                         progress=False, executor=study.config.executor)
    finally:
        for h in hooks:
            h.remove()
    n = len(study.dataset)
    return {name: (f - n, b) for name, (f, b) in counts.items()}


@pytest.mark.parametrize("method, params", [
    ("gradcam", {}), ("integrated_gradients", {"n_steps": 3}),
    ("integrated_gradients", {"n_steps": 3, "quadrature": "riemann_trapezoid"}),
    ("kernelshap", {"n_samples": 12, "n_segments": 4}),
    ("occlusion", {"window": 16, "stride": 8}), ("smoothgrad", {"n_samples": 3}),
    ("rise", {"n_masks": 5}), ("saliency", {})])
def test_planned_evaluations_equal_the_counted_model_calls(tmp_path, method, params):
    config = parse_config(study_dict(tmp_path, {method: params}))
    plan = plan_study(config, probe=False)
    study = Study(config, progress=False)
    counted = counted_evaluations(study, method, params, tmp_path)
    for model in plan.models:
        [(name, forward, backward, exact, _)] = [r for r in model.rows if r[0] == method]
        logits = [r for r in model.rows if r[0] == "logits"][0]
        assert logits[1:3] == (2, 0)
        if exact:
            assert counted[model.name] == (forward, backward), method
        else:  # KernelSHAP: at most n_samples per image (2^M when M superpixels are few)
            assert counted[model.name][1] == backward == 0
            assert 0 < counted[model.name][0] <= forward


def test_plan_command_prints_counts_storage_and_estimates_and_computes_nothing(tmp_path,
                                                                              capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study_dict(tmp_path, {"gradcam": {},
                                                         "integrated_gradients": {"n_steps": 3}})))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 models x 2 methods x 2 images (32 px)" in out
    assert "shapes-pvt" in out and "integrated_gradients" in out
    assert "storage: ~" in out and "stage explain" in out and "peak memory" in out
    assert not (tmp_path / "run").exists()  # no store, no manifest, no maps


def test_format_without_probe_has_counts_only(tmp_path):
    config = parse_config(study_dict(tmp_path, {"gradcam": {}}))
    lines = format_plan(plan_study(config, probe=False), config)
    assert not any(line.startswith("stage") for line in lines)
    assert "total: 4 forward and 4 forward+backward" in "\n".join(lines)


def test_a_bad_memory_flag_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study_dict(tmp_path, {"gradcam": {}})))
    assert main(["plan", str(path), "--no-probe", "--memory", "lots"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --memory: got 'lots'; accepted: auto, none, or a size such as "
                   "512MB, 8GB, 16GiB")


def test_scorecam_is_planned_from_the_channels_of_the_layer_the_study_uses(tmp_path):
    """One forward per channel of the CAM layer per image, counted by hooks on a real
    explain: the plan (an upper bound) minus the channels that were all zero (their masked
    image is black: one shared forward) is the count."""
    from xaicompare.models.intermediates import tensor_at

    config = parse_config(study_dict(tmp_path, {"scorecam": {}}))
    plan = plan_study(config, probe=False)
    study = Study(config, progress=False)
    images = study.dataset.load(list(range(len(study.dataset))))
    activations = {}
    for model in study.models:  # the layer's output on the study's images, read by a hook
        cam = model.cam

        def keep(module, args, out, cam=cam, name=model.name):
            activations[name] = cam.to_nchw(tensor_at(out, cam.path) if cam.path else out)

        hook = cam.module.register_forward_hook(keep)
        with torch.no_grad():
            model(images)
        hook.remove()
    counted = counted_evaluations(study, "scorecam", {}, tmp_path)
    n = len(images)
    for planned in plan.models:
        [(_, forward, backward, exact, _)] = [r for r in planned.rows if r[0] == "scorecam"]
        channels = activations[planned.name].shape[1]
        dead = int((~activations[planned.name].flatten(2).any(dim=2)).sum())
        assert (forward, backward, exact) == (n * (1 + channels + 1), 0, False)
        # one shard: a forward per live channel and image, one black image if any is dead
        assert counted[planned.name] == (n * channels - dead + (dead > 0), 0)
    lines = "\n".join(format_plan(plan, config))
    assert "(at most)" in lines and "scorecam: at most: one forward per channel" in lines
    assert "no cost known" not in lines


def test_the_peak_estimate_counts_the_evaluations_a_pass_can_hold(tmp_path):
    """Two images x IG's 4 steps are 8 evaluations with gradients: the explain stage's
    peak is the process plus 8 of them (not IG's default pass of 32), capped by a budget."""
    from xaicompare.plan import ModelPlan, StudyPlan, stage_estimates

    model = ModelPlan("m", [("logits", 2, 0, True, 0), ("gradcam", 0, 2, True, 0),
                            ("integrated_gradients", 4, 8, True, 0)],
                      seconds_forward=0.1, seconds_backward=0.2, bytes_backward=10**8,
                      base_rss=10**9)
    plan = StudyPlan("p", n_images=2, size=224, shard=8, methods=["gradcam", "ig"],
                     models=[model], conditions=0, storage={})
    config = parse_config(study_dict(tmp_path, {"gradcam": {}}))
    assert stage_estimates(plan, config)["explain"][1] == 10**9 + 8 * 10**8
    plan.n_images = 40  # 32 of its 4 x 40 points in IG's default pass, 8 images a shard
    model.rows = [("integrated_gradients", 0, 160, True, 0)]
    assert stage_estimates(plan, config)["explain"][1] == 10**9 + 32 * 10**8
