"""Reciprocal lattice up to g_max and kinematic structure factors.

F(g) = Σ_j occ_j f_e,j(|g|) exp(-B_j |g|²/4) exp(2πi g·r_j), g = h a* + k b* + l c* [Å⁻¹, no 2π].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from diffractnet.errors import PhysicsError
from diffractnet.physics.scattering import electron_scattering_factor
from diffractnet.structures.crystal import Crystal

# Reflections with |F|² below this fraction of the strongest are systematic absences (numerically ~1e-30).
ABSENCE_RELATIVE_INTENSITY = 1e-8


def check_g_max(g_max_invA: float) -> float:
    """``g_max_invA`` as float, or ``PhysicsError`` if it is not a positive finite number [Å⁻¹]."""
    try:
        value = float(g_max_invA)
    except (TypeError, ValueError):
        raise PhysicsError(f"g_max must be a number in 1/Å, got {g_max_invA!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise PhysicsError(f"g_max must be positive, got {g_max_invA} 1/Å")
    return value


def reciprocal_lattice(crystal: Crystal, g_max_invA: float) -> tuple[np.ndarray, np.ndarray]:
    """All hkl ≠ 000 with |g| ≤ g_max: (hkl int (G, 3), g Cartesian in the crystal frame (G, 3) [Å⁻¹]).

    The index bound |h| ≤ g_max·|a| is exact for any cell (h = g·a).
    """
    g_max = check_g_max(g_max_invA)
    bounds = [int(math.floor(g_max * length + 1e-9)) for length in crystal.lattice_abc_A]
    axes = [np.arange(-n, n + 1) for n in bounds]
    hkl = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    g = hkl @ crystal.reciprocal_matrix_invA
    keep = np.linalg.norm(g, axis=1) <= g_max + 1e-12
    hkl, g = hkl[keep], g[keep]
    if len(hkl) == 0:
        smallest = 1.0 / max(crystal.lattice_abc_A)
        raise PhysicsError(f"g_max = {g_max} 1/Å is too small for any reflection of '{crystal.name}'; "
                           f"its shortest g is about {smallest:.3f} 1/Å or more")
    return hkl.astype(np.int32), g


def structure_factors(crystal: Crystal, hkl: np.ndarray) -> np.ndarray:
    """Complex kinematic structure factors F(hkl) [Å] (G,), with occupancy and Debye–Waller."""
    hkl = np.asarray(hkl, dtype=np.float64).reshape(-1, 3)
    g_len = np.linalg.norm(hkl @ crystal.reciprocal_matrix_invA, axis=1)
    species = sorted(set(crystal.elements))
    f_by_species = electron_scattering_factor(species, g_len)  # (n_species, G)
    index = np.array([species.index(el) for el in crystal.elements])
    occ = np.array([s.occupancy for s in crystal.sites])
    b_iso = np.array([s.b_iso_a2 for s in crystal.sites])
    amplitude = occ[:, None] * f_by_species[index] * np.exp(-b_iso[:, None] * g_len[None, :] ** 2 / 4)
    phase = np.exp(2j * np.pi * (crystal.frac_coords @ hkl.T))  # (n_sites, G)
    return (amplitude * phase).sum(axis=0)


@dataclass(frozen=True)
class ReflectionSet:
    """The allowed reflections of one crystal up to ``g_max_invA``.

    ``hkl`` (G, 3) int32; ``g_crystal_invA`` (G, 3) Cartesian g in the crystal frame;
    ``structure_factor`` (G,) complex [Å]; ``intensity`` (G,) = |F|² [Å²].
    Systematic absences (|F|² < 1e-8 of the strongest) are removed.
    """

    crystal_name: str
    g_max_invA: float
    hkl: np.ndarray
    g_crystal_invA: np.ndarray
    structure_factor: np.ndarray

    @property
    def intensity(self) -> np.ndarray:
        return np.abs(self.structure_factor) ** 2

    def __len__(self) -> int:
        return len(self.hkl)


def reflection_set(crystal: Crystal, g_max_invA: float) -> ReflectionSet:
    """Reflections of ``crystal`` up to ``g_max_invA`` [Å⁻¹] with absences removed (cached)."""
    return _reflection_set_cached(crystal, check_g_max(g_max_invA))


@lru_cache(maxsize=256)
def _reflection_set_cached(crystal: Crystal, g_max_invA: float) -> ReflectionSet:
    hkl, g = reciprocal_lattice(crystal, g_max_invA)
    f = structure_factors(crystal, hkl)
    intensity = np.abs(f) ** 2
    keep = intensity >= ABSENCE_RELATIVE_INTENSITY * intensity.max()
    return ReflectionSet(crystal.name, g_max_invA, hkl[keep], g[keep], f[keep])
