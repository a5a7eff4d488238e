"""Orientations: quaternion algebra (torch), zone-axis orientations, fundamental-zone sampling (orix).

Convention (orix's): a unit quaternion q = (w, x, y, z) with rotation matrix R maps **lab
(sample) coordinates to crystal coordinates**: v_crystal = R v_lab. So a reciprocal vector of
the crystal sits at g_lab = Rᵀ g_crystal, and the crystal direction along the beam (lab +z,
pointing from the specimen toward the gun; the electrons travel along −z) is R ẑ.
"""

from __future__ import annotations

import numpy as np
import torch

from diffractnet.errors import PhysicsError
from diffractnet.structures.crystal import Crystal


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions (w, x, y, z), any norm → (..., 3, 3) rotation matrices R (v' = R v)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) proper rotation matrices → (..., 4) unit quaternions (w, x, y, z) with w ≥ 0."""
    from scipy.spatial.transform import Rotation

    m = np.asarray(matrix, dtype=np.float64)
    quat = Rotation.from_matrix(m.reshape(-1, 3, 3)).as_quat(scalar_first=True)
    quat *= np.where(quat[:, :1] < 0, -1.0, 1.0)
    return quat.reshape(*m.shape[:-2], 4)


def direction_cartesian(crystal: Crystal, uvw) -> np.ndarray:
    """Unit Cartesian vector (crystal frame) of the direct-lattice direction [uvw]."""
    uvw = np.asarray(uvw, dtype=np.float64).reshape(3)
    vec = uvw @ crystal.direct_matrix_A
    norm = np.linalg.norm(vec)
    if norm == 0 or not np.isfinite(norm):
        raise PhysicsError(f"zone axis {list(uvw)} is not a direction; give a non-zero [uvw]")
    return vec / norm


def zone_axis_quaternion(crystal: Crystal, uvw, inplane_deg: float | np.ndarray = 0.0) -> np.ndarray:
    """Orientation(s) with the beam along [uvw] of ``crystal``, then turned by ``inplane_deg`` about it.

    At ``inplane_deg`` = 0 the lab x axis is the projection of the crystal's first axis (a, or b if
    a ∥ [uvw]) on the plane normal to the beam. Returns (4,) or (n, 4) quaternions (w, x, y, z).
    """
    beam = direction_cartesian(crystal, uvw)
    ref = np.array([1.0, 0.0, 0.0]) if abs(beam[0]) < 0.99 else np.array([0.0, 1.0, 0.0])
    x_axis = ref - ref.dot(beam) * beam
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(beam, x_axis)
    align = np.stack([x_axis, y_axis, beam], axis=1)  # columns: lab x, y, z seen in the crystal frame
    psi = np.deg2rad(np.atleast_1d(np.asarray(inplane_deg, dtype=np.float64)))
    c, s = np.cos(psi), np.sin(psi)
    rz = np.zeros((len(psi), 3, 3))
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = c, -s, s, c, 1.0
    quats = matrix_to_quaternion(align[None] @ rz)
    return quats[0] if np.ndim(inplane_deg) == 0 else quats


def random_quaternions(n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
    """(n, 4) rotations uniform on SO(3) (Shoemake 1992), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    u1, u2, u3 = rng.random((3, int(n)))
    a, b = np.sqrt(1 - u1), np.sqrt(u1)
    q = np.stack([b * np.cos(2 * np.pi * u3), a * np.sin(2 * np.pi * u2),
                  a * np.cos(2 * np.pi * u2), b * np.sin(2 * np.pi * u3)], axis=1)
    return q * np.where(q[:, :1] < 0, -1.0, 1.0)


def laue_group(crystal: Crystal):
    """orix point group of the crystal's Laue class (diffraction adds inversion)."""
    from orix.quaternion.symmetry import get_point_group

    return get_point_group(crystal.space_group_number, proper=False).laue


def sample_fundamental_zone(crystal: Crystal, n: int, seed: int | None = None) -> np.ndarray:
    """(n, 4) orientations uniform in the fundamental zone of the crystal's Laue group.

    Uniform rotations on SO(3) are mapped into the fundamental zone with orix, which keeps the
    distribution uniform inside it.
    """
    from orix.quaternion import Orientation

    if int(n) <= 0:
        raise PhysicsError(f"number of orientations must be positive, got {n}")
    ori = Orientation(random_quaternions(n, seed), symmetry=laue_group(crystal)).reduce()
    q = np.asarray(ori.data, dtype=np.float64)
    return q * np.where(q[:, :1] < 0, -1.0, 1.0)
