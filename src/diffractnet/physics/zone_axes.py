"""Symmetry-distinct zone axes [uvw] of a crystal, and tilts off them."""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np

from diffractnet.physics.orientations import laue_group, matrix_to_quaternion
from diffractnet.structures.crystal import Crystal


def _primitive_directions(max_index: int) -> np.ndarray:
    r = np.arange(-max_index, max_index + 1)
    uvw = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    keep = [gcd(gcd(abs(int(u)), abs(int(v))), abs(int(w))) == 1 for u, v, w in uvw]
    return uvw[np.array(keep)]


def _preference(uvw: np.ndarray) -> tuple:
    """Sort key of a representative: fewest negatives, smallest indices, then 'largest last'."""
    return (int((uvw < 0).sum()), int(np.abs(uvw).sum()), int(np.abs(uvw).max()), tuple(-uvw[::-1]))


def symmetry_distinct_zone_axes(crystal: Crystal, max_index: int = 3) -> list[tuple[int, int, int]]:
    """One [uvw] per class of directions equivalent under the crystal's Laue group, indices ≤ ``max_index``.

    Ordered from low to high index; e.g. a cubic crystal with max_index 3 gives 13 axes starting
    [001], [011], [111]. A direction and its opposite count as one (Friedel's law).
    """
    return list(_distinct_cached(crystal.direct_matrix_A.tobytes(), crystal.space_group_number, max_index, crystal))


@lru_cache(maxsize=128)
def _distinct_cached(_key: bytes, _sg: int, max_index: int, crystal: Crystal) -> tuple:
    uvw = _primitive_directions(max_index)
    cart = uvw @ crystal.direct_matrix_A
    cart /= np.linalg.norm(cart, axis=1, keepdims=True)
    ops = laue_group(crystal).to_matrix().reshape(-1, 3, 3)  # includes inversion-related (±) images
    images = np.einsum("sij,nj->nsi", ops, cart)  # (N, S, 3)
    unassigned = np.ones(len(uvw), dtype=bool)
    classes = []
    for i in range(len(uvw)):
        if not unassigned[i]:
            continue
        # candidates equivalent to direction i: any image of i equals them (up to sign)
        close = np.abs(np.abs(np.einsum("si,ni->ns", images[i], cart)) - 1).min(axis=1) < 1e-8
        members = np.flatnonzero(close & unassigned)
        unassigned[members] = False
        best = min(members, key=lambda j: _preference(uvw[j]))
        classes.append(tuple(int(x) for x in uvw[best]))
    return tuple(sorted(classes, key=lambda t: _preference(np.array(t))))


def tilt_quaternions(quaternions: np.ndarray, max_tilt_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Tilt each orientation's beam by a random angle ≤ ``max_tilt_deg`` about a random in-plane axis.

    Tilt angles are drawn uniform in solid angle inside the cone; returns (n, 4) quaternions.
    """
    q = np.atleast_2d(quaternions)
    if max_tilt_deg <= 0:
        return q.copy()
    from scipy.spatial.transform import Rotation

    cos_max = np.cos(np.deg2rad(max_tilt_deg))
    tilt = np.arccos(1 - rng.random(len(q)) * (1 - cos_max))
    azimuth = rng.random(len(q)) * 2 * np.pi
    axes = np.stack([np.cos(azimuth), np.sin(azimuth), np.zeros_like(azimuth)], 1)
    tilt_mats = Rotation.from_rotvec(axes * tilt[:, None]).as_matrix()  # lab-frame tilts T
    base = Rotation.from_quat(q, scalar_first=True).as_matrix()
    return matrix_to_quaternion(base @ tilt_mats)  # R' = R T: lab → tilted lab → crystal
