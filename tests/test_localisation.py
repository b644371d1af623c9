"""Localisation scores on hand-made maps and masks."""

import numpy as np
import pytest

from xaicompare.compare.localisation import localisation_scores
from xaicompare.errors import UserError


def test_hand_computed_case():
    masks = np.zeros((2, 4, 4), bool)
    masks[:, :2, :2] = True  # object in the top-left quarter
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0], maps[0, 3, 3] = 3.0, 1.0   # peak inside, 3/4 of the mass inside
    maps[1, 3, 3], maps[1, 1, 1] = 2.0, -5.0   # peak outside, no positive mass inside
    scores = localisation_scores(maps, masks)
    assert scores["pointing_game"] == pytest.approx(0.5)
    assert scores["mass_in_mask"] == pytest.approx((0.75 + 0.0) / 2)
    assert scores["mask_area"] == pytest.approx(0.25)


def test_degenerate_maps_are_misses_and_counted():
    masks = np.ones((1, 3, 3), bool)
    scores = localisation_scores(np.zeros((1, 3, 3)), masks)
    assert scores["pointing_game"] == 0.0 and scores["n_no_positive"] == 1
    assert np.isnan(scores["mass_in_mask"])


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(UserError, match=r"\[N, H, W\]"):
        localisation_scores(np.zeros((1, 3, 3)), np.zeros((1, 4, 4), bool))
