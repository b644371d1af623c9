"""ImageSet subsets and manifests: deterministic, stratified, and reopenable."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from xaicompare.data.imageset import (
    TensorImageSet,
    read_manifest,
    select_subset,
    write_manifest,
)
from xaicompare.data.sources import open_dataset, open_manifest
from xaicompare.errors import UserError


def labelled_set(counts: dict[int, int]) -> TensorImageSet:
    labels = np.concatenate([np.full(c, k) for k, c in counts.items()])
    order = np.random.default_rng(0).permutation(len(labels))  # classes interleaved
    labels = labels[order]
    images = torch.arange(len(labels), dtype=torch.uint8)[:, None, None, None].expand(
        -1, 3, 2, 2).contiguous()
    return TensorImageSet(name="toy", images=images, ids=[f"img{i:03d}" for i in range(len(labels))],
                          labels=labels, class_names=[f"c{k}" for k in counts],
                          class_wnids=None, size=2)


def test_subset_is_deterministic_sorted_and_seed_dependent():
    image_set = labelled_set({0: 50, 1: 30, 2: 20})
    a = select_subset(image_set, 20, seed=3)
    b = select_subset(image_set, 20, seed=3)
    c = select_subset(image_set, 20, seed=4)
    assert a.ids == b.ids and a.ids != c.ids
    assert a.ids == sorted(a.ids) and len(set(a.ids)) == 20  # dataset order, no repeats
    # Pixels and labels travel with the ids.
    rows = [image_set.ids.index(i) for i in a.ids]
    assert np.array_equal(a.labels, image_set.labels[rows])
    assert torch.equal(a.load(range(20))[:, 0, 0, 0] * 255, torch.tensor(rows).float())


def test_stratified_subset_keeps_class_proportions():
    image_set = labelled_set({0: 50, 1: 30, 2: 20})
    counts = Counter(select_subset(image_set, 20, seed=0).labels.tolist())
    assert counts == {0: 10, 1: 6, 2: 4}
    # Largest remainder: 7 * (0.5, 0.3, 0.2) = (3.5, 2.1, 1.4) -> (4, 2, 1).
    assert Counter(select_subset(image_set, 7, seed=1).labels.tolist()) == {0: 4, 1: 2, 2: 1}
    unstratified = [Counter(select_subset(image_set, 20, seed=s, stratify=False).labels.tolist())
                    for s in range(20)]
    assert any(c != {0: 10, 1: 6, 2: 4} for c in unstratified)


def test_subset_validation():
    image_set = labelled_set({0: 3})
    with pytest.raises(UserError, match="only 3 images"):
        select_subset(image_set, 4)
    with pytest.raises(UserError, match="positive"):
        select_subset(image_set, 0)


def test_select_ids_names_missing_ids():
    image_set = labelled_set({0: 5, 1: 5})
    picked = image_set.select_ids(["img007", "img002"])
    assert picked.ids == ["img007", "img002"]
    with pytest.raises(UserError, match="'nope'") as info:
        image_set.select_ids(["img001", "nope", "gone"])
    assert "2 image id(s)" in str(info.value) and "'gone'" in str(info.value)


def test_manifest_round_trip_for_shapes(tmp_path):
    image_set = open_dataset("shapes", n=60, split="val", size=16, seed=2)
    subset = select_subset(image_set, 12, seed=9)
    path = write_manifest(subset, tmp_path / "m" / "subset.json")
    payload = json.loads(path.read_text())
    assert payload["ids"] == subset.ids and payload["dataset"]["source"] == "shapes"
    manifest = read_manifest(path)
    assert manifest.ids == subset.ids and np.array_equal(manifest.labels, subset.labels)
    assert manifest.dataset["seed"] == 2 and manifest.dataset["n"] == 12
    reopened = open_manifest(path)
    assert reopened.ids == subset.ids
    assert torch.equal(reopened.load(range(12)), subset.load(range(12)))
    assert torch.equal(reopened.masks(range(12)), subset.masks(range(12)))


def test_manifest_round_trip_for_a_folder_and_detects_changes(tmp_path):
    for k, name in enumerate(["a", "b"]):
        for i in range(3):
            (tmp_path / "imgs" / name).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (40 * k, 10 * i, 0)).save(tmp_path / "imgs" / name / f"{i}.png")
    image_set = open_dataset("folder", root=tmp_path / "imgs", size=8)
    subset = select_subset(image_set, 4, seed=0)
    path = write_manifest(subset, tmp_path / "manifest.json")
    assert open_manifest(path).ids == subset.ids
    (tmp_path / "imgs" / "a" / "0.png").unlink()
    (tmp_path / "imgs" / "a" / "1.png").unlink()
    with pytest.raises(UserError, match="not in dataset"):
        open_manifest(path)


def test_bad_manifests_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_manifest(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        read_manifest(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"ids": []}')
    with pytest.raises(UserError, match="not an xaicompare manifest"):
        read_manifest(tmp_path / "y.json")


def test_describe_is_json_and_complete():
    image_set = open_dataset("shapes", n=10, size=16)
    info = json.loads(json.dumps(image_set.describe()))
    for key in ("source", "root", "split", "size", "policy", "seed", "n", "n_skipped"):
        assert key in info
    assert info["n"] == 10 and info["n_skipped"] == 0 and info["size"] == 16
    assert image_set.masks([]).shape == (0, 16, 16) and image_set.load([]).shape == (0, 3, 16, 16)
    with pytest.raises(IndexError):
        image_set.load([10])
