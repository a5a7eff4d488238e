"""Orientation regression: continuous 6D rotation output, symmetry-aware geodesic loss, confidence.

A network for this task has 7 outputs per pattern: six numbers that Gram–Schmidt turns into a
rotation matrix (Zhou et al. 2019: continuous, unlike quaternions or Euler angles) and one that
predicts log(1 + error in degrees) of its own answer, trained against the actual error (detached),
which gives a per-pattern confidence. Rotations follow ``physics.orientations``: R maps lab → crystal.

The loss is the angle to the *nearest symmetry-equivalent* truth: orientations S·R, S in the proper
rotations of the crystal's Laue group, give the same diffraction pattern, so none of them is wrong.
"""

from __future__ import annotations

import numpy as np
import torch

from diffractnet.structures.crystal import Crystal

NUM_OUTPUTS = 7  # 6D rotation + predicted log(1 + error_deg)


def rotation_from_6d(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) → (..., 3, 3) rotation matrices whose first two *rows* are the Gram–Schmidt of the halves."""
    a, b = x[..., :3], x[..., 3:6]
    r1 = torch.nn.functional.normalize(a, dim=-1, eps=1e-8)
    b = b - (r1 * b).sum(-1, keepdim=True) * r1
    r2 = torch.nn.functional.normalize(b, dim=-1, eps=1e-8)
    r3 = torch.cross(r1, r2, dim=-1)
    return torch.stack([r1, r2, r3], dim=-2)


def matrix_to_6d(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) → (..., 6): the first two rows (inverse of ``rotation_from_6d`` for rotations)."""
    return matrix[..., :2, :].reshape(*matrix.shape[:-2], 6)


def symmetry_matrices(crystal: Crystal) -> torch.Tensor:
    """(K, 3, 3) proper rotations of the crystal's Laue group, in the crystal's Cartesian frame."""
    from diffractnet.physics.orientations import laue_group, quaternion_to_matrix

    q = np.asarray(laue_group(crystal).proper_subgroup.data, dtype=np.float64)
    return quaternion_to_matrix(torch.from_numpy(q)).float()


def symmetric_angle_rad(pred: torch.Tensor, true: torch.Tensor, sym: torch.Tensor) -> torch.Tensor:
    """(B,) smallest rotation angle [rad] from ``pred`` (B,3,3) to any S·``true`` with S in ``sym`` (K,3,3).

    angle(P (S T)ᵀ) has cos = (tr(P Tᵀ Sᵀ) − 1)/2 and tr(M Sᵀ) = Σ M∘S, so all K at once.
    """
    m = pred @ true.transpose(-1, -2)  # (B, 3, 3)
    traces = torch.einsum("bij,kij->bk", m, sym.to(m))
    cos = ((traces.max(dim=-1).values - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    return torch.arccos(cos)


def orientation_loss(outputs: torch.Tensor, true: torch.Tensor, sym: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, angle_deg (B,)) for network ``outputs`` (B, 7) against true matrices (B, 3, 3).

    loss = mean geodesic angle [rad] + L1 between the confidence output and log(1 + angle_deg).
    """
    pred = rotation_from_6d(outputs[:, :6].float())
    angle = symmetric_angle_rad(pred, true.float(), sym)
    angle_deg = torch.rad2deg(angle)
    target = torch.log1p(angle_deg.detach())
    loss = angle.mean() + 0.1 * (outputs[:, 6].float() - target).abs().mean()
    return loss, angle_deg


def decode_outputs(outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network ``outputs`` (B, 7) → (rotation matrices (B, 3, 3), predicted error [deg] (B,))."""
    pred = rotation_from_6d(outputs[:, :6].float())
    return pred, torch.expm1(outputs[:, 6].float().clamp(-10, 10)).clamp(min=0)


def confidence_from_error(error_deg: torch.Tensor | np.ndarray, scale_deg: float = 1.0):
    """Predicted error [deg] → confidence in (0, 1]: 1 / (1 + error/scale)."""
    return 1.0 / (1.0 + error_deg / scale_deg)


def matrices_to_quaternions(matrix: torch.Tensor) -> np.ndarray:
    """(..., 3, 3) rotation matrices → (..., 4) unit quaternions (w ≥ 0), numpy float64."""
    from diffractnet.physics.orientations import matrix_to_quaternion

    return matrix_to_quaternion(matrix.detach().cpu().double().numpy())

