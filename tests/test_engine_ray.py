"""Ray executor: the stored maps and logits equal the local executor's bit for bit, also
when a worker dies mid-run and when a study started locally finishes on Ray. Both executors
run with one intra-op thread per process (`executor.threads: 1`): equal thread counts are
what makes CPU results bitwise equal."""

import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

ray = pytest.importorskip("ray")

from fakes import FakeImages  # noqa: E402

from xaicompare.engine.runner import run_explanations  # noqa: E402
from xaicompare.errors import UserError  # noqa: E402
from xaicompare.models.base import LoadedModel  # noqa: E402
from xaicompare.stages.contexts import diversity_context  # noqa: E402
from xaicompare.stages.diversity import corrupted_condition  # noqa: E402
from xaicompare.store import Store  # noqa: E402
from xaicompare.store.keys import logits_entry, maps_entry  # noqa: E402
from xaicompare.study import Study  # noqa: E402

METHODS = {"gradcam": {}, "integrated_gradients": {"n_steps": 4},
           "kernelshap": {"n_samples": 16, "n_segments": 6}}
MODELS = [
    {"source": "resnet10t", "pretrained": False, "num_classes": 10, "class_indices": None},
    {"source": "vit_tiny_patch16_224", "pretrained": False, "num_classes": 10,
     "class_indices": None, "name": "vit", "kwargs": {"img_size": 32, "patch_size": 8}},
]
CORRUPTIONS = ["gaussian_noise", "defocus_blur"]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Classes defined here travel to the workers by value (tests/ is not importable there).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.cloudpickle.register_pickle_by_value(sys.modules["fakes"])
    yield
    ray.shutdown()


def config(folder, kind):
    return {
        "name": "ray", "output": str(folder), "seed": 0,
        "dataset": {"name": "shapes", "options": {"split": "test", "n": 40, "size": 32},
                    "n_images": 8},
        "models": MODELS, "methods": METHODS,
        "diversity": {"corruptions": CORRUPTIONS, "severities": [3]},
        "executor": {"kind": kind, "threads": 1, "batch_size": 4, "workers": 2},
    }


def explain_and_corrupt(study):
    summary = study.explain()
    diversity_context(study).corrupted_logits()  # the diversity stage's engine pass
    return summary


def stored(study):
    """Every stored number the explain and corruption units write, read from the store."""
    out = {m: study.read_maps(m) for m in METHODS}
    out["logits"] = study.read_logits()
    for corruption in study.config.diversity.corruptions:
        for severity in study.config.diversity.severities:
            condition = corrupted_condition(corruption, severity, study.config.seed)
            out[condition] = study.read_logits(condition)
    return out


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    study = Study.from_dict(config(tmp_path_factory.mktemp("local"), "local"), progress=False)
    summary = explain_and_corrupt(study)
    return study, summary, stored(study)


def assert_bitwise_equal(got, expected):
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_ray_study_stores_the_local_results_bit_for_bit(local_reference, tmp_path):
    _, local_summary, expected = local_reference
    study = Study.from_dict(config(tmp_path, "ray"), progress=False)
    summary = explain_and_corrupt(study)
    assert summary.computed == local_summary.computed and summary.failed == []
    assert_bitwise_equal(stored(study), expected)
    # executor.memory auto: the two workers of this one node each take half its share
    from xaicompare.engine import ray_pool

    pool = ray_pool._CACHED["pool"]
    sharers = ray.get([a.__ray_call__.remote(lambda self: __import__(
        "xaicompare.engine.memory", fromlist=["_"])._RAM_SHARERS[0]) for a in pool.actors])
    assert pool.sharers == sharers == [2, 2]
    # The maps are real explanations, not zeros: they differ between the two models.
    assert not np.array_equal(expected["gradcam"][0], expected["gradcam"][1])


def test_study_started_locally_finishes_on_ray_with_the_same_results(local_reference,
                                                                      tmp_path):
    _, _, expected = local_reference
    local = Study.from_dict(config(tmp_path, "local"), progress=False)
    dataset, load = local.dataset, local.dataset.load
    calls = []

    def crash_on_second_shard(rows):
        calls.append(rows)
        if len(calls) > 1:
            raise RuntimeError("killed")
        return load(rows)

    dataset.load = crash_on_second_shard
    with pytest.raises(RuntimeError, match="killed"):
        local.explain()  # resnet10t's first shard (4 images) is stored, nothing else
    finish = Study.from_dict(config(tmp_path, "ray"), progress=False)
    summary = explain_and_corrupt(finish)
    assert summary.skipped["resnet10t/gradcam"] == 4 and summary.computed["resnet10t/gradcam"] == 4
    assert summary.computed["vit/kernelshap"] == 8
    assert_bitwise_equal(stored(finish), expected)


# -- worker death and failing units, on a tiny CNN and in-memory images ----------------------
DATASET = {"name": "fake"}


def fake_images(n=8, labels=None):
    return FakeImages(n, 16, np.arange(n) % 3 if labels is None else labels)


class Sabotaged(nn.Module):
    """A tiny CNN that, outside the test's process (in a Ray worker), kills its process on
    its first forward pass (once: a marker file), and logs every forward's first image."""

    def __init__(self, marker, calls, driver_pid):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        self.marker, self.calls, self.driver_pid = str(marker), str(calls), driver_pid

    def forward(self, x):
        if os.getpid() != self.driver_pid:
            with open(self.calls, "a") as handle:
                handle.write(f"{x[0, 0, 0, 0].item():.6f}\n")
            try:  # O_EXCL: exactly one worker wins, even when two start at once
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return self.head(self.body(x))


def sabotaged_model(tmp_path, die=True):
    marker = tmp_path / "died"
    if not die:
        marker.touch()
    net = Sabotaged(marker, tmp_path / "calls.txt", os.getpid())
    return LoadedModel(net, name="tiny", family="cnn", cam_layer=net.body[3], weights_id="w0")


def run(model, store, executor, data=None, target="predicted"):
    methods = {"gradcam": {}, "integrated_gradients": {"n_steps": 4}}
    return run_explanations([model], data or fake_images(), methods, store, dataset_identity=DATASET,
                            batch_size=2, progress=False, executor=executor, target=target)


def read_all(store, model):
    ids = fake_images().ids
    out = {"logits": logits_entry(store, model, DATASET).read(ids)["logits"]}
    for method, params in {"gradcam": {}, "integrated_gradients": {"n_steps": 4}}.items():
        out[method] = maps_entry(store, model, method, params, DATASET, "predicted").read(
            ids)["maps"]
    return out


def test_a_worker_that_dies_has_its_unit_retried_and_results_are_unchanged(tmp_path):
    from xaicompare.config import ExecutorConfig

    model = sabotaged_model(tmp_path)
    local = Store(tmp_path / "local")
    run(model, local, ExecutorConfig(threads=1))
    assert not (tmp_path / "died").exists()  # the local run never dies
    on_ray = Store(tmp_path / "ray")
    summary = run(model, on_ray, ExecutorConfig(kind="ray", threads=1, workers=2))
    assert (tmp_path / "died").exists() and summary.retried == 1 and summary.failed == []
    assert summary.computed["tiny/gradcam"] == 8
    assert_bitwise_equal(read_all(on_ray, model), read_all(local, model))


def test_a_unit_failing_on_its_data_is_reported_once_and_not_retried(tmp_path):
    from xaicompare.config import ExecutorConfig

    model = sabotaged_model(tmp_path, die=False)
    labels = [0, 1, 2, 0, 7, 1, 2, 0]  # img4: label 7, but the model has 3 outputs
    data = fake_images(labels=labels)
    store = Store(tmp_path / "ray")
    with pytest.raises(UserError, match=r"1 explain unit\(s\) failed.*img4\.\.img5.*label 7"):
        run(model, store, ExecutorConfig(kind="ray", threads=1, workers=2), data, "label")
    first_pixel = f"{model.preprocess(data.images[4:5])[0, 0, 0, 0].item():.6f}"
    calls = (tmp_path / "calls.txt").read_text().split()
    assert calls.count(first_pixel) == 1  # the failing shard ran once: never retried
    entry = maps_entry(store, model, "gradcam", {}, DATASET, "label")
    assert entry.has_all(["img0", "img1", "img2", "img3", "img6", "img7"])
    assert entry.missing(data.ids) == ["img4", "img5"]


def test_a_unit_whose_worker_dies_more_often_than_retries_allow_is_reported(tmp_path):
    from xaicompare.config import ExecutorConfig

    model = sabotaged_model(tmp_path)
    store = Store(tmp_path / "ray")
    with pytest.raises(UserError, match=r"1 explain unit\(s\) failed.*worker died 1 times"):
        run(model, store, ExecutorConfig(kind="ray", threads=1, workers=2, retries=0))
    entry = maps_entry(store, model, "gradcam", {}, DATASET, "predicted")
    assert len(entry.missing(fake_images().ids)) == 2  # only the lost shard; the others are stored


class SizeLogged(nn.Module):
    """A tiny per-image CNN (its numbers cannot depend on the batch) that logs the size of
    every forward pass it runs outside the test's process."""

    def __init__(self, sizes, driver_pid):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        self.sizes, self.driver_pid = str(sizes), driver_pid

    def forward(self, x):
        if os.getpid() != self.driver_pid:
            with open(self.sizes, "a") as handle:
                handle.write(f"{len(x)}\n")
        return torch.cat([self.net(x[i:i + 1]) for i in range(len(x))])


def test_corrupted_logits_on_ray_keep_within_the_memory_budget(tmp_path):
    """executor.memory reaches the workers' corrupted-logits passes: one image per pass
    under 1KB (after the cost probe's passes of 1 and 2), the logits of a local run."""
    from xaicompare.config import ExecutorConfig
    from xaicompare.engine.corrupted_logits import Condition
    from xaicompare.engine.corrupted_logits import run_corrupted_logits as run_units

    sizes = tmp_path / "sizes.txt"
    model = LoadedModel(SizeLogged(sizes, os.getpid()), name="logged", family="cnn",
                        weights_id="w0").eval()
    data, condition = fake_images(4), Condition("gaussian_noise", 3, "gaussian_noise-s3-seed0")
    logits = {}
    for kind, memory in (("local", "none"), ("ray", "1KB")):
        store = Store(tmp_path / kind)
        run_units([model], data, [condition], store, dataset_identity=DATASET, progress=False,
                  executor=ExecutorConfig(kind=kind, threads=1, workers=1, memory=memory))
        logits[kind] = logits_entry(store, model, DATASET, condition.name).read(
            data.ids, ["logits"])["logits"]
    assert sizes.read_text().split() == ["1", "2"] + ["1"] * 4
    np.testing.assert_array_equal(logits["ray"], logits["local"])
