"""Conversions between ``Crystal`` and pymatgen ``Structure`` / orix ``Phase``."""

from __future__ import annotations

import numpy as np

from diffractnet.errors import StructureError
from diffractnet.structures.crystal import DEFAULT_B_ISO_A2, Crystal, Site
from diffractnet.structures.elements import element_symbol


def crystal_to_pymatgen(crystal: Crystal):
    """pymatgen ``Structure`` of the full cell; sites sharing a position become one disordered site."""
    from pymatgen.core import Lattice, Structure

    grouped: dict[tuple, dict] = {}
    first: dict[tuple, Site] = {}
    for site in crystal.sites:
        key = tuple(np.round(np.mod(site.frac, 1.0), 6))
        first.setdefault(key, site)
        grouped.setdefault(key, {})
        grouped[key][site.element] = grouped[key].get(site.element, 0.0) + site.occupancy
    keys = list(grouped)
    return Structure(
        Lattice(crystal.direct_matrix_A),
        [grouped[k] for k in keys],
        [list(first[k].frac) for k in keys],
        site_properties={"b_iso": [first[k].b_iso_a2 for k in keys]},
    )


def crystal_from_pymatgen(structure, name: str | None = None, source: str = "pymatgen",
                          symprec: float = 1e-3) -> Crystal:
    """``Crystal`` from a pymatgen ``Structure`` (space group found by spglib at ``symprec`` [Å])."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if len(structure) == 0:
        raise StructureError(f"structure '{name or source}' has no atoms")
    label = name or structure.composition.reduced_formula
    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        number, symbol = sga.get_space_group_number(), sga.get_space_group_symbol()
    except Exception as exc:  # spglib fails on overlapping atoms and degenerate cells
        raise StructureError(f"space group of '{label}' could not be found ({exc}); check the atom positions") from exc
    b_values = structure.site_properties.get("b_iso", [None] * len(structure))
    sites = []
    for site, b_iso in zip(structure, b_values):
        for species, occupancy in site.species.items():
            symbol_clean = element_symbol(str(getattr(species, "symbol", species)), where=f"structure '{label}'")
            sites.append(Site(symbol_clean, tuple(float(x) for x in np.mod(site.frac_coords, 1.0)),
                              float(occupancy), float(b_iso if b_iso is not None else DEFAULT_B_ISO_A2)))
    lat = structure.lattice
    return Crystal(
        name=label,
        lattice_abc_A=tuple(float(x) for x in lat.abc),
        lattice_angles_deg=tuple(float(x) for x in lat.angles),
        sites=tuple(sites),
        space_group_number=int(number),
        space_group_symbol=str(symbol),
        source=source,
    )


def crystal_to_orix_phase(crystal: Crystal):
    """orix ``Phase`` of the full cell, in the form diffsims and pyxem compute correctly with.

    The lattice comes from its six parameters and the atoms go through orix's ``Phase.structure``
    setter, which re-bases the lattice (a ∥ x, c* ∥ z, our own frame) keeping Cartesian positions:
    for non-orthogonal cells the stored fractional coordinates then differ from ours (Mg (1/3, 2/3, 1/4)
    → (0.577, 0.577, 1/4)) and diffsims undoes that with the lattice's base rotation. Giving the lattice
    as a base matrix, or re-adding atoms afterwards, breaks |F|² in diffsims (PEERS.md). Checked here:
    the base equals ours and the coordinates diffsims derives equal ours.
    """
    from diffpy.structure import Atom, Lattice, Structure
    from orix.crystal_map import Phase

    lattice = Lattice(*crystal.lattice_abc_A, *crystal.lattice_angles_deg)
    atoms = [Atom(s.element, xyz=list(s.frac), occupancy=s.occupancy, Uisoequiv=s.b_iso_a2 / (8 * np.pi**2))
             for s in crystal.sites]
    phase = Phase(name=crystal.name, space_group=crystal.space_group_number,
                  structure=Structure(atoms=atoms, lattice=lattice))
    lat = phase.structure.lattice
    as_diffsims_reads_them = np.asarray(phase.structure.xyz) @ np.linalg.inv(lat.stdbase @ lat.recbase)
    moved = np.abs(np.mod(as_diffsims_reads_them - crystal.frac_coords + 0.5, 1.0) - 0.5).max()
    turned = np.abs(lat.base - crystal.direct_matrix_A).max()
    if moved > 1e-6 or turned > 1e-6:
        raise StructureError(f"orix moved the cell of '{crystal.name}' (fractional shift {moved:.3g}, base by "
                             f"{turned:.3g} Å); report this with the crystal")
    return phase
