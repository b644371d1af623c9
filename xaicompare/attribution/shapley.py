"""Batched solver for the KernelSHAP regression with the efficiency constraint.

For each image b, with coalitions z_i in {0,1}^M, weights w_i and values
y_i = v(z_i) - v(empty), it solves

    min_phi  sum_i w_i (y_i - z_i . phi)^2   subject to   sum_j phi_j = v(full) - v(empty)

through its KKT system [[Z'WZ, 1], [1', 0]] [phi; lambda] = [Z'Wy; delta], all images at
once on the device. Images with fewer features than the widest one are padded: a padded
feature gets an identity row and no part in the constraint, so its phi is exactly 0.
"""

from __future__ import annotations

import torch


def solve_kernel_regression(
    masks: torch.Tensor,
    weights: torch.Tensor,
    values: torch.Tensor,
    delta: torch.Tensor,
    feature_valid: torch.Tensor,
) -> torch.Tensor:
    """phi [B, M] in float64 (0 on padded features).

    masks:         [B, S, M] bool/float coalitions (padded rows have weight 0)
    weights:       [B, S] regression weights
    values:        [B, S] v(z) - v(empty)
    delta:         [B] v(full) - v(empty), the efficiency constraint
    feature_valid: [B, M] bool, False on padding
    """
    z = masks.to(torch.float64)
    w = weights.to(torch.float64)
    y = values.to(torch.float64)
    valid = feature_valid.to(torch.bool)
    batch, n_features = valid.shape
    gram = torch.einsum("bsi,bs,bsj->bij", z, w, z)
    rhs = torch.einsum("bsi,bs,bs->bi", z, w, y)
    pad_diagonal = torch.diag_embed((~valid).to(torch.float64))
    both_valid = valid[:, :, None] & valid[:, None, :]
    gram = torch.where(both_valid, gram, pad_diagonal)
    rhs = torch.where(valid, rhs, torch.zeros_like(rhs))
    ones = valid.to(torch.float64)

    kkt = z.new_zeros(batch, n_features + 1, n_features + 1)
    kkt[:, :n_features, :n_features] = gram
    kkt[:, :n_features, n_features] = ones
    kkt[:, n_features, :n_features] = ones
    kkt_rhs = torch.cat([rhs, delta.to(torch.float64)[:, None]], dim=1)
    solution, info = torch.linalg.solve_ex(kkt, kkt_rhs)
    failed = info != 0
    if failed.any():  # rank-deficient design: least-norm solution of the same system
        solution[failed] = (torch.linalg.pinv(kkt[failed]) @ kkt_rhs[failed, :, None])[..., 0]
    return solution[:, :n_features]
