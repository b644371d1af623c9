"""KernelSHAP: exact Shapley values, captum parity, efficiency, batch independence, seeds."""

import itertools
import math

import numpy as np
import pytest
import torch
from captum.attr import KernelShap
from fakes import grid_segments, one_torch_thread, segment_net  # noqa: F401  (autouse)
from torch import nn

from xaicompare.attribution.api import explain, explain_full
from xaicompare.attribution.baselines import make_baseline
from xaicompare.attribution.coalitions import sample_coalitions
from xaicompare.attribution.shapley import solve_kernel_regression
from xaicompare.errors import UserError

H = W = 12


def _coalition_value(model, image, baseline, segments, target, keep) -> float:
    mask = torch.as_tensor(keep, dtype=torch.bool)[segments]
    with torch.no_grad():
        return float(model(torch.where(mask, image, baseline)[None])[0, target])


def _brute_force_shapley(model, image, baseline, segments, target) -> np.ndarray:
    """The Shapley formula itself: sum over subsets with |S|!(M-|S|-1)!/M! weights."""
    n = int(segments.max()) + 1
    values = {code: _coalition_value(model, image, baseline, segments, target,
                                     [(code >> j) & 1 for j in range(n)])
              for code in range(2**n)}
    phi = np.zeros(n)
    for j in range(n):
        others = [k for k in range(n) if k != j]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in itertools.combinations(others, size):
                code = sum(1 << k for k in subset)
                phi[j] += weight * (values[code | (1 << j)] - values[code])
    return phi


def test_exact_enumeration_equals_brute_force_shapley():
    model = segment_net()
    torch.manual_seed(3)
    images = torch.rand(2, 3, H, W)
    segments = torch.stack([grid_segments(2, 4, H, W), grid_segments(2, 3, H, W) * 5])  # M = 8 and 6
    target = torch.tensor([1, 2])
    result = explain_full(model, images, "kernelshap", target=target, segments=segments,
                          n_samples=256, baseline="blur")
    assert result.extras["exact"].tolist() == [True, True]
    assert result.extras["n_features"].tolist() == [8, 6]
    baseline = make_baseline(images, "blur")
    for b, n in enumerate([8, 6]):
        expected = _brute_force_shapley(model, images[b], baseline[b],
                                        segments[b] // (5 if b else 1), int(target[b]))
        phi = result.extras["phi"][b]
        np.testing.assert_allclose(phi[:n].numpy(), expected, atol=1e-5, rtol=1e-4)
        assert torch.isnan(phi[n:]).all()
        # The map paints each superpixel with its value.
        np.testing.assert_allclose(result.maps[b].numpy(),
                                   expected[(segments[b] // (5 if b else 1)).numpy()], atol=1e-5)


class _FixedCoalitionKernelShap(KernelShap):
    """captum's KernelShap fed our coalitions and weights instead of its own draws."""

    def __init__(self, forward_func, masks: torch.Tensor, weights: torch.Tensor):
        super().__init__(forward_func)
        self.inf_weight = 1e7  # captum's soft efficiency constraint, a bit stiffer
        self._rows = masks.long()
        self._weight = {tuple(m.tolist()): float(w) for m, w in zip(masks, weights, strict=True)}
        self.perturb_func = self._our_coalitions
        self.similarity_func = self._our_weights

    def _our_coalitions(self, original_inp, **kwargs):
        n = kwargs["num_interp_features"]
        yield torch.ones(1, n, dtype=torch.long)
        yield torch.zeros(1, n, dtype=torch.long)
        yield from (row[None] for row in self._rows)

    def _our_weights(self, _inputs, _model_input, coalition, **kwargs):
        key = tuple(coalition[0].tolist())
        if sum(key) in (0, len(key)):
            return torch.tensor([self.inf_weight])
        return torch.tensor([self._weight[key]])


def test_agrees_with_captum_kernelshap_on_the_same_coalitions():
    model = segment_net(1)
    torch.manual_seed(4)
    image = torch.rand(1, 3, H, W)
    segments = grid_segments(3, 4, H, W)[None]  # M = 12
    n_samples = 80  # far below 2^12: sampled, not exact
    ours = explain_full(model, image, "kernelshap", target=0, segments=segments,
                        n_samples=n_samples, seed=5)
    assert not bool(ours.extras["exact"][0])
    design = sample_coalitions(12, n_samples, 5)
    # Our weights sum to 1; scale them to captum's unit weight per coalition.
    captum = _FixedCoalitionKernelShap(model, design.masks, design.weights * len(design.weights))
    with torch.no_grad():
        theirs = captum.attribute(image, baselines=0.0, target=0, feature_mask=segments[:, None],
                                  n_samples=design.masks.shape[0] + 2, return_input_shape=False)
    phi = ours.extras["phi"][0]
    scale = float(phi.abs().max())
    np.testing.assert_allclose(theirs[0].numpy(), phi.numpy(), atol=1e-4 * scale)
    # Different coalitions (captum's own draws) give visibly different values: the check
    # above is not trivially satisfied.
    torch.manual_seed(0)
    with torch.no_grad():
        own = KernelShap(model).attribute(image, baselines=0.0, target=0, n_samples=n_samples,
                                          feature_mask=segments[:, None],
                                          return_input_shape=False)
    assert float((own[0] - phi).abs().max()) > 1e-2 * scale


def test_efficiency_holds_exactly_when_sampled():
    model = segment_net(2)
    torch.manual_seed(5)
    images = torch.rand(2, 3, 16, 16)
    segments = grid_segments(4, 5, 16, 16).expand(2, 16, 16)  # M = 20, 2^20 >> budget
    target = torch.tensor([0, 2])
    result = explain_full(model, images, "kernelshap", target=target, segments=segments,
                          n_samples=60, baseline="mean")
    assert not result.extras["exact"].any()
    with torch.no_grad():
        full = model(images).gather(1, target[:, None])[:, 0]
        empty = model(make_baseline(images, "mean")).gather(1, target[:, None])[:, 0]
    np.testing.assert_allclose(result.extras["phi"].double().sum(1).numpy(),
                               (full - empty).double().numpy(), atol=1e-5)
    np.testing.assert_allclose(result.extras["base_value"].numpy(), empty.numpy(), atol=1e-6)


def test_map_does_not_depend_on_its_batch():
    model = segment_net(3)
    torch.manual_seed(6)
    images = torch.rand(3, 3, 20, 20)
    seeds = torch.tensor([11, 22, 33])
    together = explain(model, images, "kernelshap", target=1, n_samples=40, n_segments=16,
                       image_seeds=seeds, batch_size=7)
    alone = explain(model, images[1:2], "kernelshap", target=1, n_samples=40, n_segments=16,
                    image_seeds=seeds[1:2], batch_size=13)
    np.testing.assert_allclose(alone[0].numpy(), together[1].numpy(), atol=1e-5)


def test_deterministic_from_seed_and_seed_matters():
    model = segment_net(4)
    torch.manual_seed(7)
    images = torch.rand(2, 3, H, W)
    segments = grid_segments(3, 4, H, W).expand(2, H, W)
    kwargs = dict(target=0, segments=segments, n_samples=40)
    first = explain(model, images, "kernelshap", seed=3, **kwargs)
    again = explain(model, images, "kernelshap", seed=3, **kwargs)
    other = explain(model, images, "kernelshap", seed=4, **kwargs)
    per_image = explain(model, images, "kernelshap", image_seeds=torch.tensor([3, 4]), **kwargs)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=1e-4)
    assert torch.equal(per_image[0], first[0]) and torch.equal(per_image[1], other[1])


class _SegmentMeanLinear(nn.Module):
    """f(x)_k = sum_j W[k, j] * mean of x over superpixel j (all channels) + c_k."""

    def __init__(self, segments: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        one_hot = torch.nn.functional.one_hot(segments.reshape(-1)).float()  # [HW, M]
        self.register_buffer("pool", one_hot / one_hot.sum(0) / 3)
        self.weight, self.bias = weight, bias

    def forward(self, x):
        means = x.sum(1).reshape(x.shape[0], -1) @ self.pool  # [N, M]
        return means @ self.weight.T + self.bias


def test_linear_model_recovers_exact_contributions():
    torch.manual_seed(8)
    segments = grid_segments(5, 6, 15, 18)  # M = 30: sampled
    weight, bias = torch.randn(2, 30), torch.randn(2)
    model = _SegmentMeanLinear(segments, weight, bias)
    images = torch.rand(2, 3, 15, 18)
    result = explain_full(model, images, "kernelshap", target=torch.tensor([1, 0]),
                          segments=segments.expand(2, 15, 18), n_samples=70, baseline="blur")
    assert not result.extras["exact"].any()
    baseline = make_baseline(images, "blur")
    difference = (model.pool.T @ (images - baseline).sum(1).reshape(2, -1).T).T  # [2, M]
    expected = weight[[1, 0]] * difference
    np.testing.assert_allclose(result.extras["phi"].numpy(), expected.numpy(), atol=1e-5)


def _relative_error(phi: torch.Tensor, reference: torch.Tensor) -> float:
    return float(((phi.double() - reference) ** 2).sum() / (reference**2).sum())


def test_half_the_samples_beat_captum_against_exact_values():
    model = segment_net(5)
    torch.manual_seed(9)
    images = torch.rand(2, 3, H, W)
    segments = grid_segments(3, 4, H, W)  # M = 12: exact reference needs 4096 evaluations
    exact = explain_full(model, images, "kernelshap", target=0, n_samples=4096,
                         segments=segments.expand(2, H, W))
    assert exact.extras["exact"].all()
    n = 96
    ours, theirs = [], []
    for seed in range(8):
        half = explain_full(model, images, "kernelshap", target=0, n_samples=n // 2, seed=seed,
                            segments=segments.expand(2, H, W))
        torch.manual_seed(seed)
        for b in range(2):
            with torch.no_grad():
                captum = KernelShap(model).attribute(
                    images[b:b + 1], baselines=0.0, target=0, n_samples=n,
                    feature_mask=segments[None, None], return_input_shape=False)
            reference = exact.extras["phi"][b].double()
            ours.append(_relative_error(half.extras["phi"][b], reference))
            theirs.append(_relative_error(captum[0], reference))
    assert np.mean(ours) <= np.mean(theirs), (np.mean(ours), np.mean(theirs))


def test_coalition_sets_are_paired_unique_and_exact_when_they_fit():
    exact = sample_coalitions(5, 32, seed=0)
    assert exact.exact and exact.masks.shape == (30, 5)
    sampled = sample_coalitions(20, 100, seed=0)
    assert not sampled.exact and sampled.masks.shape[0] <= 98
    rows = {tuple(m.tolist()) for m in sampled.masks}
    assert len(rows) == sampled.masks.shape[0]  # a repeat adds weight, not a row
    assert all(tuple((~m).tolist()) in rows for m in sampled.masks)  # complements present
    assert torch.isclose(sampled.weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    again = sample_coalitions(20, 100, seed=0)
    assert torch.equal(again.masks, sampled.masks) and torch.equal(again.weights,
                                                                    sampled.weights)


def test_solver_handles_padded_features():
    # Image 0: M = 2 padded to 3. Exact design for M = 2 is {10, 01} with equal weights.
    masks = torch.tensor([[[1, 0, 0], [0, 1, 0]], [[1, 0, 0], [0, 1, 1]]], dtype=torch.bool)
    phi, determined = solve_kernel_regression(
        masks, torch.ones(2, 2), torch.tensor([[1.0, 3.0], [2.0, 5.0]]), torch.tensor([4.0, 7.0]),
        torch.tensor([[True, True, False], [True, True, True]]))
    assert phi[0].tolist() == pytest.approx([1.0, 3.0, 0.0])
    # Image 1: two coalitions cannot pin three values down: flagged, least-norm, efficient.
    assert determined.tolist() == [True, False]
    assert float(phi[1].sum()) == pytest.approx(7.0)
    assert phi[1, 1] == pytest.approx(phi[1, 2])  # least norm splits the inseparable pair


def test_bad_parameters_raise_user_error():
    model = segment_net()
    images = torch.rand(1, 3, H, W)
    with pytest.raises(UserError, match="n_samples"):
        explain(model, images, "kernelshap", target=0, n_samples=10,
                segments=grid_segments(3, 4, H, W)[None])
    with pytest.raises(UserError, match="segments must have shape"):
        explain(model, images, "kernelshap", target=0, segments=grid_segments(3, 4, H, W))
    with pytest.raises(UserError, match="image_seeds"):
        explain(model, images, "kernelshap", target=0, image_seeds=torch.tensor([1, 2]))
    with pytest.raises(UserError, match="seed"):
        sample_coalitions(10, 50, seed=-1)


def test_undetermined_designs_are_flagged_and_warned():
    # M = 14 with 30 coalitions: some seeds draw a design of deficient rank.
    flags = []
    for seed in range(6):
        design = sample_coalitions(14, 32, seed)
        z = design.masks.double().numpy()
        centred = z - z.mean(axis=1, keepdims=True)  # the constraint removes the 1-direction
        expected = np.linalg.matrix_rank(centred, tol=1e-8) >= 13
        _, determined = solve_kernel_regression(
            design.masks[None], design.weights[None], torch.randn(1, len(design.weights)),
            torch.tensor([1.0]), torch.ones(1, 14, dtype=torch.bool))
        assert bool(determined[0]) == expected
        flags.append(expected)
    assert not all(flags)  # the case is exercised
    seed = flags.index(False)
    model = segment_net()
    segments = grid_segments(2, 7, H, W)[None]
    with pytest.warns(UserWarning, match="raise n_samples"):
        result = explain_full(model, torch.rand(1, 3, H, W), "kernelshap", target=0,
                              segments=segments, n_samples=32, seed=seed)
    assert not bool(result.extras["determined"][0])
