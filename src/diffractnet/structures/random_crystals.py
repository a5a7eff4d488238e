"""Random symmetric crystals of any of the 230 space groups, through pyxtal, reproducible from a seed."""

from __future__ import annotations

import numpy as np

from diffractnet.errors import StructureError
from diffractnet.structures.crystal import Crystal
from diffractnet.structures.symmetry import space_group_symbol

RANDOM_SOURCE = "pyxtal random"  # how a random crystal's ``source`` begins

# Elements common in inorganic crystals, drawn from when the caller gives none.
DEFAULT_ELEMENTS = ("Li", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Ti",
                    "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "Sr", "Y", "Zr", "Nb", "Mo",
                    "Ag", "Sn", "Ba", "La", "Ta", "W", "Pt", "Au", "Pb")


def random_crystal(space_group: int, seed: int, elements: list[str] | None = None, max_species: int = 3,
                   max_atoms: int = 96, attempts: int = 60) -> Crystal:
    """A random crystal of ``space_group`` (1..230) whose atoms sit on that group's Wyckoff positions.

    The species (1..``max_species`` of ``elements``) and their counts (Wyckoff multiplicities, at
    most ``max_atoms`` in the conventional cell) are drawn from ``seed``; the same seed gives the
    same crystal. Raises ``StructureError`` if pyxtal finds no valid structure in ``attempts`` tries.
    """
    from pyxtal import pyxtal
    from pyxtal.symmetry import Group

    if not 1 <= int(space_group) <= 230:
        raise StructureError(f"space group must be in 1..230, got {space_group}")
    rng = np.random.default_rng(seed)
    pool = list(elements or DEFAULT_ELEMENTS)
    group = Group(int(space_group))
    multiplicities = sorted({wp.multiplicity for wp in group.Wyckoff_positions if wp.multiplicity <= max_atoms})
    if not multiplicities:
        raise StructureError(f"space group {space_group} has no Wyckoff position with <= {max_atoms} atoms")
    for attempt in range(attempts):
        # two or more species on several orbits rarely add symmetry by accident (one does, often)
        n_species = int(rng.integers(min(2, max_species, len(pool)), min(max_species, len(pool)) + 1))
        species = [str(x) for x in rng.choice(pool, size=n_species, replace=False)]
        counts = [int(rng.choice(multiplicities)) for _ in species]
        if sum(counts) > max_atoms:
            continue
        xtal = pyxtal()
        try:
            xtal.from_random(3, int(space_group), species, counts, random_state=int(rng.integers(2**31)))
        except Exception:  # pyxtal raises when the composition does not fit the Wyckoff positions
            continue
        if not xtal.valid:
            continue
        name = f"random-sg{space_group}-{seed}"
        crystal = Crystal.from_pymatgen(xtal.to_pymatgen(), name=name, source=f"{RANDOM_SOURCE} (seed {seed})")
        if crystal.space_group_number != int(space_group):
            continue  # spglib found a higher symmetry by accident; draw again
        return crystal
    raise StructureError(f"pyxtal found no random crystal of space group {space_group} "
                         f"({space_group_symbol(int(space_group))}) in {attempts} attempts with seed {seed}")
