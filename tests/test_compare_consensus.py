"""Consensus scores against a direct leave-one-out loop; SSIM against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from xaicompare.compare.consensus import consensus, consensus_accuracy_correlation, ssim
from xaicompare.errors import UserError


def _minmax(m: np.ndarray) -> np.ndarray:
    return (m - m.min()) / (m.max() - m.min())


@pytest.fixture
def maps():
    rng = np.random.default_rng(0)
    truth = rng.random((5, 12, 12))  # the evidence every model sees a bit of
    noise = [0.1, 0.3, 0.6, 1.5]  # model 0 is closest to the truth, model 3 furthest
    return np.stack([truth + s * rng.random((5, 12, 12)) for s in noise])


@pytest.mark.parametrize("win_size", [3, 7])
def test_ssim_equals_scikit_image(maps, win_size):
    got = ssim(maps[0], maps[2], win_size=win_size)
    ref = [structural_similarity(_minmax(maps[0, i]), _minmax(maps[2, i]), data_range=1.0,
                                 win_size=win_size) for i in range(5)]
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    raw = ssim(maps[0], maps[2], normalization="none", data_range=3.0)
    np.testing.assert_allclose(raw, [structural_similarity(maps[0, i], maps[2, i],
                                                           data_range=3.0) for i in range(5)],
                               rtol=1e-10)
    assert isinstance(ssim(torch.tensor(maps[0]), torch.tensor(maps[1])), torch.Tensor)
    with pytest.raises(UserError, match="odd"):
        ssim(maps[0], maps[1], win_size=4)


def test_consensus_equals_leave_one_out_loop(maps):
    result = consensus(maps, ["m0", "m1", "m2", "m3"], n_resamples=200, normalization="minmax")
    norm = np.stack([[_minmax(maps[m, i]) for i in range(5)] for m in range(4)])
    np.testing.assert_allclose(result.consensus, norm.mean(0), rtol=1e-12)
    for m in range(4):
        others = np.delete(norm, m, axis=0).mean(0)
        ref = [float(norm[m, i].ravel() @ others[i].ravel()
                     / np.linalg.norm(norm[m, i]) / np.linalg.norm(others[i]))
               for i in range(5)]
        np.testing.assert_allclose(result.per_image[m], ref, rtol=1e-10)
    table = result.table.set_index("model")
    assert list(table["score"].rank(ascending=False)) == [1, 2, 3, 4]  # noise order
    assert ((table["low"] <= table["score"]) & (table["score"] <= table["high"])).all()
    assert (table["n"] == 5).all()


def test_consensus_score_tracks_accuracy(maps):
    result = consensus(maps, ["m0", "m1", "m2", "m3"], n_resamples=50, normalization="minmax")
    corr = consensus_accuracy_correlation(result, {"m0": 0.9, "m1": 0.8, "m2": 0.7, "m3": 0.5})
    assert corr["spearman"] == pytest.approx(1.0)
    with pytest.raises(UserError, match="one finite value per model"):
        consensus_accuracy_correlation(result, [0.9, 0.8])


def test_consensus_other_metric_and_degenerate_map(maps):
    maps = maps.copy()
    maps[1, 2] = 0.0  # model 1 has an all-zero map on image 2: NaN there, not a number
    result = consensus(maps, metric="spearman", n_resamples=20)
    assert np.isnan(result.per_image[1, 2]) and result.table["n"].tolist() == [5, 4, 5, 5]
    with pytest.raises(UserError, match="at least 3 models"):
        consensus(maps[:2])


def test_correlation_undefined_for_constant_accuracy(maps):
    result = consensus(maps, n_resamples=10)
    out = consensus_accuracy_correlation(result, [1.0, 1.0, 1.0, 1.0])
    assert np.isnan(out["spearman"]) and "same for every model" in out["note"]


def test_ssim_in_the_vectorised_pass_equals_scikit_image_per_pair(maps):
    from xaicompare.compare import similarity_matrices

    result = similarity_matrices(maps[:3], {"ssim": {"win_size": 5}}, names=["a", "b", "c"],
                                 options={"normalization": "none"})["ssim"]
    assert result.options["normalization"] == "minmax"  # SSIM's data range 1 fixes it
    for i in range(3):
        for j in range(3):
            ref = [structural_similarity(_minmax(maps[i, n]), _minmax(maps[j, n]),
                                         data_range=1.0, win_size=5) for n in range(5)]
            np.testing.assert_allclose(result.per_image[i, j], ref, rtol=1e-6, atol=1e-9)
    with pytest.raises(UserError, match="superpixels"):
        similarity_matrices(maps[:2], ["ssim"], options={"resolution": "superpixels"},
                            segments=np.zeros((5, 12, 12), dtype=np.int64))


def test_default_consensus_keeps_zero_and_sign_of_signed_maps():
    rng = np.random.default_rng(1)
    maps = np.zeros((3, 2, 8, 8))
    maps[:, :, 2:5, 2:5] = rng.normal(size=(3, 2, 3, 3))  # signed evidence on a zero ground
    result = consensus(maps, n_resamples=10)
    assert np.all(result.consensus[:, 0, 0] == 0)  # the background stays zero
    expected = np.mean([m / np.abs(m).max(axis=(1, 2), keepdims=True) for m in maps], axis=0)
    np.testing.assert_allclose(result.consensus, expected, rtol=1e-12)
