"""executor.memory: parsing, the per-evaluation cost probe, the cap on inputs per pass, and
maps that do not depend on the split."""

import logging

import numpy as np
import pytest
import torch
from fakes import tiny_cnn
from torch import nn

from xaicompare.attribution import explain, explain_full
from xaicompare.attribution.passes import PassLimit, pass_limit
from xaicompare.config import ExecutorConfig
from xaicompare.engine.memory import evaluation_cost, limit_for, parse_memory
from xaicompare.engine.runner import run_explanations
from xaicompare.errors import UserError
from xaicompare.models.base import LoadedModel
from xaicompare.store import Store
from xaicompare.store.keys import maps_entry
from xaicompare.study_config import parse_config

DATASET = {"name": "fake"}
SPLIT_METHODS = {
    "integrated_gradients": {"n_steps": 6},
    "kernelshap": {"n_samples": 20, "n_segments": 6},
    "lime": {"n_samples": 20, "n_segments": 6},  # KernelSHAP's coalitions, the same cap
    "smoothgrad": {"n_samples": 4},
    "occlusion": {"window": 6, "stride": 4},
}


@pytest.mark.parametrize("text, size", [("8GB", 8 * 10**9), ("512 MB", 512 * 10**6),
                                        ("16GiB", 16 * 2**30), ("1.5gb", 1_500_000_000),
                                        (4096, 4096), ("auto", "auto"), ("None", "none")])
def test_memory_sizes_parse(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("value", ["lots", "8 G", "0GB", -5, 0, True, "-1GB", [8]])
def test_a_bad_memory_setting_is_one_user_error_naming_the_key(value):
    data = {"name": "x", "models": [{"source": "resnet10t"}], "executor": {"memory": value}}
    with pytest.raises(UserError, match=r"executor\.memory: got .*accepted: auto, none, or a "
                                        r"size such as 512MB"):
        parse_config(data, check_names=False)


def test_the_probe_counts_saved_activations_of_one_input():
    """Flatten + Linear: autograd keeps the Linear's input (192 floats) per input; the
    largest module output is also 192 floats. Hand-computed bytes."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    cost = evaluation_cost(net, torch.rand(1, 3, 8, 8))
    per_input = 3 * 8 * 8 * 4
    assert cost.backward == per_input + 2 * per_input
    assert cost.forward == 4 * per_input


def test_the_probe_cost_grows_with_the_image_area():
    model = tiny_cnn()
    small, large = (evaluation_cost(model, torch.rand(1, 3, s, s)) for s in (16, 32))
    assert large.backward == pytest.approx(4 * small.backward, rel=0.05)


def test_an_explicit_budget_caps_inputs_per_pass(monkeypatch):
    from xaicompare.engine import memory

    model = tiny_cnn()
    image = torch.rand(1, 3, 16, 16)
    cost = evaluation_cost(model, image)
    monkeypatch.setattr(memory, "process_rss", lambda: 0)
    limit = limit_for(model, image, parse_memory(f"{10 * cost.backward}B"))
    assert limit.backward == int(memory.USABLE * 10 * cost.backward) // cost.backward == 8
    assert limit.forward == int(memory.USABLE * 10 * cost.backward) // cost.forward


class PerSample(nn.Module):
    """Runs its net one input at a time, so its numbers cannot depend on the batch: any
    difference between splits then comes from the method's own bookkeeping."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.cat([self.net(x[i:i + 1]) for i in range(len(x))])


def per_sample_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))
    return LoadedModel(PerSample(net), name="per-sample", family="cnn", weights_id="w0").eval()


def shapes():
    from xaicompare.data import open_dataset

    return open_dataset("shapes", n=3, size=24)


def _pass_sizes(model):
    sizes = []
    model.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    return sizes


@pytest.mark.parametrize("method", list(SPLIT_METHODS))
def test_one_evaluation_per_pass_gives_the_same_maps_bit_for_bit(method):
    model, images = per_sample_model(), shapes().load([0, 1, 2])
    target = torch.tensor([0, 1, 2])
    sizes = _pass_sizes(model)
    whole = explain_full(model, images, method, target, check_logits=False,
                         **SPLIT_METHODS[method]).maps
    assert max(sizes) > 3  # unsplit: several evaluations per pass
    sizes.clear()
    with pass_limit(PassLimit(backward=1, forward=1)):
        split = explain_full(model, images, method, target, check_logits=False,
                             **SPLIT_METHODS[method]).maps
    assert max(sizes) == 1  # the cap reached every pass, the steps of one image split
    assert torch.equal(whole, split)


def test_the_engine_under_a_tiny_budget_splits_and_stores_the_same_maps(tmp_path, caplog):
    """executor.memory 1KB is below one evaluation: one input per pass, one image per shard
    (the logits pass too), a warning saying so, and the maps of an unbudgeted run (same
    store keys)."""
    data = shapes()
    methods = SPLIT_METHODS  # (Grad-CAM needs a layer that runs once per pass)
    runs, summaries = {}, {}
    for memory in ("none", "1KB"):
        model = per_sample_model()
        sizes = _pass_sizes(model)
        store = Store(tmp_path / memory)
        with caplog.at_level(logging.WARNING, logger="xaicompare"):
            summary = run_explanations([model], data, methods, store,
                                       dataset_identity=DATASET, progress=False,
                                       executor=ExecutorConfig(memory=memory))
        runs[memory] = (store, model, sizes)
        summaries[memory] = summary
    assert max(runs["none"][2]) >= 3 * 6  # unbudgeted: IG's 3 images x 6 steps in one pass
    probe, passes = runs["1KB"][2][:2], runs["1KB"][2][2:]
    assert probe == [1, 2] and max(passes) == 1  # the cost probe (1 and 2 inputs), then 1
    assert caplog.text.count("executor.memory: 1KB") == 1  # once per model
    assert "one input per pass" in caplog.text
    # the summary (run.json's explain) records the cap and the passes. Per shard: a one-image
    # pass counting the model's outputs (attribution/api.py), IG's images x 6 Gauss-Legendre
    # steps, then the 2 ends F(x), F(x') per image. Unbudgeted: one shard of 3, the steps in
    # one pass and the ends in one; under 1KB: three shards of 1, one input per pass.
    ig = "per-sample/integrated_gradients"
    assert summaries["none"].pass_limits == {}
    assert summaries["none"].passes[ig] == {"passes": 1 + 1 + 1, "largest": 3 * 6}
    assert summaries["1KB"].pass_limits == {"per-sample": {"backward": 1, "forward": 1}}
    assert summaries["1KB"].passes[ig] == {"passes": 3 * (1 + 6 + 2), "largest": 1}
    for method, params in methods.items():
        maps = [maps_entry(store, model, method, params, DATASET, "predicted")
                .read(data.ids, ["maps"])["maps"] for store, model, _ in runs.values()]
        assert np.array_equal(maps[0], maps[1]), method


def test_timm_scale_float32_maps_agree_across_budgets_to_rounding(tmp_path):
    """A real CNN in float32: its kernels round differently at other batch sizes, so a split
    run agrees to float32 rounding (not bit for bit, see engine/memory.py)."""
    model = tiny_cnn()
    images = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([0, 2])
    whole = explain(model, images, "integrated_gradients", target, n_steps=8)
    with pass_limit(PassLimit(backward=1, forward=1)):
        split = explain(model, images, "integrated_gradients", target, n_steps=8)
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-7)


def test_ray_workers_of_one_node_split_its_free_ram(monkeypatch):
    """executor.memory auto on Ray: every worker of a node takes 1 / (its workers) of the
    auto share, so four workers do not each take half of the same free RAM."""
    import psutil

    from xaicompare.engine import memory
    from xaicompare.engine.ray_pool import workers_per_host

    assert workers_per_host(["a", "b", "a", "a"]) == [3, 1, 3, 3]
    assert memory.auto_budget(8 * 10**9, 0.5) == 4 * 10**9
    assert memory.auto_budget(8 * 10**9, 0.5, sharers=4) == 10**9
    free = type("Free", (), {"available": 12 * 10**9})()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: free)
    monkeypatch.setattr(memory, "process_rss", lambda: 10**9)
    monkeypatch.setattr(memory, "_RAM_SHARERS", [1])  # the worker's own, restored after
    cpu = torch.device("cpu")
    assert memory.available_bytes("auto", cpu) == int(memory.AUTO_SHARE_CPU * 12 * 10**9)
    memory.share_ram(3)
    assert memory.available_bytes("auto", cpu) == int(memory.AUTO_SHARE_CPU * 4 * 10**9)
    # an explicit size is this process's own budget already: not split
    assert memory.available_bytes("4GB", cpu) == int(memory.USABLE * 3 * 10**9)


def test_the_corrupted_logits_passes_keep_within_the_budget(tmp_path):
    """The diversity stage's forward passes on corrupted images (a 64-image shard by
    default) are capped as the explain stage's are: one image per pass under 1KB, the same
    logits as unbudgeted (a per-sample model: the batch cannot change its numbers)."""
    from xaicompare.engine.corrupted_logits import Condition, run_corrupted_logits
    from xaicompare.store.keys import logits_entry

    data = shapes()
    condition = Condition("gaussian_noise", 3, "gaussian_noise-s3-seed0")
    logits = {}
    for memory in ("none", "1KB"):
        model = per_sample_model()
        sizes = _pass_sizes(model)
        store = Store(tmp_path / memory)
        run_corrupted_logits([model], data, [condition], store, dataset_identity=DATASET,
                             progress=False, executor=ExecutorConfig(memory=memory))
        if memory == "none":
            assert sizes == [len(data)]
        else:  # the cost probe (1 and 2 inputs), then one image per pass
            assert sizes == [1, 2] + [1] * len(data)
        logits[memory] = logits_entry(store, model, DATASET, condition.name).read(
            data.ids, ["logits"])["logits"]
    assert np.array_equal(logits["none"], logits["1KB"])
