"""Texture reliance on cue-conflict images, checked on hand-made cases and on the split."""

import numpy as np
import pytest

from xaicompare.data import open_dataset
from xaicompare.diversity import cued_classes, texture_reliance


def test_cued_classes_follow_label_mod_textures():
    cued = cued_classes(np.array([0, 1, 3]), n_classes=10, n_textures=8)
    assert cued[0].nonzero()[0].tolist() == [0, 8]
    assert cued[1].nonzero()[0].tolist() == [1, 9]
    assert cued[2].nonzero()[0].tolist() == [3]


def test_texture_reliance_hand_computed():
    # 4 classes, 4 textures: class k is cued by texture k. Images 0-3 conflict (texture !=
    # label), image 4 is consistent.
    labels = np.array([0, 1, 2, 3, 2])
    texture = np.array([1, 2, 3, 0, 2])
    shape_model = labels.copy()                  # always the shape
    texture_model = np.array([1, 2, 3, 0, 2])    # always the texture
    mixed = np.array([0, 2, 0, 0, 1])            # shape, texture, other, texture; wrong on 4
    table = texture_reliance(np.stack([shape_model, texture_model, mixed]), labels, texture,
                             n_classes=4, n_textures=4, names=["s", "t", "m"]).set_index("model")
    assert table.loc["s", "accuracy_conflict"] == 1 and table.loc["s", "shape_bias"] == 1
    assert table.loc["t", "texture_decisions"] == 1 and table.loc["t", "shape_bias"] == 0
    assert table.loc["t", "accuracy_consistent"] == 1  # texture agrees with the label there
    assert table.loc["m", "accuracy_conflict"] == pytest.approx(1 / 4)
    assert table.loc["m", "texture_decisions"] == pytest.approx(2 / 4)
    assert table.loc["m", "other_errors"] == pytest.approx(1 / 4)
    assert table.loc["m", "shape_bias"] == pytest.approx(1 / 3)
    assert table.loc["m", "accuracy_consistent"] == 0
    assert (table["n_conflict"] == 4).all() and (table["n_consistent"] == 1).all()
    # one cued class per texture, 3 other classes: a texture-blind model's errors hit it 1/3
    assert table.loc["s", "texture_decisions_chance"] == 0  # no errors, no texture decisions
    assert table.loc["t", "texture_decisions_chance"] == pytest.approx(1 / 3)
    assert table.loc["m", "texture_decisions_chance"] == pytest.approx(3 / 4 / 3)


def test_shapes_carry_object_texture_through_subsets():
    data = open_dataset("shapes", n=40, split="test", size=16, cue_conflict=True)
    texture = data.attributes["object_texture"]
    assert texture.shape == (40,) and data.describe()["n_textures"] == 8
    part = data.subset([5, 2, 7])
    np.testing.assert_array_equal(part.attributes["object_texture"], texture[[5, 2, 7]])
    train = open_dataset("shapes", n=400, split="train", size=16, cue_conflict=True)
    cued = train.attributes["object_texture"] == train.labels % 8
    assert cued.mean() > 0.85  # the shortcut is there in train ...
    assert (texture == data.labels % 8).mean() < 0.4  # ... and broken in test
