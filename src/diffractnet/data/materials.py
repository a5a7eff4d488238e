"""Resolve a ``MaterialsSpec`` into a named, de-duplicated list of crystals."""

from __future__ import annotations

from diffractnet.data.config import MaterialsSpec
from diffractnet.errors import ConfigError
from diffractnet.structures.crystal import Crystal


def resolve_materials(spec: MaterialsSpec, seed: int) -> list[Crystal]:
    """Every crystal the spec asks for, in a stable order, with unique names.

    Built-in names and space-group filters come first, then CIF files, AFLOW prototypes drawn by the
    square-root law, then pyxtal random crystals (seeded from ``seed``).
    """
    from diffractnet.structures.library import get_material, library_entries, load_library

    crystals: list[Crystal] = []
    if spec.library == "all":
        crystals += load_library()
    elif spec.library:
        crystals += [get_material(name) for name in spec.library]
    if spec.space_groups:
        known = {c.name for c in crystals}
        groups = set(spec.space_groups)
        crystals += [get_material(e["name"]) for e in library_entries()
                     if int(e["space_group"]) in groups and e["name"] not in known]
    if spec.cif_files:
        from diffractnet.structures.cif import load_cif

        crystals += [load_cif(path) for path in spec.cif_files]
    if spec.aflow_prototypes:
        crystals += _aflow(spec.aflow_prototypes, seed)
    if spec.random:
        from diffractnet.errors import StructureError
        from diffractnet.structures.random_crystals import random_crystal

        r = spec.random
        for sg in r.space_groups:
            for k in range(r.per_group):
                try:
                    crystals.append(random_crystal(sg, seed=seed * 1_000_003 + sg * 1_000 + k, elements=r.elements,
                                                   max_species=r.max_species, max_atoms=r.max_atoms))
                except StructureError as exc:  # pyxtal keeps landing on a supergroup for a few F groups
                    print(f"warning: skipped a random crystal: {exc}")
    if not crystals:
        raise ConfigError("materials: the config selects no crystal; give library, space_groups, cif_files, "
                          "aflow_prototypes or random")
    return _unique_names(crystals)


def _aflow(n: int, seed: int) -> list[Crystal]:
    from diffractnet.structures.prototypes import aflow_prototype_pool, square_root_sample

    pool = aflow_prototype_pool()
    groups: dict[str, list[Crystal]] = {}
    for crystal in pool:  # the pool holds one structure per prototype: group by Pearson symbol
        pearson = crystal.name.split("_")[1] if "_" in crystal.name else crystal.name
        groups.setdefault(pearson, []).append(crystal)
    if n > len(pool):
        raise ConfigError(f"materials.aflow_prototypes: asked for {n}, the pool holds {len(pool)}")
    return square_root_sample(groups, n, seed)


def _unique_names(crystals: list[Crystal]) -> list[Crystal]:
    seen: dict[str, int] = {}
    out = []
    for crystal in crystals:
        count = seen.get(crystal.name, 0)
        seen[crystal.name] = count + 1
        out.append(crystal if count == 0 else crystal.with_name(f"{crystal.name}#{count + 1}"))
    return out
