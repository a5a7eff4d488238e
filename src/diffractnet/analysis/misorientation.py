"""Misorientations of orientations: quaternion algebra, the Laue group's rotations, symmetry-reduced angles.

Quaternions are (w, x, y, z) unit quaternions in orix's sense: the rotation maps lab coordinates to
crystal coordinates. Symmetry is the crystal's **Laue** group, whose rotations are those of its proper
subgroup (m-3m → 432, -3m → 32). Shared by the map analysis (``analysis.orientation_maps``), the map
smoothing and the region vote (``index``) and the evaluation.
"""

from __future__ import annotations

import numpy as np

from diffractnet.errors import DataError
from diffractnet.physics.orientations import laue_group
from diffractnet.structures.crystal import Crystal

UNIT_NORM_TOLERANCE = 1e-3
BEAM_FLIP = np.array([0.0, 0.0, 0.0, 1.0])  # 180° about lab z
_LAUE_ROTATIONS: dict[int, np.ndarray] = {}


def _unit_quaternions(q, where: str) -> np.ndarray:
    """``q`` as float64 (..., 4) unit quaternions, or a DataError naming ``where``."""
    q = np.asarray(q, dtype=np.float64)
    if q.ndim < 1 or q.shape[-1] != 4:
        raise DataError(f"{where}: quaternions must have shape (..., 4), got {q.shape}")
    bad = ~np.isfinite(q).all(axis=-1)
    if bad.any():
        raise DataError(f"{where}: {int(bad.sum())} quaternion(s) hold NaN or inf, first at index "
                        f"{tuple(int(i) for i in np.argwhere(bad)[0])}")
    norm = np.linalg.norm(q, axis=-1)
    off = np.abs(norm - 1.0) > UNIT_NORM_TOLERANCE
    if off.any():
        raise DataError(f"{where}: {int(off.sum())} quaternion(s) are not unit length (norm "
                        f"{float(norm[off].flat[0]):.4g}); normalise them first")
    return q / norm[..., None]


# ----------------------------------------------------------------------------- quaternion algebra


def _multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a ⊗ b of (..., 4) quaternions (broadcasting)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def _conjugate(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def laue_rotations(crystal: Crystal) -> np.ndarray:
    """(K, 4) quaternions of the rotations of ``crystal``'s Laue group (its proper subgroup, K ≤ 24)."""
    number = int(crystal.space_group_number)
    if number not in _LAUE_ROTATIONS:  # cached by space group: building orix groups costs ~10 ms
        rotations = np.asarray(laue_group(crystal).proper_subgroup.data, dtype=np.float64)
        rotations.flags.writeable = False
        _LAUE_ROTATIONS[number] = rotations
    return _LAUE_ROTATIONS[number]


def _angle_deg(d: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Smallest rotation angle [deg] of d ⊗ s⁻¹ over the symmetry rotations s, for (..., 4) ``d``.

    The best s maximises |d · s| (the scalar part of d ⊗ s⁻¹); the angle is then taken with atan2 from
    the full product, which stays accurate near 0°.
    """
    flat = d.reshape(-1, 4)
    best = np.argmax(np.abs(flat @ rotations.T), axis=1)
    reduced = _multiply(flat, _conjugate(rotations[best]))
    angle = 2.0 * np.arctan2(np.linalg.norm(reduced[:, 1:], axis=1), np.abs(reduced[:, 0]))
    return np.degrees(angle).reshape(d.shape[:-1])


# ----------------------------------------------------------------------------- misorientations


def misorientation_deg(q_a, q_b, crystal: Crystal, *, beam_flip_equal: bool = False) -> np.ndarray:
    """Symmetry-reduced misorientation angle [deg] between orientations ``q_a`` and ``q_b``.

    ``q_a``, ``q_b``: (..., 4) unit quaternions (w, x, y, z), broadcast against each other. The angle is
    the smallest over the rotations S of the crystal's Laue group of the rotation taking R_a to S R_b,
    in [0°, 180°] (at most 62.8° for m-3m). Vectorised: one (N, 4) × (4, K) product.

    ``beam_flip_equal``: also accept R_b followed by a 180° turn about the beam (lab z) and return the
    smaller angle. Kinematic zero-order spot patterns obey Friedel's law (I(g) = I(−g)), so the two
    orientations give the same pattern up to higher-order Laue zones and excitation-error asymmetry;
    a model can only be blamed for the remaining error.
    """
    a = _unit_quaternions(q_a, "misorientation q_a")
    b = _unit_quaternions(q_b, "misorientation q_b")
    try:
        a, b = np.broadcast_arrays(a, b)
    except ValueError as exc:
        raise DataError(f"misorientation: shapes {a.shape} and {b.shape} do not broadcast") from exc
    rotations = laue_rotations(crystal)
    angle = _angle_deg(_multiply(a, _conjugate(b)), rotations)
    if beam_flip_equal:
        flipped = _multiply(b, BEAM_FLIP)
        angle = np.minimum(angle, _angle_deg(_multiply(a, _conjugate(flipped)), rotations))
    return angle


def misorientation_stats(deg) -> dict:
    """Summary of misorientation angles [deg]; NaN entries (masked pixels) are left out.

    Returns ``{"n", "median_deg", "p90_deg", "mean_deg", "fraction_below_1deg", "fraction_below_5deg"}``
    (plain Python numbers, JSON-ready). For errors that count a 180° beam flip as correct, pass angles
    from ``misorientation_deg(..., beam_flip_equal=True)``.
    """
    values = np.asarray(deg, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise DataError("misorientation statistics: no finite angles given")
    if (values < 0).any():
        raise DataError("misorientation statistics: angles must be ≥ 0 degrees")
    return {
        "n": int(values.size),
        "median_deg": float(np.median(values)),
        "p90_deg": float(np.percentile(values, 90)),
        "mean_deg": float(values.mean()),
        "fraction_below_1deg": float((values < 1.0).mean()),
        "fraction_below_5deg": float((values < 5.0).mean()),
    }
