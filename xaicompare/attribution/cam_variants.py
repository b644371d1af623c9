"""CAM variants over Grad-CAM's machinery (attribution/gradcam.py): each is one function
from the layer's activation A and gradient G = dS/dA (both [B, C, h, w]) to the map before
the ReLU. Formulas and constants follow pytorch-grad-cam 1.5 (tests compare against it).
"""

from __future__ import annotations

import torch

from .gradcam import register_cam, weighted_sum

SPATIAL = (2, 3)


def gradcampp_combine(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhyay et al., 2018), eq. 19 with exp(S) folded away:
    alpha = G^2 / (2 G^2 + sum_hw(A) G^3), zero where G = 0; w_c = sum_hw(relu(G) alpha)."""
    grad2 = grad.pow(2)
    sum_activation = activation.sum(dim=SPATIAL, keepdim=True)
    alpha = grad2 / (2 * grad2 + sum_activation * (grad2 * grad) + 1e-6)
    alpha = torch.where(grad != 0, alpha, torch.zeros_like(alpha))
    return weighted_sum((grad.clamp_min(0) * alpha).sum(dim=SPATIAL), activation)


def hirescam_combine(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin, 2020): sum_c G * A, the gradient kept per position."""
    return (grad * activation).sum(dim=1)


def xgradcam_combine(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """XGradCAM (Fu et al., 2020): w_c = sum_hw(G A) / sum_hw(A)."""
    sum_activation = activation.sum(dim=SPATIAL, keepdim=True)
    return weighted_sum((grad * activation / (sum_activation + 1e-7)).sum(dim=SPATIAL),
                        activation)


def layercam_combine(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al., 2021): sum_c relu(G) * A."""
    return (grad.clamp_min(0) * activation).sum(dim=1)


def eigencam_combine(activation: torch.Tensor, _grad: None = None) -> torch.Tensor:
    """EigenCAM (Muhammad & Yeasin, 2020), gradient-free: the activations (positions x
    channels, centred per channel) projected on their first principal component.

    An SVD's sign is arbitrary (pytorch-grad-cam's EigenCAM keeps whatever LAPACK returns,
    so its map can come out inverted); here the component is oriented so that its largest
    |value| is positive (pytorch-grad-cam's get_2d_projection_with_sign_correction,
    Seg-Eigen-CAM eq. 13), on an exact tie so that the first position is >= 0.
    """
    batch, channels, height, width = activation.shape
    # float64 where available: the component's direction is then exact to float32
    work = activation.double() if activation.device.type in ("cpu", "cuda") else activation
    positions = work.reshape(batch, channels, -1).transpose(1, 2)  # [B, hw, C]
    positions = torch.nan_to_num(positions, nan=0.0)  # as pytorch-grad-cam
    positions = positions - positions.mean(dim=1, keepdim=True)
    projection = first_component_scores(positions)  # [B, hw]
    balance = projection.amax(dim=1) + projection.amin(dim=1)  # < 0: |min| > |max|
    sign = torch.where(balance != 0, balance.sign(), projection[:, 0].sign())
    projection = projection * torch.where(sign == 0, torch.ones_like(sign), sign)[:, None]
    return projection.reshape(batch, height, width).to(activation.dtype)


def first_component_scores(x: torch.Tensor) -> torch.Tensor:
    """x [B, n, d] -> x @ v1 [B, n] (v1: first right singular vector; sign arbitrary), from
    the eigenvectors of the smaller Gram matrix: the SVD of x costs several times more."""
    if x.shape[1] <= x.shape[2]:  # x x^T = U S^2 U^T; x v1 = s1 u1
        values, vectors = torch.linalg.eigh(x @ x.transpose(1, 2))
        return vectors[..., -1] * values[:, -1:].clamp_min(0).sqrt()
    _, vectors = torch.linalg.eigh(x.transpose(1, 2) @ x)  # x^T x = V S^2 V^T
    return torch.einsum("bnd,bd->bn", x, vectors[..., -1])


gradcampp = register_cam("gradcampp", "Grad-CAM++", gradcampp_combine)
hirescam = register_cam("hirescam", "HiResCAM", hirescam_combine)
xgradcam = register_cam("xgradcam", "XGradCAM", xgradcam_combine)
layercam = register_cam("layercam", "LayerCAM", layercam_combine)
eigencam = register_cam("eigencam", "EigenCAM", eigencam_combine, uses_gradients=False)
