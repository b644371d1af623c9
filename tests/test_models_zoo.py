"""The shapes zoo: training path, saving/loading, shipped weights' accuracy, fine-tuning."""

from __future__ import annotations

import json

import pytest
import torch

from xaicompare.errors import UserError
from xaicompare.models.zoo import WEIGHTS_DIR, ZOO_INDEX, load_zoo
from xaicompare.training.fit import accuracy, augment
from xaicompare.training.zoo_train import train_zoo


def test_tiny_training_run_writes_a_loadable_reproducible_zoo(tmp_path):
    from xaicompare.data.shapes import make_shapes

    index = train_zoo(tmp_path, names=["shapes-resnet"], epochs=1, n_train=64, n_test=48,
                      progress=False)
    entry = index["models"]["shapes-resnet"]
    assert json.loads((tmp_path / ZOO_INDEX).read_text())["models"]["shapes-resnet"] == entry
    assert "train_zoo(" in entry["command"] and entry["family"] == "cnn"
    (model,) = load_zoo(weights_dir=tmp_path)
    assert model.name == "shapes-resnet" and model.weights_id == entry["weights_id"]
    assert model.input_size == (32, 32) and model.class_indices is None
    test = make_shapes(48, split="test", size=64, seed=0)
    recomputed = accuracy(model, test.images.float() / 255, test.labels)
    assert recomputed == pytest.approx(entry["test_accuracy"], abs=1e-4)
    assert entry["cue_conflict"] is False and entry["cue_test_accuracy"] is None
    assert entry["cue_strength"] is None
    with pytest.raises(UserError, match="unknown zoo model"):
        load_zoo(["nope"], weights_dir=tmp_path)
    with pytest.raises(UserError, match="teacher"):
        train_zoo(tmp_path / "other", names=["shapes-pvt"], epochs=1, n_train=16, n_test=8,
                  progress=False)


def test_parallel_workers_write_the_same_weights_as_one_worker(tmp_path):
    """The mixer learns from the resnet, so the run also checks a student waits for its teacher."""
    names = ["shapes-mixer", "shapes-resnet", "shapes-resnet-cue"]
    options = {"names": names, "epochs": 1, "n_train": 32, "n_test": 16, "progress": False}
    serial = train_zoo(tmp_path / "serial", workers=1, **options)["models"]
    parallel = train_zoo(tmp_path / "parallel", workers=2, **options)["models"]
    assert list(serial) == list(parallel) == names
    for name in names:
        assert parallel[name]["weights_id"] == serial[name]["weights_id"], name
        assert parallel[name]["test_accuracy"] == serial[name]["test_accuracy"]
    assert serial["shapes-mixer"]["teacher"] == "shapes-resnet"
    assert parallel["shapes-mixer"]["teacher_weights_id"] == parallel["shapes-resnet"]["weights_id"]


def test_an_error_in_a_worker_process_is_reported_and_the_others_finish(tmp_path):
    options = {"epochs": 1, "n_train": 16, "n_test": 8, "progress": False}
    train_zoo(tmp_path, names=["shapes-resnet", "shapes-resnet-cue"], workers=1, **options)
    # the teacher's file no longer holds the weights its zoo.json entry records
    (tmp_path / "shapes-resnet.safetensors").write_bytes(
        (tmp_path / "shapes-resnet-cue.safetensors").read_bytes())
    with pytest.raises(UserError) as failed:
        train_zoo(tmp_path, names=["shapes-mixer", "shapes-convnext"], workers=2, **options)
    assert "shapes-mixer: UserError: teacher" in str(failed.value)
    assert "has weights id" in str(failed.value)
    written = json.loads((tmp_path / ZOO_INDEX).read_text())["models"]
    assert "shapes-convnext" in written and "shapes-mixer" not in written


def test_retraining_a_teacher_warns_about_students_kept_from_before(tmp_path, caplog):
    options = {"epochs": 1, "n_train": 16, "n_test": 8, "progress": False}
    train_zoo(tmp_path, names=["shapes-resnet", "shapes-mixer"], **options)
    with caplog.at_level("WARNING", logger="xaicompare"):
        train_zoo(tmp_path, names=["shapes-resnet"], seed=1, **options)
    assert "'shapes-mixer' was distilled from earlier weights of 'shapes-resnet'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="xaicompare"):
        train_zoo(tmp_path, names=["shapes-mixer"], seed=1, **options)
    assert "distilled from earlier weights" not in caplog.text


def test_a_failed_teacher_skips_its_students_and_keeps_the_rest(tmp_path, monkeypatch):
    from xaicompare.training import zoo_train

    real = zoo_train._train_one

    def train_one(job):
        if job["name"] == "shapes-resnet":
            raise RuntimeError("out of memory")
        return real(job)

    monkeypatch.setattr(zoo_train, "_train_one", train_one)
    names = ["shapes-resnet", "shapes-mixer", "shapes-resnet-cue"]
    with pytest.raises(UserError) as failed:
        train_zoo(tmp_path, names=names, epochs=1, n_train=16, n_test=8, workers=1,
                  progress=False)
    message = str(failed.value)
    assert "shapes-resnet: RuntimeError: out of memory" in message
    assert "shapes-mixer: its teacher 'shapes-resnet' failed" in message
    written = json.loads((tmp_path / ZOO_INDEX).read_text())["models"]
    assert list(written) == ["shapes-resnet-cue"]
    assert (tmp_path / "shapes-resnet-cue.safetensors").is_file()


def test_the_longest_chain_of_teacher_and_students_trains_first(tmp_path, monkeypatch):
    from xaicompare.training import zoo_train

    started = []

    def train_one(job):
        started.append(job["name"])
        return {"test_accuracy": 0.5, "epochs": job["epochs"], "train_seconds": 0.0}

    monkeypatch.setattr(zoo_train, "_train_one", train_one)
    names = ["shapes-convnext", "shapes-resnet", "shapes-mixer"]
    # a long mixer makes its teacher, the resnet, the head of the longest chain
    train_zoo(tmp_path / "a", names=names, epochs={"shapes-mixer": 10_000}, workers=1,
              progress=False)
    assert started == ["shapes-resnet", "shapes-mixer", "shapes-convnext"]
    started.clear()
    train_zoo(tmp_path / "b", names=names, epochs={"shapes-convnext": 10_000}, workers=1,
              progress=False)
    assert started == ["shapes-convnext", "shapes-resnet", "shapes-mixer"]


def test_cue_variant_inherits_its_base_recipe_and_trains_on_the_cue_split(tmp_path):
    from xaicompare.models.zoo import zoo_spec
    from xaicompare.training.zoo_train import fresh_shapes

    spec, base = zoo_spec("shapes-resnet-cue"), zoo_spec("shapes-resnet")
    assert spec["cue_conflict"] and not base["cue_conflict"]
    differs = ("cue_conflict", "cue_strength")
    assert {k: v for k, v in spec.items() if k not in differs} == \
        {k: v for k, v in base.items() if k not in differs}
    images, labels = fresh_shapes(64, 0, cue=spec["cue_strength"])(1)
    plain_images, plain_labels = fresh_shapes(64, 0)(1)
    assert torch.equal(labels, plain_labels) and not torch.equal(images, plain_images)
    index = train_zoo(tmp_path, names=["shapes-resnet-cue"], epochs=1, n_train=32, n_test=16,
                      progress=False)
    entry = index["models"]["shapes-resnet-cue"]
    assert entry["cue_conflict"] is True and 0 <= entry["cue_test_accuracy"] <= 1
    assert entry["cue_strength"] == spec["cue_strength"]


def test_augment_keeps_pixels_from_the_image_and_is_seeded():
    images = torch.rand(4, 3, 8, 8)
    a = augment(images, torch.Generator().manual_seed(0), max_shift=2)
    b = augment(images, torch.Generator().manual_seed(0), max_shift=2)
    assert torch.equal(a, b) and a.shape == images.shape
    unshifted = augment(images, torch.Generator().manual_seed(0), max_shift=0)
    for row in range(4):  # without shifts every image is itself or its mirror
        assert torch.equal(unshifted[row], images[row]) or torch.equal(
            unshifted[row], images[row].flip(-1))


@pytest.mark.skipif(not (WEIGHTS_DIR / ZOO_INDEX).is_file(), reason="no shipped zoo weights")
def test_shipped_zoo_is_accurate_on_a_fresh_shapes_sample():
    """Floors: CNNs 90%, others 85%, on images they were not trained or tested on. A model
    trained on the cue-conflict split is held to them on images drawn like its training data
    (textures still cue the class); on the texture-shuffled test split it may rely on texture,
    which is what it is for."""
    from xaicompare.data.shapes import make_shapes

    entries = json.loads((WEIGHTS_DIR / ZOO_INDEX).read_text())["models"]
    test = make_shapes(300, split="test", size=64, seed=123)  # not the recorded test set
    for model in load_zoo():
        entry = entries[model.name]
        data = test if not entry.get("cue_conflict") else make_shapes(
            300, split="train", size=64, seed=124, cue_conflict=True,
            cue_strength=entry["cue_strength"])
        acc = accuracy(model, data.images.float() / 255, data.labels)
        floor = 0.9 if model.family == "cnn" else 0.85
        assert acc >= floor, f"{model.name}: {acc:.3f} < {floor}"
