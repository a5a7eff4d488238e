"""The built-in materials library: every entry expands to the structure it declares.

The library is built once per module (expansion + spglib take a few seconds for all entries).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from diffractnet.errors import StructureError
from diffractnet.structures.library import (
    crystal_from_entry,
    get_material,
    library_entries,
    material_names,
)
from diffractnet.structures.symmetry import CRYSTAL_SYSTEMS, crystal_system

SEED_MATERIALS = (
    "Al", "Ni", "Cu", "Fe", "W", "Ta", "Si", "Ge", "TaC", "NbC", "TiC", "NiAl", "FeAl", "Ni3Al",
    "FeNi3", "Mo3Si", "Cr3Si", "Al4Ni3", "LiNiO2", "CaTiO3", "NaCl", "Mg",
)
# Space groups the library must cover densely: P4_132, Pm-3m, Fm-3m, Fd-3m, Im-3m.
DENSE_GROUPS = (213, 221, 225, 227, 229)
# Atoms in the conventional cell, counted by hand (formula units x Z).
HAND_COUNTED_ATOMS = {
    "Si": 8, "NaCl": 8, "Al2O3": 30, "LiNiO2": 12, "beta-Mn": 20, "CaTiO3": 20,
    "Mg": 2, "W": 2, "Ni3Al": 4, "MgAl2O4": 56, "Ni2Mo3N": 24, "Mg2SiO4": 28, "Al4Ni3": 112,
}
# Free lattice parameters per crystal system (what a library entry must give, and only that).
FREE_LATTICE_PARAMETERS = {
    "cubic": {"a"}, "tetragonal": {"a", "c"}, "hexagonal": {"a", "c"}, "trigonal": {"a", "c"},
    "orthorhombic": {"a", "b", "c"}, "monoclinic": {"a", "b", "c", "beta"},
    "triclinic": {"a", "b", "c", "alpha", "beta", "gamma"},
}
MIN_DISTANCE_A = 0.7


@pytest.fixture(scope="module")
def library():
    """name → (entry, Crystal, pymatgen Structure, spglib space-group number)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    built = {}
    for entry in library_entries():
        crystal = get_material(entry["name"])
        structure = crystal.to_pymatgen()
        number = SpacegroupAnalyzer(structure, symprec=1e-3).get_space_group_number()
        built[entry["name"]] = (entry, crystal, structure, number)
    return built


def _ordered(crystal) -> bool:
    return all(site.occupancy == 1.0 for site in crystal.sites)


# ---------------------------------------------------------------- coverage of the library
def test_library_size_and_unique_names():
    names = material_names()
    assert len(names) >= 60
    duplicates = [n for n, k in Counter(n.lower() for n in names).items() if k > 1]
    assert not duplicates, f"duplicate material names: {duplicates}"


def test_all_crystal_systems_present():
    systems = Counter(crystal_system(int(e["space_group"])) for e in library_entries())
    assert set(systems) == set(CRYSTAL_SYSTEMS), f"missing: {set(CRYSTAL_SYSTEMS) - set(systems)}"
    for system in CRYSTAL_SYSTEMS:
        assert systems[system] >= 2, f"only {systems[system]} {system} material(s)"


@pytest.mark.parametrize("number", DENSE_GROUPS)
def test_at_least_eight_materials_per_dense_group(number):
    names = [e["name"] for e in library_entries() if int(e["space_group"]) == number]
    assert len(names) >= 8, f"space group {number}: only {names}"


def test_seed_materials_present():
    names = set(material_names())
    missing = [n for n in SEED_MATERIALS if n not in names]
    assert not missing, f"missing seed materials: {missing}"


def test_seed_materials_space_groups():
    expected = {"LiNiO2": 166, "CaTiO3": 62, "Mo3Si": 223, "Cr3Si": 223, "Al4Ni3": 230, "Mg": 194,
                "NaCl": 225, "Si": 227, "Fe": 229, "NiAl": 221}
    groups = {e["name"]: int(e["space_group"]) for e in library_entries()}
    assert {n: groups[n] for n in expected} == expected


def test_get_material_is_case_insensitive_and_rejects_unknown():
    assert get_material("nacl").name == "NaCl"
    with pytest.raises(StructureError):
        get_material("no-such-material")


# ---------------------------------------------------------------- the format of every entry
def test_entries_give_only_the_free_lattice_parameters_and_a_source():
    for entry in library_entries():
        system = crystal_system(int(entry["space_group"]))
        assert set(entry["lattice"]) == FREE_LATTICE_PARAMETERS[system], entry["name"]
        assert str(entry.get("source", "")).strip(), f"{entry['name']} has no source"
        assert str(entry.get("formula", "")).strip(), f"{entry['name']} has no formula"


def test_xyz_given_exactly_where_the_wyckoff_position_is_free():
    from pyxtal.symmetry import Group

    groups: dict[int, Group] = {}
    for entry in library_entries():
        number = int(entry["space_group"])
        group = groups.setdefault(number, Group(number))
        for site in entry["sites"]:
            dof = group.get_wyckoff_position(site["wyckoff"]).get_dof()
            assert ("xyz" in site) == (dof > 0), f"{entry['name']} {site['element']} {site['wyckoff']}"


# ---------------------------------------------------------------- every expanded structure
def test_detected_space_group_equals_declared(library):
    wrong = {name: (entry["space_group"], number)
             for name, (entry, _, _, number) in library.items() if number != int(entry["space_group"])}
    assert not wrong, f"declared vs spglib space group: {wrong}"


def test_crystal_records_declared_space_group(library):
    for name, (entry, crystal, _, _) in library.items():
        assert crystal.space_group_number == int(entry["space_group"]), name


def test_no_atoms_closer_than_minimum_distance(library):
    close = {}
    for name, (_, crystal, structure, _) in library.items():
        if not _ordered(crystal):
            continue
        centres, _, _, distances = structure.get_neighbor_list(MIN_DISTANCE_A)
        if len(centres):
            close[name] = float(np.min(distances))
    assert not close, f"atoms closer than {MIN_DISTANCE_A} Å: {close}"


def test_cell_content_matches_formula(library):
    from pymatgen.core import Composition

    for name, (entry, crystal, _, _) in library.items():
        counts: dict[str, float] = {}
        for site in crystal.sites:
            counts[site.element] = counts.get(site.element, 0.0) + site.occupancy
        cell = Composition(counts)
        formula = Composition(entry["formula"])
        assert cell.fractional_composition.almost_equals(formula.fractional_composition, rtol=1e-4, atol=1e-5), \
            f"{name}: cell {cell} does not match formula {formula}"
        if _ordered(crystal):
            z = cell.num_atoms / formula.num_atoms
            assert abs(z - round(z)) < 1e-6 and round(z) >= 1, f"{name}: {z} formula units per cell"


@pytest.mark.parametrize("name, n_atoms", sorted(HAND_COUNTED_ATOMS.items()))
def test_hand_counted_atoms(library, name, n_atoms):
    _, crystal, structure, _ = library[name]
    assert len(crystal.sites) == n_atoms
    assert len(structure) == n_atoms


def test_fractional_coordinates_in_unit_cell(library):
    for name, (_, crystal, _, _) in library.items():
        frac = crystal.frac_coords
        assert np.all(frac >= 0.0) and np.all(frac < 1.0), name


# ---------------------------------------------------------------- error paths of crystal_from_entry
def _entry(**changes) -> dict:
    entry = {"name": "test", "space_group": 227, "lattice": {"a": 5.43},
             "sites": [{"element": "Si", "wyckoff": "8a"}]}
    entry.update(changes)
    return entry


def test_valid_test_entry_builds():
    crystal = crystal_from_entry(_entry())
    assert len(crystal.sites) == 8 and crystal.space_group_number == 227


def test_unknown_element_raises():
    with pytest.raises(StructureError, match="Xx"):
        crystal_from_entry(_entry(sites=[{"element": "Xx", "wyckoff": "8a"}]))


@pytest.mark.parametrize("number, wyckoff", [(227, "8z"), (225, "4q"), (229, "2z")])
def test_wyckoff_letter_missing_from_group_raises(number, wyckoff):
    with pytest.raises(StructureError, match="Wyckoff"):
        crystal_from_entry(_entry(space_group=number, sites=[{"element": "Si", "wyckoff": wyckoff}]))


@pytest.mark.parametrize("wyckoff, xyz", [("32e", [0.1, 0.2, 0.3]), ("8a", [0.1, 0.2, 0.3])])
def test_xyz_off_the_wyckoff_orbit_raises(wyckoff, xyz):
    with pytest.raises(StructureError, match="not on Wyckoff position"):
        crystal_from_entry(_entry(sites=[{"element": "O", "wyckoff": wyckoff, "xyz": xyz}]))


def test_free_wyckoff_position_without_xyz_raises():
    with pytest.raises(StructureError, match="free parameters"):
        crystal_from_entry(_entry(sites=[{"element": "O", "wyckoff": "32e"}]))


@pytest.mark.parametrize("number, lattice, missing", [
    (136, {"a": 4.59}, "c"),
    (62, {"a": 5.4, "b": 7.6}, "c"),
    (14, {"a": 5.1, "b": 5.2, "c": 5.3}, "beta"),
    (2, {"a": 5.1, "b": 5.2, "c": 5.3, "alpha": 90, "beta": 95}, "gamma"),
])
def test_missing_lattice_parameter_raises(number, lattice, missing):
    with pytest.raises(StructureError, match=missing):
        crystal_from_entry(_entry(space_group=number, lattice=lattice, sites=[{"element": "Si", "wyckoff": "2a"}]
                                  if number != 2 else [{"element": "Si", "wyckoff": "1a"}]))


def test_entry_without_sites_raises():
    entry = _entry()
    del entry["sites"]
    with pytest.raises(StructureError):
        crystal_from_entry(entry)
