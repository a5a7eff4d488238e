"""The built-in materials library: data (space group + lattice + Wyckoff sites) expanded by pyxtal.

``materials.yaml`` beside this file lists each material as::

    - name: Si
      space_group: 227
      lattice: {a: 5.431}                 # the free parameters of its crystal system
      sites:
        - {element: Si, wyckoff: 8a}      # xyz only where the Wyckoff position has free parameters
      source: literature reference

Each site is expanded over its Wyckoff orbit with pyxtal's tables (standard ITA setting:
origin choice 2, hexagonal axes for R groups); coordinates are never typed by hand.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
import yaml

from diffractnet.errors import StructureError
from diffractnet.structures.crystal import DEFAULT_B_ISO_A2, Crystal, Site
from diffractnet.structures.elements import element_symbol
from diffractnet.structures.symmetry import crystal_system, space_group_symbol

_LATTICE_RULES = {
    "cubic": lambda p: (p["a"], p["a"], p["a"], 90, 90, 90),
    "tetragonal": lambda p: (p["a"], p["a"], p["c"], 90, 90, 90),
    "hexagonal": lambda p: (p["a"], p["a"], p["c"], 90, 90, 120),
    "trigonal": lambda p: (p["a"], p["a"], p["c"], 90, 90, 120),
    "orthorhombic": lambda p: (p["a"], p["b"], p["c"], 90, 90, 90),
    "monoclinic": lambda p: (p["a"], p["b"], p["c"], 90, p["beta"], 90),
    "triclinic": lambda p: (p["a"], p["b"], p["c"], p["alpha"], p["beta"], p["gamma"]),
}


def lattice_parameters(space_group: int, params: dict, where: str) -> tuple[float, ...]:
    """(a, b, c, α, β, γ) [Å, deg] from the free parameters of the group's crystal system."""
    system = crystal_system(space_group)
    try:
        return tuple(float(x) for x in _LATTICE_RULES[system](params))
    except KeyError as missing:
        raise StructureError(f"{where}: a {system} lattice needs parameter {missing}; got {sorted(params)}") from None


def expand_wyckoff_site(space_group: int, wyckoff: str, xyz, where: str) -> np.ndarray:
    """All fractional positions (n, 3) of one Wyckoff orbit, e.g. (227, '8a') → 8 positions.

    ``xyz`` is any point of the orbit (needed only when the position has free parameters).
    """
    from pyxtal.symmetry import Group

    group = Group(space_group)
    try:
        wp = group.get_wyckoff_position(str(wyckoff))
    except Exception:
        wp = None
    digits = "".join(ch for ch in str(wyckoff) if ch.isdigit())
    if wp is None or (digits and int(digits) != wp.multiplicity):
        raise StructureError(f"{where}: space group {space_group} has no Wyckoff position '{wyckoff}'")
    if xyz is None:
        if wp.get_dof() > 0:
            raise StructureError(f"{where}: Wyckoff position {wyckoff} has free parameters; give 'xyz'")
        xyz = wp.ops[0].operate(np.zeros(3))
    positions = wp.get_all_positions(np.asarray(xyz, dtype=float))
    if positions is None:
        raise StructureError(f"{where}: xyz {list(xyz)} is not on Wyckoff position {wyckoff} of space group {space_group}")
    return np.mod(np.round(positions, 12), 1.0)


def crystal_from_entry(entry: dict) -> Crystal:
    """One library entry (a dict as in ``materials.yaml``) → ``Crystal`` with the full cell."""
    name = entry.get("name", "<unnamed>")
    where = f"material '{name}'"
    try:
        sg = int(entry["space_group"])
        params, raw_sites = dict(entry["lattice"]), list(entry["sites"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StructureError(f"{where}: entry needs space_group, lattice and sites ({exc})") from None
    lattice = lattice_parameters(sg, params, where)
    sites: list[Site] = []
    for raw in raw_sites:
        element = element_symbol(raw["element"], where)
        for frac in expand_wyckoff_site(sg, raw["wyckoff"], raw.get("xyz"), where):
            sites.append(Site(element, tuple(float(x) for x in frac), float(raw.get("occupancy", 1.0)),
                              float(raw.get("b_iso", DEFAULT_B_ISO_A2))))
    return Crystal(name=name, lattice_abc_A=lattice[:3], lattice_angles_deg=lattice[3:], sites=tuple(sites),
                   space_group_number=sg, space_group_symbol=space_group_symbol(sg),
                   source=str(entry.get("source", "diffractnet built-in library")),
                   formula=str(entry.get("formula", "")))


@lru_cache(maxsize=1)
def _entries() -> tuple[dict, ...]:
    text = resources.files("diffractnet.structures").joinpath("materials.yaml").read_text()
    return tuple(yaml.safe_load(text))


def material_names() -> list[str]:
    """Names of all built-in materials, in library order."""
    return [e["name"] for e in _entries()]


def library_entries() -> list[dict]:
    """Raw entries (name, formula, space group...) without expanding any structure."""
    return [dict(e) for e in _entries()]


@lru_cache(maxsize=None)
def get_material(name: str) -> Crystal:
    """The built-in material ``name`` (case-insensitive) as a ``Crystal``."""
    for entry in _entries():
        if entry["name"].lower() == str(name).lower():
            return crystal_from_entry(entry)
    raise StructureError(f"no built-in material named '{name}'; see `diffractnet structures list`")


def load_library(space_groups: list[int] | None = None) -> list[Crystal]:
    """All built-in materials (optionally only those of the given space groups)."""
    wanted = None if space_groups is None else {int(n) for n in space_groups}
    return [get_material(e["name"]) for e in _entries() if wanted is None or int(e["space_group"]) in wanted]
