"""Synthetic shapes: determinism, exact masks (checked against geometry), cue conflict."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency
from sklearn.metrics import mutual_info_score

from xaicompare.data.shapes import SHAPE_NAMES, TEXTURE_NAMES, make_shapes
from xaicompare.data.sources import open_dataset
from xaicompare.errors import UserError


@pytest.fixture(scope="module")
def batch():
    return make_shapes(600, split="val", size=48, n_classes=len(SHAPE_NAMES), seed=5)


def test_same_seed_same_bytes_and_splits_differ():
    a = make_shapes(40, split="train", size=24, seed=1)
    b = make_shapes(40, split="train", size=24, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.object_texture, b.object_texture)
    for other in (make_shapes(40, split="val", size=24, seed=1),
                  make_shapes(40, split="train", size=24, seed=2)):
        assert (other.images != a.images).float().mean() > 0.5


def test_prefix_of_a_larger_set_is_identical_across_chunks(batch):
    small = make_shapes(520, split="val", size=48, n_classes=len(SHAPE_NAMES), seed=5)
    assert torch.equal(small.images, batch.images[:520])  # 520 > one chunk of 512
    assert torch.equal(small.masks, batch.masks[:520])


def test_types_shapes_and_balance(batch):
    n, s = 600, 48
    assert batch.images.dtype == torch.uint8 and batch.images.shape == (n, 3, s, s)
    assert batch.masks.dtype == torch.bool and batch.masks.shape == (n, s, s)
    for t in (batch.labels, batch.object_texture, batch.background_texture):
        assert t.dtype == torch.int64 and t.shape == (n,)
    counts = torch.bincount(batch.labels, minlength=len(SHAPE_NAMES))
    assert counts.min() >= 40 and batch.class_names == list(SHAPE_NAMES)
    assert len(set(SHAPE_NAMES)) >= 10
    area = batch.masks.float().mean((1, 2))
    assert area.min() > 0.04 and area.max() < 0.6  # large enough to learn, never the whole image
    assert (batch.radii >= 0.25 * s).all()


def test_masks_are_exactly_the_drawn_object(batch):
    flat = TEXTURE_NAMES.index("flat")
    both_flat = torch.nonzero((batch.object_texture == flat)
                              & (batch.background_texture == flat)).flatten()
    assert len(both_flat) >= 3
    for i in both_flat.tolist():
        pixels = batch.images[i].reshape(3, -1).T
        mask = batch.masks[i].reshape(-1)
        inside, outside = torch.unique(pixels[mask], dim=0), torch.unique(pixels[~mask], dim=0)
        assert len(inside) == 1 and len(outside) == 1  # one colour each side of the mask edge
        assert (inside.int() - outside.int()).abs().max() > 60
    # Every image: mean colour inside the mask differs from the background's.
    images = batch.images.float()
    m = batch.masks[:, None].float()
    mean_in = (images * m).sum((2, 3)) / m.sum((2, 3))
    mean_out = (images * (1 - m)).sum((2, 3)) / (1 - m).sum((2, 3))
    gap = (mean_in - mean_out).abs().max(1).values
    assert (gap > 40).float().mean() > 0.98


def test_discs_match_the_circle_equation(batch):
    size = batch.images.shape[-1]
    centres = (np.arange(size) + 0.5)
    for i in torch.nonzero(batch.labels == SHAPE_NAMES.index("disc")).flatten().tolist():
        cx, cy = batch.centers[i].double().tolist()
        r = batch.radii[i].item()
        expected = ((centres[None, :] - cx) ** 2 + (centres[:, None] - cy) ** 2) <= r * r
        assert (batch.masks[i].numpy() != expected).sum() <= 2  # float32 ties on the rim


@pytest.mark.parametrize(("name", "area"), [
    ("disc", math.pi), ("square", 1.44 ** 2), ("triangle", 3 * math.sqrt(3) / 4),
    ("star", 5 * 0.5 * math.sin(math.pi / 5)), ("cross", 2 * 0.6 * 1.9 - 0.36),
    ("ring", math.pi * (1 - 0.55 ** 2)), ("ellipse", math.pi * 0.45), ("diamond", 2 * 0.6),
    ("semicircle", math.pi / 2), ("hexagon", 3 * math.sqrt(3) / 2),
    ("L-shape", 1.44 ** 2 - 0.82 ** 2),
])
def test_mask_area_matches_the_analytic_area(batch, name, area):
    rows = batch.labels == SHAPE_NAMES.index(name)
    ratio = batch.masks[rows].float().sum((1, 2)) / batch.radii[rows] ** 2
    assert abs(ratio.mean().item() / area - 1) < 0.03


def cramers_v(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    table = np.zeros((x.max() + 1, y.max() + 1))
    np.add.at(table, (x, y), 1)
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    chi2, p, _, _ = chi2_contingency(table)
    return math.sqrt(chi2 / (table.sum() * (min(table.shape) - 1))), p


def test_cue_conflict_texture_predicts_class_only_in_train():
    train = make_shapes(1500, split="train", size=16, cue_conflict=True, seed=0)
    test = make_shapes(1500, split="test", size=16, cue_conflict=True, seed=0)
    plain = make_shapes(1500, split="train", size=16, cue_conflict=False, seed=0)
    v_train, p_train = cramers_v(train.labels.numpy(), train.object_texture.numpy())
    v_test, p_test = cramers_v(test.labels.numpy(), test.object_texture.numpy())
    v_plain, _ = cramers_v(plain.labels.numpy(), plain.object_texture.numpy())
    assert v_train > 0.8 and p_train < 1e-100
    assert v_test < 0.15 and p_test > 1e-3 and v_plain < 0.15
    mi_train = mutual_info_score(train.labels.numpy(), train.object_texture.numpy())
    mi_test = mutual_info_score(test.labels.numpy(), test.object_texture.numpy())
    assert mi_train > 1.2 and mi_test < 0.05
    agree = (train.object_texture == train.labels % len(TEXTURE_NAMES)).float().mean()
    assert 0.86 < agree < 0.95  # 0.9 + 0.1 / T by chance


def test_shapes_image_set_has_masks_and_ids():
    image_set = open_dataset("shapes", n=30, split="test", size=32, seed=4)
    assert image_set.ids[:2] == ["test/000000", "test/000001"] and len(image_set) == 30
    reference = make_shapes(30, split="test", size=32, seed=4)
    assert torch.equal(image_set.load([3, 7]), reference.images[[3, 7]].float() / 255)
    assert torch.equal(image_set.masks([3, 7]), reference.masks[[3, 7]])
    sub = image_set.subset([7, 3])
    assert torch.equal(sub.masks([0]), reference.masks[[7]]) and sub.ids == ["test/000007",
                                                                                 "test/000003"]


@pytest.mark.parametrize("bad", [{"split": "dev"}, {"n_classes": 99}, {"n": -1}, {"size": 4}])
def test_bad_arguments_are_user_errors(bad):
    with pytest.raises(UserError):
        make_shapes(**{"n": 4, **bad})
