"""Which space groups kinematic electron diffraction cannot tell apart, from symmetry operations.

Two levels, both computed from spglib's operations of each space group in its ITA standard
setting (first Hall number of the group; R groups in hexagonal axes), never typed in:

* **global classes** – groups with the same Laue group (as a set of lattice-basis matrices, so
  -3m1 and -31m stay apart) and the same systematic absences look alike at every orientation;
* **zone-axis appearance** – what one zero-order Laue zone (ZOLZ) pattern shows once scale,
  in-plane rotation and mirror image are unknown: the 2D lattice the present reflections
  generate (shape only), which of its points are missing, and the pattern's 2D point group
  (seed 003's "2D-lattice appearance" relabelling, generalised to any zone and group).

Conventions: direct matrix ``A`` has rows a, b, c [Å]; reflections hkl are row vectors and
transform as hkl·W; a lattice-basis rotation W acts in Cartesian column convention as
M = Aᵀ W A⁻ᵀ. The beam [uvw] is the direct-space direction uvw·A; its ZOLZ holds hkl·uvw = 0.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np

from diffractnet.errors import StructureError

_TOL = 1e-6
_WINDOW = 12  # ZOLZ points generated with reduced-basis indices |i|, |j| ≤ _WINDOW
_DISC = 8  # missing points compared within a disc of radius _DISC·λ2 (λ2: 2nd shortest vector)


# ---------------------------------------------------------------- space-group operations
def _check_group(space_group) -> int:
    ok = isinstance(space_group, (int, np.integer)) and not isinstance(space_group, bool)
    if not ok or not 1 <= space_group <= 230:
        raise StructureError(f"space group number must be an integer in 1..230, got {space_group!r}")
    return int(space_group)


@lru_cache(maxsize=1)
def _standard_hall_numbers() -> dict[int, int]:
    """Space-group number → first spglib Hall number of that group (ITA standard setting)."""
    import spglib

    first: dict[int, int] = {}
    for hall in range(1, 531):
        first.setdefault(int(spglib.get_spacegroup_type(hall).number), hall)
    return first


@lru_cache(maxsize=None)
def _operations(space_group: int) -> tuple[np.ndarray, np.ndarray]:
    """(W (n,3,3) int, w (n,3) float): all operations incl. centring of the standard setting."""
    import spglib

    sym = spglib.get_symmetry_from_database(_standard_hall_numbers()[_check_group(space_group)])
    return np.asarray(sym["rotations"], dtype=np.int64), np.asarray(sym["translations"], dtype=float)


@lru_cache(maxsize=None)
def _laue_matrices(space_group: int) -> np.ndarray:
    """Sorted unique ±W of the point group, (n,3,3) int, lattice basis (the Laue group)."""
    rotations = _operations(space_group)[0]
    both = np.concatenate([rotations, -rotations]).reshape(-1, 9)
    return np.unique(both, axis=0).reshape(-1, 3, 3)


def _absent_mask(space_group: int, hkl: np.ndarray) -> np.ndarray:
    """Bool mask over hkl rows (m,3): some op has hkl·W = hkl and hkl·w ∉ ℤ (systematic absence)."""
    rotations, translations = _operations(space_group)
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    absent = np.zeros(len(hkl), dtype=bool)
    for rot in np.unique(rotations.reshape(-1, 9), axis=0).reshape(-1, 3, 3):
        fixed = np.all(hkl @ rot == hkl, axis=1)
        shifts = translations[np.all(rotations == rot, axis=(1, 2))]
        phase = hkl[fixed] @ shifts.T  # (m_fixed, n_shifts)
        absent[np.flatnonzero(fixed)] |= np.any(np.abs(phase - np.round(phase)) > _TOL, axis=1)
    return absent


def systematically_absent(space_group: int, hkl) -> np.ndarray:
    """Bool mask over ``hkl`` rows (m, 3) (standard setting): the reflections ``space_group`` forbids."""
    return _absent_mask(_check_group(space_group), hkl)


def same_laue_group(group_a: int, group_b: int) -> bool:
    """Whether two groups share their Laue group as lattice-basis matrices (so -3m1 and -31m differ)."""
    a, b = _laue_matrices(_check_group(group_a)), _laue_matrices(_check_group(group_b))
    return a.shape == b.shape and bool(np.array_equal(a, b))


# ---------------------------------------------------------------- level 1: global classes
@lru_cache(maxsize=None)
def absent_reflections(space_group: int, index_max: int = 12) -> frozenset[tuple[int, int, int]]:
    """Systematically absent hkl with |h|, |k|, |l| ≤ ``index_max`` (standard setting)."""
    r = np.arange(-index_max, index_max + 1)
    hkl = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    return frozenset(map(tuple, hkl[_absent_mask(_check_group(space_group), hkl)].tolist()))


@lru_cache(maxsize=1)
def global_ambiguity_classes() -> tuple[tuple[int, ...], ...]:
    """Partition of 1..230 by (Laue matrix set, absent set): groups alike at every orientation.

    Each class is a sorted tuple; classes are sorted by their first member.
    """
    classes: dict = {}
    for number in range(1, 231):
        key = (_laue_matrices(number).tobytes(), absent_reflections(number))
        classes.setdefault(key, []).append(number)
    return tuple(sorted(tuple(members) for members in classes.values()))


def global_class_of(space_group: int) -> tuple[int, ...]:
    """The global ambiguity class (sorted group numbers) that contains ``space_group``."""
    number = _check_group(space_group)
    return next(members for members in global_ambiguity_classes() if number in members)


def n_global_classes() -> int:
    """Number of global ambiguity classes among the 230 space groups."""
    return len(global_ambiguity_classes())


# ---------------------------------------------------------------- Cartesian symmetry
def cartesian_laue_operations(space_group: int, direct_matrix_A: np.ndarray) -> np.ndarray:
    """(n,3,3) Cartesian Laue operations M = Aᵀ W A⁻ᵀ; raises if the metric does not fit the group."""
    a = np.asarray(direct_matrix_A, dtype=float)
    ops = np.einsum("ji,njk,kl->nil", a, _laue_matrices(_check_group(space_group)), np.linalg.inv(a).T)
    if not np.allclose(np.einsum("nji,njk->nik", ops, ops), np.eye(3), atol=1e-6):
        raise StructureError(f"space group {space_group} does not fit the given lattice metric; "
                             "give a cell of its crystal system")
    return ops


# ---------------------------------------------------------------- 2D integer lattices
def _ext_gcd(a: int, b: int) -> tuple[int, int, int]:
    """(g, s, t) with s·a + t·b = g = gcd(a, b) ≥ 0."""
    s0, s1, t0, t1 = 1, 0, 0, 1
    while b:
        q, a, b = a // b, b, a % b
        s0, s1, t0, t1 = s1, s0 - q * s1, t1, t0 - q * t1
    return (a, s0, t0) if a >= 0 else (-a, -s0, -t0)


def _zone_basis(uvw: tuple[int, int, int]) -> np.ndarray:
    """(2,3) int basis of the hkl lattice with hkl·uvw = 0 (unimodular column reduction)."""
    x, unimod = list(uvw), np.eye(3, dtype=np.int64)
    for i, j in ((0, 1), (1, 2)):
        g, s, t = _ext_gcd(x[i], x[j])
        if g == 0:
            continue
        col_i, col_j = unimod[:, i].copy(), unimod[:, j].copy()
        unimod[:, i] = (x[j] // g) * col_i - (x[i] // g) * col_j
        unimod[:, j] = s * col_i + t * col_j
        x[i], x[j] = 0, g
    return unimod[:, :2].T


def _hermite_basis(points: np.ndarray) -> np.ndarray:
    """(2,2) int basis [[g, x], [0, d]] of the lattice generated by integer 2-vectors (n,2)."""
    g = x = d = 0
    for p, q in points.tolist():
        g_new, s, t = _ext_gcd(g, p)
        if g_new:
            d = gcd(d, abs((p // g_new) * x - (g // g_new) * q))
            g, x = g_new, s * x + t * q
        else:
            d = gcd(d, abs(q))
        x = x % d if d else x
    if g == 0 or d == 0:
        raise StructureError("the present ZOLZ reflections do not span a 2D lattice")
    return np.array([[g, x], [0, d]], dtype=np.int64)


def _gauss_reduce(basis: np.ndarray, metric: np.ndarray) -> np.ndarray:
    """Lagrange–Gauss reduced (2,3) int hkl basis, |a| ≤ |b|, |a·b| ≤ |a|²/2 in ``metric``."""
    a, b = basis[0].copy(), basis[1].copy()
    norm = lambda v: float(v @ metric @ v)  # noqa: E731
    while True:
        if norm(a) > norm(b):
            a, b = b, a
        mu = int(round(float(a @ metric @ b) / norm(a)))
        if mu == 0:
            return np.array([a, b])
        b = b - mu * a


def _equivalent_bases(gram: np.ndarray) -> list[np.ndarray]:
    """All unimodular T (rows = new vectors in old coords) giving a reduced basis again."""
    small = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1) if i or j])
    lengths = np.einsum("ni,ij,nj->n", small, gram, small)
    first = small[np.isclose(lengths, gram[0, 0], rtol=1e-6)]
    second = small[np.isclose(lengths, gram[1, 1], rtol=1e-6)]
    return [np.array([s, t]) for s in first for t in second if abs(s[0] * t[1] - s[1] * t[0]) == 1]


# ---------------------------------------------------------------- level 2: one ZOLZ pattern
def _primitive_uvw(uvw) -> tuple[int, int, int]:
    u, v, w = (int(x) for x in np.asarray(uvw).reshape(3))
    g = gcd(gcd(abs(u), abs(v)), abs(w))
    if g == 0:
        raise StructureError("zone axis [uvw] must not be [0 0 0]; give a nonzero direction")
    return u // g, v // g, w // g


def _present_lattice(space_group: int, metric: np.ndarray, uvw: tuple) -> np.ndarray:
    """Reduced (2,3) int hkl basis of the lattice generated by the present ZOLZ reflections."""
    zone = _gauss_reduce(_zone_basis(uvw), metric)
    r = np.arange(-_WINDOW, _WINDOW + 1)
    ij = np.stack(np.meshgrid(r, r, indexing="ij"), -1).reshape(-1, 2)
    present = ij[~_absent_mask(space_group, ij @ zone)]
    return _gauss_reduce(_hermite_basis(present) @ zone, metric)


def _missing_points(space_group: int, basis: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """(n,2) reduced-basis coordinates of absent lattice points within radius _DISC·λ2."""
    radius2 = _DISC**2 * gram[1, 1]
    ri = int(np.ceil(np.sqrt(2 * radius2 / gram[0, 0])))
    rj = int(np.ceil(np.sqrt(2.0) * _DISC))  # reduced basis: |ia+jb|² ≥ (i²|a|² + j²|b|²)/2
    ij = np.stack(np.meshgrid(np.arange(-ri, ri + 1), np.arange(-rj, rj + 1), indexing="ij"), -1).reshape(-1, 2)
    ij = ij[np.einsum("ni,ij,nj->n", ij, gram, ij) <= radius2 * (1 + 1e-9)]
    return ij[_absent_mask(space_group, ij @ basis)]


def _plane_operations(space_group: int, a: np.ndarray, uvw: tuple, basis: np.ndarray) -> np.ndarray:
    """(n,2,2) int: Laue ops fixing the beam up to sign, acting on reduced-basis row coords."""
    ops = cartesian_laue_operations(space_group, a)
    beam = np.asarray(uvw, dtype=float) @ a
    beam /= np.linalg.norm(beam)
    keep = ops[np.isclose(np.abs(ops @ beam @ beam), 1.0, atol=1e-6)]  # M n = ±n
    g = basis @ np.linalg.inv(a).T  # (2,3) Cartesian reciprocal vectors
    restricted = np.einsum("ik,nlk,jl->nij", g, keep, np.linalg.pinv(g).T)  # x' = x · (G Mᵀ G⁺)
    return np.unique(np.round(restricted).astype(np.int64).reshape(-1, 4), axis=0).reshape(-1, 2, 2)


def _canonical(missing: np.ndarray, ops: np.ndarray, gram: np.ndarray) -> tuple:
    """Lexicographically smallest (missing points, ops) over all equivalent reduced bases."""
    keys = []
    for t in _equivalent_bases(gram):
        t_inv = np.round(np.linalg.inv(t)).astype(np.int64)
        pts = sorted(map(tuple, (missing @ t_inv).tolist()))
        mats = sorted(map(tuple, np.einsum("ij,njk,kl->nil", t, ops, t_inv).reshape(-1, 4).tolist()))
        keys.append((tuple(pts), tuple(mats)))
    return min(keys)


def zone_descriptor(space_group: int, direct_matrix_A, uvw) -> tuple:
    """Similarity-invariant description of the kinematic ZOLZ pattern of a group at [uvw].

    In: group number, (3,3) direct matrix (rows a, b, c in Å), zone axis [uvw] (any nonzero
    integers). Out: hashable ``(ratio, |cos γ|, missing, ops)``: reduced-cell length ratio
    λ2/λ1 and |cos| of its angle (4 decimals); the absent points of that lattice within a disc of
    radius 8·λ2 in reduced-basis coordinates; the pattern's 2D point group as integer matrices
    in the same basis (canonicalised together over all equivalent reduced bases). Invariant under
    scale, rotation and mirror image (a pattern seen from the opposite beam side is mirrored,
    and kinematic ZOLZ patterns are centrosymmetric), so [uvw] and [-u-v-w] give the same value.
    """
    a = np.ascontiguousarray(direct_matrix_A, dtype=float)
    return _descriptor_cached(_check_group(space_group), a.tobytes(), _primitive_uvw(uvw))


@lru_cache(maxsize=4096)
def _descriptor_cached(space_group: int, a_bytes: bytes, uvw: tuple) -> tuple:
    a = np.frombuffer(a_bytes).reshape(3, 3)
    metric = np.linalg.inv(a).T @ np.linalg.inv(a)  # reciprocal metric: |g|² = hkl G hklᵀ
    basis = _present_lattice(space_group, metric, uvw)
    gram = basis @ metric @ basis.T
    ratio = round(float(np.sqrt(gram[1, 1] / gram[0, 0])), 4)
    cos = round(abs(float(gram[0, 1] / np.sqrt(gram[0, 0] * gram[1, 1]))), 4) + 0.0
    missing = _missing_points(space_group, basis, gram)
    ops = _plane_operations(space_group, a, uvw, basis)
    return (ratio, cos) + _canonical(missing, ops, gram)


def zone_ambiguity(space_group: int, uvw, direct_matrix_A, candidates, zone_axes) -> tuple[int, ...]:
    """Candidates whose ZOLZ pattern at some axis of ``zone_axes`` equals that of ``space_group`` at [uvw].

    All groups are evaluated on the same metric ``direct_matrix_A``. ``space_group`` itself is
    always returned when it is a candidate (it makes this pattern at [uvw]).
    """
    target = zone_descriptor(space_group, direct_matrix_A, uvw)
    alike = {
        int(c) for c in candidates
        if int(c) == space_group or any(zone_descriptor(c, direct_matrix_A, z) == target for z in zone_axes)
    }
    return tuple(sorted(alike))


def appearance_classes(candidates, zone_axes, direct_matrix_A) -> dict[tuple[int, tuple[int, int, int]], int]:
    """Class id of every (group, zone axis) pair; equal ZOLZ descriptors share an id.

    Ids are 0, 1, ... in order of first appearance over the pairs sorted by (group, axis).
    """
    pairs = sorted((int(c), tuple(int(i) for i in z)) for c in candidates for z in zone_axes)
    ids: dict[tuple, int] = {}
    out = {}
    for pair in pairs:
        out[pair] = ids.setdefault(zone_descriptor(pair[0], direct_matrix_A, pair[1]), len(ids))
    return out
