"""Superpixels: SLIC in the canonical frame, consecutive ids, deterministic, batch-free."""

import numpy as np
import pytest
import torch
from skimage.segmentation import slic

from xaicompare.attribution.superpixels import compute_segments, relabel_segments
from xaicompare.errors import UserError


def _quadrants() -> torch.Tensor:
    image = torch.zeros(1, 3, 16, 16)
    image[0, 0, :8, :8] = 1
    image[0, 1, :8, 8:] = 1
    image[0, 2, 8:, :8] = 1
    image[0, :, 8:, 8:] = 0.5
    return image


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renaming ids: each id of a maps to exactly one id of b and back."""
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def test_flat_quadrants_give_four_segments():
    segments, counts = compute_segments(_quadrants(), n_segments=4, compactness=0.1)
    assert counts.tolist() == [4]
    expected = np.zeros((16, 16), dtype=int)
    expected[:8, 8:], expected[8:, :8], expected[8:, 8:] = 1, 2, 3
    assert _same_partition(segments[0].numpy(), expected)


def test_matches_skimage_slic_and_ids_are_consecutive():
    torch.manual_seed(0)
    images = torch.rand(3, 3, 24, 20)
    segments, counts = compute_segments(images, n_segments=12, compactness=5.0)
    assert segments.dtype == torch.long and segments.shape == (3, 24, 20)
    for b in range(3):
        reference = slic(images[b].permute(1, 2, 0).double().numpy(), n_segments=12,
                         compactness=5.0, sigma=0.0, start_label=0, channel_axis=-1)
        assert _same_partition(segments[b].numpy(), reference)
        assert sorted(torch.unique(segments[b]).tolist()) == list(range(int(counts[b])))


def test_deterministic_and_independent_of_batch():
    torch.manual_seed(1)
    images = torch.rand(3, 3, 20, 20)
    together, counts = compute_segments(images, n_segments=10)
    again, _ = compute_segments(images, n_segments=10)
    alone, count_alone = compute_segments(images[1:2], n_segments=10)
    assert torch.equal(together, again)
    assert torch.equal(together[1:2], alone) and counts[1] == count_alone[0]


def test_relabel_removes_gaps_and_keeps_partition():
    segments = torch.tensor([[[7, 7, 3], [3, 100, 100]], [[0, 0, 0], [5, 5, 0]]])
    relabelled, counts = relabel_segments(segments)
    assert counts.tolist() == [3, 2]
    assert relabelled.tolist() == [[[1, 1, 0], [0, 2, 2]], [[0, 0, 0], [1, 1, 0]]]


@pytest.mark.parametrize("bad", [torch.zeros(2, 4, 4), torch.zeros(1, 1, 4, 4), "x"])
def test_bad_images_raise_user_error(bad):
    with pytest.raises(UserError, match="images"):
        compute_segments(bad)


def test_bad_segment_arguments_raise_user_error():
    with pytest.raises(UserError, match="n_segments"):
        compute_segments(torch.rand(1, 3, 8, 8), n_segments=1)
    with pytest.raises(UserError, match="integer"):
        relabel_segments(torch.zeros(1, 4, 4))
    with pytest.raises(UserError, match=r"\[B, H, W\]"):
        relabel_segments(torch.zeros(4, 4, dtype=torch.long))
