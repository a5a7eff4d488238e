"""Grain-aware smoothing of an orientation map: neighbours that agree vote, outliers are outvoted.

Pixels of one grain share an orientation, while the error of each pattern's own estimate is mostly
independent from pixel to pixel (shot noise, the excitation-error fit, an occasional wrong beam
direction or 180° turn). Within a (2r+1)² window around each pixel:

1. every orientation of the window is scored by its support: how many window orientations lie within
   ``max_deg`` of it (symmetry-reduced, the centre's own vote counting a little extra so that ties
   keep it);
2. the best-supported orientation becomes the pixel's reference (an isolated wrong pixel is replaced
   by its grain's orientation; a pixel with its grain's support keeps its own);
3. the window orientations within ``max_deg`` of the reference, each turned to the symmetry
   equivalent nearest the reference, are averaged (weighted mean of aligned quaternions) — pixels of
   another grain, more than ``max_deg`` away, take no part, so grain boundaries stay sharp.

This is the orientation-space analogue of the neighbour-pattern averaging EBSD users run before
indexing (e.g. kikuchipy's ``average_neighbour_patterns``) and of MTEX's ``smooth`` of EBSD maps; it
needs the map, not the patterns, so it costs milliseconds after the scan is indexed. The pairwise
angles of step 1 come from one angle map per pixel offset (``_close_pairs``), shared by all windows;
everything is vectorised over a block of rows at a time (memory ∝ rows × columns × window²).
"""

from __future__ import annotations

import numpy as np

from diffractnet.analysis.misorientation import _angle_deg, _conjugate, _multiply, laue_rotations
from diffractnet.errors import DataError
from diffractnet.structures.crystal import Crystal


def _window_offsets(radius: int) -> list[tuple[int, int]]:
    """The (dy, dx) of a (2r+1)² window, centre first."""
    return [(0, 0)] + [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
                       if (dy, dx) != (0, 0)]


def _windows(values: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(ny, nx, C) → ((ny, nx, W, C) neighbourhood stacks, (ny, nx, W) validity), W = (2r+1)², centre first."""
    ny, nx = values.shape[:2]
    offsets = _window_offsets(radius)
    padded = np.pad(values, ((radius, radius), (radius, radius), (0, 0)))
    valid = np.pad(np.ones((ny, nx), bool), radius)
    stack = np.stack([padded[radius + dy:radius + dy + ny, radius + dx:radius + dx + nx] for dy, dx in offsets], 2)
    mask = np.stack([valid[radius + dy:radius + dy + ny, radius + dx:radius + dx + nx] for dy, dx in offsets], 2)
    return stack, mask


def _aligned(reference: np.ndarray, others: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (..., 4) ``reference`` and (..., M, 4) ``others``: (the symmetry equivalents s ⊗ q of ``others``
    nearest the reference, sign-aligned with it (..., M, 4); their angles to it [deg] (..., M))."""
    d = _multiply(reference[..., None, :], _conjugate(others))  # (..., M, 4) = r ⊗ q⁻¹
    dots = d @ rotations.T  # (..., M, K): scalar part of r ⊗ (s ⊗ q)⁻¹
    best = np.abs(dots).argmax(-1)
    cos_half = np.take_along_axis(np.abs(dots), best[..., None], -1)[..., 0]
    equivalent = _multiply(rotations[best], others)
    sign = np.sign((equivalent * reference[..., None, :]).sum(-1, keepdims=True))
    angle = np.degrees(2 * np.arccos(np.clip(cos_half, 0.0, 1.0)))
    return equivalent * np.where(sign == 0, 1.0, sign), angle


def _close_pairs(padded: np.ndarray, y0: int, y1: int, radius: int, rotations: np.ndarray,
                 max_deg: float) -> np.ndarray:
    """(y1−y0, nx, W, W): whether window members m and m′ of each pixel of rows y0..y1 lie within
    ``max_deg`` of each other; ``padded`` the (ny, nx, 4) map padded by 2r on both sides of both axes
    with zeros (members outside the map get arbitrary values: mask them).

    Two members at offsets o, o′ of pixel p are the pixels p+o and p+o+d with d = o′ − o, so one map of
    angles per difference d (|dy|, |dx| ≤ 2r: 81 maps at r = 2) serves every window: 81 angle evaluations
    per pixel instead of the W² = 625 of comparing within each window."""
    r, pad = radius, 2 * radius
    ny, nx = padded.shape[0] - 2 * pad, padded.shape[1] - 2 * pad
    lo, hi = max(0, y0 - r), min(ny, y1 + r)  # the rows a member can sit in
    members = padded[lo + pad:hi + pad, pad:pad + nx]
    near = {}
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            other = padded[lo + pad + dy:hi + pad + dy, pad + dx:pad + dx + nx]
            angle = _angle_deg(_multiply(members, _conjugate(other)), rotations)
            near[dy, dx] = np.pad(angle < max_deg, r)  # member (y, x) at [y − lo + r, x + r]
    offsets = _window_offsets(r)
    close = np.empty((y1 - y0, nx, len(offsets), len(offsets)), dtype=bool)
    for i, (oy, ox) in enumerate(offsets):
        top = y0 + oy - lo + r
        for j, (py, px) in enumerate(offsets):
            close[:, :, i, j] = near[py - oy, px - ox][top:top + y1 - y0, ox + r:ox + r + nx]
    return close


def _smooth_rows(stack: np.ndarray, mask: np.ndarray, weight: np.ndarray, close: np.ndarray, rotations: np.ndarray,
                 max_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """One block: (rows, nx, W, 4) windows and their ``_close_pairs`` → (smoothed (rows, nx, 4), support
    fraction (rows, nx))."""
    close = close & mask[..., None, :] & mask[..., :, None]
    support = (close * weight[..., None, :]).sum(-1)
    support[..., 0] += 0.5 * weight[..., 0]  # ties keep the centre
    support = np.where(mask, support, -np.inf)
    pick = support.argmax(-1)
    reference = np.take_along_axis(stack, pick[..., None, None], -2)[..., 0, :]
    members, angle = _aligned(reference, stack, rotations)
    w = weight * mask * (angle < max_deg)
    mean = (members * w[..., None]).sum(-2)
    mean /= np.linalg.norm(mean, axis=-1, keepdims=True).clip(min=1e-12)
    total = (weight * mask).sum(-1).clip(min=1e-12)
    return mean, w.sum(-1) / total


def smooth_orientation_map(quaternions: np.ndarray, crystal: Crystal, *, radius_px: int = 2, max_deg: float = 2.0,
                           weights: np.ndarray | None = None, rows_per_block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ny, nx, 4) unit quaternions (lab → crystal) → (smoothed (ny, nx, 4), support (ny, nx) in [0, 1]: the
    weighted fraction of the window that agreed with the pixel's reference within ``max_deg``).

    ``radius_px`` window half-width (1: 3×3, 2: 5×5); ``weights`` (ny, nx) ≥ 0 per-pixel trust (e.g. a
    confidence; default all 1); pixels with weight 0 neither vote nor enter means, but are still
    assigned their neighbours' consensus.
    """
    q = np.asarray(quaternions, dtype=np.float64)
    if q.ndim != 3 or q.shape[-1] != 4:
        raise DataError(f"orientation smoothing: quaternions must be (rows, columns, 4), got {q.shape}")
    if not np.isfinite(q).all():
        raise DataError("orientation smoothing: quaternions contain NaN or inf; index every pixel first")
    if radius_px < 1 or max_deg <= 0:
        raise DataError(f"orientation smoothing: radius_px must be >= 1 and max_deg > 0 (got {radius_px}, {max_deg})")
    w = np.ones(q.shape[:2]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != q.shape[:2] or not np.isfinite(w).all() or (w < 0).any():
        raise DataError(f"orientation smoothing: weights must be finite, >= 0 and of shape {q.shape[:2]}")
    q = q / np.linalg.norm(q, axis=-1, keepdims=True).clip(min=1e-12)
    rotations = laue_rotations(crystal)
    out, support = np.empty_like(q), np.empty(q.shape[:2])
    r = int(radius_px)
    window = (2 * r + 1) ** 2
    rows_per_block = rows_per_block or max(1, int(2e7 // (q.shape[1] * window**2)))  # ``close``: rows × nx × W² bools
    padded = np.pad(q, ((2 * r, 2 * r), (2 * r, 2 * r), (0, 0)))
    for y0 in range(0, q.shape[0], rows_per_block):
        y1 = min(q.shape[0], y0 + rows_per_block)
        lo, hi = max(0, y0 - r), min(q.shape[0], y1 + r)  # a halo of r rows from the neighbouring blocks
        stack, mask = _windows(q[lo:hi], r)
        wstack, _ = _windows(w[lo:hi, :, None], r)
        sl = slice(y0 - lo, y0 - lo + (y1 - y0))
        close = _close_pairs(padded, y0, y1, r, rotations, max_deg)
        out[y0:y1], support[y0:y1] = _smooth_rows(stack[sl], mask[sl], wstack[sl][..., 0], close, rotations, max_deg)
    return out, support
