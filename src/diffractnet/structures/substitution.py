"""Element-substituted variants of real structures: the same sites, other elements, a rescaled cell.

A structure type (rock salt, B2, L1₂, fluorite, spinel, …) fixes a space group; which elements sit on
its sites fixes how strong each family of reflections is (a B2 superlattice spot goes as
(f_A − f_B)², a fundamental one as (f_A + f_B)²). A classifier trained on a handful of materials per
group learns those few materials' intensities. Variants that keep the sites and swap the elements widen
that, without the unphysical site geometry of a random crystal. The substitution is one-to-one (each
element of the parent becomes a different new element), so the variant keeps every symmetry operation
of its parent and nothing more: its space group is the parent's. Two new elements may still scatter
alike (Fe and Ni), which makes a kinematic mimic, as FeNi₃ is in nature: its label stays its group.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from diffractnet.errors import StructureError
from diffractnet.structures.crystal import Crystal
from diffractnet.structures.random_crystals import DEFAULT_ELEMENTS

SUBSTITUTION_SOURCE = "element substitution"  # how a variant's ``source`` begins


def substituted_variant(parent: Crystal, seed: int, elements: list[str] | None = None,
                        lattice_scale: tuple[float, float] = (0.9, 1.1)) -> Crystal:
    """A copy of ``parent`` with each of its elements replaced one-to-one by a different element drawn from
    ``elements`` (default ``random_crystals.DEFAULT_ELEMENTS``) and its cell lengths multiplied by one
    factor drawn uniformly from ``lattice_scale``; reproducible from ``seed``. Site positions,
    occupancies and Debye–Waller factors are the parent's; so is the space group. Named
    ``'<parent>~<new formula>'``. Raises ``StructureError`` when the pool has fewer elements than the
    parent has species, or the scale range is not positive."""
    low, high = lattice_scale
    if not 0 < low <= high:
        raise StructureError(f"lattice_scale {list(lattice_scale)} must be [low, high] with 0 < low <= high")
    species = sorted({s.element for s in parent.sites})
    pool = sorted(set(elements or DEFAULT_ELEMENTS))
    if len(pool) < len(species):
        raise StructureError(f"substituting '{parent.name}' needs {len(species)} distinct elements, the pool has {len(pool)}")
    rng = np.random.default_rng(seed)
    new = [str(x) for x in rng.choice(pool, size=len(species), replace=False)]
    mapping = dict(zip(species, new))
    factor = float(rng.uniform(low, high))
    sites = tuple(replace(s, element=mapping[s.element]) for s in parent.sites)
    abc = tuple(float(x) * factor for x in parent.lattice_abc_A)
    variant = Crystal(name=parent.name, lattice_abc_A=abc, lattice_angles_deg=parent.lattice_angles_deg, sites=sites,
                      space_group_number=parent.space_group_number, space_group_symbol=parent.space_group_symbol,
                      source=f"{SUBSTITUTION_SOURCE} of {parent.name} (seed {seed}, cell x{factor:.3f})")
    return variant.with_name(f"{parent.name}~{variant.formula}")


def training_variants(parents: list[Crystal], per_material: int, seed: int, elements: list[str] | None = None,
                      lattice_scale: tuple[float, float] = (0.9, 1.1),
                      avoid: list[Crystal] = ()) -> list[Crystal]:
    """``per_material`` substituted variants of each parent (seeded from ``seed`` and the parent's place),
    leaving out any variant with the formula and space group of a crystal in ``avoid`` (the validation
    and test materials: a variant must not rebuild one of them) or of an earlier variant."""
    taken = {(c.formula, c.space_group_number) for c in avoid}
    out = []
    for i, parent in enumerate(parents):
        for k in range(per_material):
            variant = substituted_variant(parent, seed * 1_000_003 + i * 1_009 + k, elements, lattice_scale)
            key = (variant.formula, variant.space_group_number)
            if key in taken:
                continue
            taken.add(key)
            out.append(variant)
    return out
