"""The ``Crystal`` type: lattice, sites, space group and provenance, with conversions.

Cartesian convention (used everywhere in diffractnet, and by orix/diffsims): the direct
lattice vector **a** lies along x, **b** in the xy-plane, so **c*** is along z. Lengths are in
Å, angles in degrees, Debye–Waller factors B in Å² (amplitude factor exp(-B g²/4), g = 1/d).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from diffractnet.errors import StructureError
from diffractnet.structures.elements import atomic_number

DEFAULT_B_ISO_A2 = 0.5


@dataclass(frozen=True)
class Site:
    """One atom position of the full cell.

    ``frac`` is the fractional position (x, y, z) in [0, 1); ``occupancy`` in (0, 1];
    ``b_iso_a2`` the isotropic Debye–Waller factor B [Å²].
    """

    element: str
    frac: tuple[float, float, float]
    occupancy: float = 1.0
    b_iso_a2: float = DEFAULT_B_ISO_A2


def lattice_matrix(a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> np.ndarray:
    """Direct lattice vectors as rows of a (3, 3) array [Å], a ∥ x and b in the xy-plane."""
    al, be, ga = np.deg2rad([alpha, beta, gamma])
    cx = c * np.cos(be)
    cy = c * (np.cos(al) - np.cos(be) * np.cos(ga)) / np.sin(ga)
    cz2 = c * c - cx * cx - cy * cy
    if cz2 <= 0:
        raise StructureError(
            f"lattice angles alpha={alpha}, beta={beta}, gamma={gamma} deg do not form a cell; "
            "check the lattice parameters"
        )
    return np.array([[a, 0.0, 0.0], [b * np.cos(ga), b * np.sin(ga), 0.0], [cx, cy, np.sqrt(cz2)]])


@dataclass(frozen=True)
class Crystal:
    """A crystal: lattice parameters, the full cell's sites, its space group and where it came from.

    ``lattice_abc_A`` = (a, b, c) [Å]; ``lattice_angles_deg`` = (α, β, γ) [deg];
    ``sites`` every atom of the conventional cell (not only the asymmetric unit).
    """

    name: str
    lattice_abc_A: tuple[float, float, float]
    lattice_angles_deg: tuple[float, float, float]
    sites: tuple[Site, ...]
    space_group_number: int
    space_group_symbol: str
    source: str = "user"
    formula: str = field(default="")

    def __post_init__(self) -> None:
        if not self.sites:
            raise StructureError(f"crystal '{self.name}' has no atoms; give at least one site")
        if min(self.lattice_abc_A) <= 0:
            raise StructureError(f"crystal '{self.name}': lattice lengths must be positive, got {self.lattice_abc_A} Å")
        if not 1 <= self.space_group_number <= 230:
            raise StructureError(f"crystal '{self.name}': space group {self.space_group_number} is not in 1..230")
        for site in self.sites:
            atomic_number(site.element, where=f"crystal '{self.name}'")
            if not 0 < site.occupancy <= 1:
                raise StructureError(f"crystal '{self.name}': occupancy {site.occupancy} of {site.element} not in (0, 1]")
            if site.b_iso_a2 < 0:
                raise StructureError(f"crystal '{self.name}': Debye-Waller B of {site.element} is negative")
        if not self.formula:
            object.__setattr__(self, "formula", _reduced_formula(self.sites))
        lattice_matrix(*self.lattice_abc_A, *self.lattice_angles_deg)  # validates the angles

    # ---- geometry -------------------------------------------------------------------------
    @cached_property
    def direct_matrix_A(self) -> np.ndarray:
        """(3, 3) rows = direct lattice vectors a, b, c in Cartesian Å."""
        return lattice_matrix(*self.lattice_abc_A, *self.lattice_angles_deg)

    @cached_property
    def reciprocal_matrix_invA(self) -> np.ndarray:
        """(3, 3) rows = reciprocal vectors a*, b*, c* [Å⁻¹], no 2π: g = h a* + k b* + l c*."""
        return np.linalg.inv(self.direct_matrix_A).T

    @property
    def volume_A3(self) -> float:
        """Cell volume [Å³]."""
        return float(abs(np.linalg.det(self.direct_matrix_A)))

    @property
    def frac_coords(self) -> np.ndarray:
        """(n_sites, 3) fractional positions."""
        return np.array([s.frac for s in self.sites], dtype=float)

    @property
    def elements(self) -> list[str]:
        """Element symbol of every site."""
        return [s.element for s in self.sites]

    def with_name(self, name: str) -> "Crystal":
        """A copy under another name."""
        return replace(self, name=name)

    # ---- conversions --------------------------------------------------------------------------
    def to_pymatgen(self):
        """A pymatgen ``Structure`` (partial occupancies kept; B factors as site property ``b_iso``)."""
        from diffractnet.structures.convert import crystal_to_pymatgen

        return crystal_to_pymatgen(self)

    def to_orix_phase(self):
        """An orix ``Phase`` built the way that keeps fractional coordinates (see PEERS.md)."""
        from diffractnet.structures.convert import crystal_to_orix_phase

        return crystal_to_orix_phase(self)

    @classmethod
    def from_pymatgen(cls, structure, name: str | None = None, source: str = "pymatgen",
                      symprec: float = 1e-3) -> "Crystal":
        """Build from a pymatgen ``Structure``; the space group is detected with spglib."""
        from diffractnet.structures.convert import crystal_from_pymatgen

        return crystal_from_pymatgen(structure, name=name, source=source, symprec=symprec)

    def summary(self) -> dict:
        """A JSON-friendly description (name, formula, space group, lattice, number of sites)."""
        return {
            "name": self.name,
            "formula": self.formula,
            "space_group": self.space_group_number,
            "space_group_symbol": self.space_group_symbol,
            "lattice_abc_A": [round(x, 5) for x in self.lattice_abc_A],
            "lattice_angles_deg": [round(x, 4) for x in self.lattice_angles_deg],
            "n_sites": len(self.sites),
            "source": self.source,
        }


def _reduced_formula(sites: tuple[Site, ...]) -> str:
    """Reduced formula from site occupancies, e.g. 'Al2O3' (pymatgen's ordering)."""
    from pymatgen.core import Composition

    counts: dict[str, float] = {}
    for s in sites:
        counts[s.element] = counts.get(s.element, 0.0) + s.occupancy
    return Composition(counts).reduced_formula
