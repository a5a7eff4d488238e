"""Per-pattern ambiguity of what a detector actually shows: the ZOLZ reflections inside its field.

``ambiguity.zone_ambiguity`` compares whole (infinite) zero-order Laue zones. A detector sees a disc
of radius ``field_invA`` [Å⁻¹]: a small cell at a high-index zone may show a single row of spots, or
a patch too small to hold what tells two groups apart. This module compares the *visible* point
sets instead: group G at [uvw] and candidate C at [u'v'w'] give the same visible pattern when, with
C's lattice scaled so its shortest present ZOLZ vector matches G's (the lattice parameter of an
unknown crystal is unknown), the systematically present reflections inside the disc coincide up
to rotation and mirror. A visible set that spans less than a plane tells nothing: every candidate
is then ambiguous with it.

The point sets are compared by a similarity-invariant signature: the sorted squared lengths and the
sorted squared pairwise distances of the points (origin included), normalised by the shortest
length. Equal point sets always have equal signatures; the converse fails only for homometric sets,
which errs toward calling patterns alike.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from diffractnet.structures.ambiguity import _absent_mask, _check_group, _gauss_reduce, _primitive_uvw, _zone_basis

_DECIMALS = 4
_PAIRWISE_POINTS = 64  # pairwise distances of the shells holding the shortest this many points enter the signature


def _reduced_zone_basis(inv_a_t: np.ndarray, uvw: tuple) -> np.ndarray:
    """(2, 3) int hkl basis of the ZOLZ lattice, Lagrange–Gauss reduced in the metric of ``inv_a_t``."""
    return _gauss_reduce(_zone_basis(uvw), inv_a_t @ inv_a_t.T)


def _present_points(space_group: int, inv_a_t: np.ndarray, uvw: tuple, radius_invA: float) -> np.ndarray:
    """(n, 3) Cartesian g [Å⁻¹] of the present ZOLZ reflections with 0 < |g| ≤ radius, shortest first."""
    basis = _reduced_zone_basis(inv_a_t, uvw)  # (2, 3) hkl
    cart = basis @ inv_a_t  # (2, 3)
    gram = cart @ cart.T
    # |i a + j b| ≥ r  ⇒  enumerate |i|, |j| up to radius / (shortest height of the cell)
    area = np.sqrt(max(np.linalg.det(gram), 1e-30))
    reach = int(np.ceil(radius_invA * max(np.sqrt(gram[0, 0]), np.sqrt(gram[1, 1])) / area)) + 1
    r = np.arange(-reach, reach + 1)
    ij = np.stack(np.meshgrid(r, r, indexing="ij"), -1).reshape(-1, 2)
    hkl = ij @ basis
    g = hkl @ inv_a_t
    length = np.linalg.norm(g, axis=1)
    keep = (length > 1e-9) & (length <= radius_invA * (1 + 1e-9))
    hkl, g, length = hkl[keep], g[keep], length[keep]
    present = ~_absent_mask(space_group, hkl)
    order = np.argsort(length[present], kind="stable")
    return g[present][order]


def _signature(points: np.ndarray, unit: float) -> tuple:
    """Similarity-invariant signature of a centrosymmetric point set (lengths in units of ``unit``)."""
    p = points / unit
    n2 = (p * p).sum(1)
    norms = np.round(np.sort(n2), _DECIMALS)
    if len(p) > _PAIRWISE_POINTS:  # whole shells only: a cut through a shell would depend on the point order
        p = p[n2 <= np.sort(n2)[_PAIRWISE_POINTS - 1] * (1 + 1e-6)]
    q = np.vstack([np.zeros((1, 3)), p])
    d2 = ((q[:, None] - q[None]) ** 2).sum(-1)[np.triu_indices(len(q), 1)]
    return len(p), tuple(norms.tolist()), tuple(np.round(np.sort(d2), _DECIMALS).tolist())


@lru_cache(maxsize=16384)
def _visible_cached(space_group: int, a_bytes: bytes, uvw: tuple, field_invA: float, shortest_invA: float | None):
    """(signature or None when the visible points span less than a plane, shortest present |g|)."""
    inv_a_t = np.linalg.inv(np.frombuffer(a_bytes).reshape(3, 3)).T
    probe = _present_points(space_group, inv_a_t, uvw, _shortest_radius(space_group, inv_a_t, uvw))
    own_shortest = float(np.linalg.norm(probe[0]))
    scale = 1.0 if shortest_invA is None else shortest_invA / own_shortest  # lattice scaled by 1/scale
    points = _present_points(space_group, inv_a_t, uvw, field_invA / scale) * scale
    if len(points) < 2 or np.linalg.matrix_rank(points, tol=1e-9 * max(1.0, float(np.abs(points).max()))) < 2:
        return None, own_shortest * scale
    return _signature(points, own_shortest * scale), own_shortest * scale


def _shortest_radius(space_group: int, inv_a_t: np.ndarray, uvw: tuple) -> float:
    """A radius [Å⁻¹] certain to hold a present ZOLZ reflection: absences thin a lattice row at most
    fourfold (4₁ screw axes, d-glides), so 8 reduced cell lengths always reach one."""
    basis = _reduced_zone_basis(inv_a_t, uvw) @ inv_a_t
    return 8.0 * float(np.linalg.norm(basis, axis=1).max())


def visible_zone_ambiguity(space_group: int, uvw, direct_matrix_A, candidates, zone_axes,
                           field_invA: float) -> tuple[int, ...]:
    """Candidates whose visible ZOLZ pattern at some axis of ``zone_axes`` equals that of ``space_group``
    at [uvw] on a detector showing |g| ≤ ``field_invA`` [Å⁻¹] (module doc). All groups share the metric of
    ``direct_matrix_A`` up to scale. ``space_group`` itself is returned when it is a candidate; every
    candidate when the visible reflections do not span a plane."""
    group = _check_group(space_group)
    a = np.ascontiguousarray(direct_matrix_A, dtype=float).tobytes()
    target, shortest = _visible_cached(group, a, _primitive_uvw(uvw), float(field_invA), None)
    members = sorted({int(c) for c in candidates})
    if target is None:
        return tuple(members)
    alike = {int(c) for c in members if int(c) == group or any(
        _visible_cached(_check_group(int(c)), a, _primitive_uvw(z), float(field_invA), shortest)[0] == target
        for z in zone_axes)}
    return tuple(sorted(alike))
