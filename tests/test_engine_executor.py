"""Executor choice without Ray installed, executor options, and the unit both executors run."""

import sys

import numpy as np
import pytest
import torch
from fakes import FakeImages, tiny_cnn

from xaicompare.attribution import explain
from xaicompare.config import ExecutorConfig
from xaicompare.engine.runner import run_explanations
from xaicompare.engine.units import ExplainJob, explain_unit, make_shards
from xaicompare.errors import UserError
from xaicompare.store import Store
from xaicompare.store.keys import maps_entry
from xaicompare.study_config import parse_config

DATASET = {"name": "fake"}
METHODS = {"gradcam": {}, "integrated_gradients": {"n_steps": 3}}


def fake_images(n=6):
    return FakeImages(n, 12, np.arange(n) % 3)



def test_ray_executor_without_ray_is_one_user_error_saying_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(UserError, match=r"pip install 'xaicompare\[ray\]'"):
        run_explanations([tiny_cnn()], fake_images(), METHODS, Store(tmp_path),
                         dataset_identity=DATASET, progress=False, executor="ray")
    assert not (tmp_path / "maps").exists()  # nothing was computed locally instead


@pytest.mark.parametrize("key, value, message", [
    ("kind", "dask", "executor.kind"), ("workers", 0, "executor.workers"),
    ("threads", 0, "executor.threads"), ("cpus_per_worker", 0, "executor.cpus_per_worker"),
    ("retries", -1, "executor.retries")])
def test_bad_executor_options_are_user_errors_naming_the_key(key, value, message):
    data = {"name": "x", "models": [{"source": "resnet10t"}], "executor": {key: value}}
    with pytest.raises(UserError, match=message):
        parse_config(data, check_names=False)


def test_threads_option_applies_during_the_run_and_is_restored(tmp_path):
    seen = []
    model = tiny_cnn()
    model.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    run_explanations([model], fake_images(), {"gradcam": {}}, Store(tmp_path),
                     dataset_identity=DATASET, progress=False, batch_size=3,
                     executor=ExecutorConfig(threads=1))
    assert seen and set(seen) == {1} and torch.get_num_threads() == before


def test_units_run_one_by_one_store_what_the_runner_stores(tmp_path):
    """The local executor is a loop over explain_unit: running the units by hand, in another
    order, stores the same bits."""
    data, model = fake_images(), tiny_cnn()
    run_explanations([model], data, METHODS, Store(tmp_path / "runner"),
                     dataset_identity=DATASET, batch_size=2, progress=False)
    store = Store(tmp_path / "units")
    job = ExplainJob(METHODS, DATASET)
    reports = [explain_unit(model, shard, job, store, torch.device("cpu"),
                            lambda rows=shard.rows: data.load(rows))
               for shard in reversed(make_shards(data, 2))]
    assert [r.progress for r in reports] == [2 * 3] * 3
    for method, params in METHODS.items():
        a = maps_entry(Store(tmp_path / "runner"), model, method, params, DATASET, "predicted")
        b = maps_entry(store, model, method, params, DATASET, "predicted")
        np.testing.assert_array_equal(a.read(data.ids)["maps"], b.read(data.ids)["maps"])
    again = explain_unit(model, make_shards(data, 2)[0], job, store, torch.device("cpu"),
                         lambda: pytest.fail("a finished unit must not load images"))
    assert [c[1] for c in again.counts] == [0, 0, 0]  # nothing computed, all skipped


def test_autocast_results_get_their_own_store_keys_and_stay_close_to_float32(tmp_path):
    data, model, store = fake_images(), tiny_cnn(), Store(tmp_path)
    for mode in ("none", "bf16"):
        run_explanations([model], data, {"gradcam": {}}, store, dataset_identity=DATASET,
                         progress=False, autocast=mode)
    full, half = (maps_entry(store, model, "gradcam", {}, DATASET, "predicted", mode)
                  .read(data.ids)["maps"].astype(np.float64) for mode in ("none", "bf16"))
    assert full.shape == half.shape and not np.array_equal(full, half)
    direct = explain(model, data.images, method="gradcam").numpy()
    np.testing.assert_allclose(full, direct, atol=2e-3, rtol=2e-3)  # float32, float16-stored
    cosine = (full * half).sum((1, 2)) / np.linalg.norm(full, axis=(1, 2)) / np.linalg.norm(
        half, axis=(1, 2))
    assert cosine.min() > 0.98  # bf16 keeps 8 bits of mantissa: close, not equal
    with pytest.raises(UserError, match="autocast: got 'fp8'; accepted: none, bf16, fp16"):
        run_explanations([model], data, {"gradcam": {}}, store, dataset_identity=DATASET,
                         progress=False, autocast="fp8")


def test_cli_executor_option_overrides_the_study_file(tmp_path, monkeypatch, capsys):
    from xaicompare.cli import main

    study = tmp_path / "study.yaml"
    study.write_text(
        f"name: cli\noutput: {tmp_path / 'run'}\n"
        "dataset: {name: shapes, options: {split: test, n: 8, size: 16}, n_images: 2}\n"
        "models: [{source: resnet10t, pretrained: false, num_classes: 12, "
        "class_indices: null}]\n")
    assert main(["explain", str(study), "--executor", "dask"]) == 2
    assert "--executor 'dask' is not valid; accepted: local, ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # the file says local; the option wins
    assert main(["explain", str(study), "--executor", "ray", "--quiet"]) == 2
    assert "pip install 'xaicompare[ray]'" in capsys.readouterr().err


def test_study_with_autocast_in_the_config_reads_back_its_own_results(tmp_path):
    from xaicompare.study import Study

    def study(mode):
        return Study.from_dict({
            "name": "ac", "output": str(tmp_path / "run"),
            "dataset": {"name": "shapes", "options": {"split": "test", "n": 8, "size": 16},
                        "n_images": 2},
            "models": [{"source": "resnet10t", "pretrained": False, "num_classes": 10,
                        "class_indices": None}],
            "executor": {"autocast": mode}}, progress=False)

    full, half = study("none"), study("bf16")
    for s in (full, half):
        s.run(("explain",))
    assert full.read_maps("gradcam").shape == half.read_maps("gradcam").shape == (1, 2, 16, 16)
    assert not np.array_equal(full.read_logits(), half.read_logits())  # separate entries
    np.testing.assert_allclose(full.read_logits(), half.read_logits(), atol=0.1, rtol=0.05)
    with pytest.raises(UserError, match="autocast"):
        parse_config({"name": "x", "models": [{"source": "resnet10t"}],
                      "executor": {"autocast": "fp8"}})


def test_store_keys_name_the_methods_defaults(tmp_path):
    """A key holds the resolved parameters, so maps made under an old default (IG's
    quadrature was riemann_trapezoid) are never read back as maps of the new one."""
    import inspect

    from xaicompare.attribution.integrated_gradients import integrated_gradients

    default = inspect.signature(integrated_gradients).parameters["quadrature"].default
    store, model = Store(tmp_path), tiny_cnn()

    def key(params):
        return maps_entry(store, model, "integrated_gradients", params, DATASET, "predicted").directory

    assert key({}) == key({"quadrature": default}) == key({"quadrature": default, "n_steps": 32})
    other = next(q for q in ("riemann_trapezoid", "gausslegendre") if q != default)
    assert key({}) != key({"quadrature": other})
