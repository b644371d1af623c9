"""Batched solver for the KernelSHAP regression with the efficiency constraint.

For each image b, with coalitions z_i in {0,1}^M, weights w_i and values
y_i = v(z_i) - v(empty), it solves

    min_phi  sum_i w_i (y_i - z_i . phi)^2   subject to   sum_j phi_j = delta = v(full) - v(empty)

for all images at once on the device. The constraint is eliminated exactly: phi =
delta/M * 1 + P u with P the projection orthogonal to 1, and u solves the projected normal
equations (P G P) u = P Z'W(y - Z 1 delta/M) through an eigendecomposition. A design that
does not determine phi (too few distinct coalitions) gets the least-norm solution and is
reported, never a blown-up number. Images with fewer features than the widest one are
padded: padded features have no coalition column and no part in the constraint, so their
phi is exactly 0.
"""

from __future__ import annotations

import torch

_RELATIVE_RANK_TOL = 1e-10  # eigenvalues below this fraction of the largest count as zero


def solve_kernel_regression(
    masks: torch.Tensor,
    weights: torch.Tensor,
    values: torch.Tensor,
    delta: torch.Tensor,
    feature_valid: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(phi [B, M] float64 with 0 on padded features, determined bool [B]).

    masks:         [B, S, M] bool/float coalitions (padded rows have weight 0)
    weights:       [B, S] regression weights
    values:        [B, S] v(z) - v(empty)
    delta:         [B] v(full) - v(empty), the efficiency constraint
    feature_valid: [B, M] bool, False on padding
    determined:    False where the coalitions do not pin phi down (least-norm answer).
    """
    valid = feature_valid.to(torch.float64)
    z = masks.to(torch.float64) * valid[:, None, :]
    w = weights.to(torch.float64)
    delta = delta.to(torch.float64)
    n_valid = valid.sum(1)
    centre = valid * (delta / n_valid)[:, None]  # the equal split satisfies the constraint
    residual = values.to(torch.float64) - torch.einsum("bsi,bi->bs", z, centre)

    # P: projection onto {sum over valid features = 0}, identity-free on padding (P = 0 there).
    unit = valid / n_valid.sqrt()[:, None]
    projection = torch.diag_embed(valid) - unit[:, :, None] * unit[:, None, :]
    gram = torch.einsum("bsi,bs,bsj->bij", z, w, z)
    projected_gram = projection @ gram @ projection
    projected_rhs = torch.einsum("bij,bsj,bs,bs->bi", projection, z, w, residual)

    eigenvalues, eigenvectors = torch.linalg.eigh(projected_gram)
    tolerance = _RELATIVE_RANK_TOL * eigenvalues.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
    kept = eigenvalues > tolerance
    inverse = torch.where(kept, 1.0 / torch.where(kept, eigenvalues, 1.0), 0.0)
    coords = torch.einsum("bji,bj->bi", eigenvectors, projected_rhs) * inverse
    update = torch.einsum("bij,bj->bi", eigenvectors, coords)
    phi = centre + torch.einsum("bij,bj->bi", projection, update)
    determined = kept.sum(1) >= n_valid.to(torch.long) - 1
    return phi, determined
