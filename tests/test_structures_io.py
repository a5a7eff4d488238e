"""Structure input/output: CIF reading, pymatgen/orix conversions, AFLOW prototype pools with
square-root sampling, random crystals, and the ``diffractnet structures`` command line.

All data is generated in the tests (CIFs are written to ``tmp_path``). The AFLOW pool (~5 s) and the
prototype matching (~3 s) are built once per module.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np
import pytest
from conftest import PEER_ENTRIES, make_crystal

from diffractnet.cli import main
from diffractnet.errors import StructureError
from diffractnet.structures.cif import load_cif
from diffractnet.structures.crystal import DEFAULT_B_ISO_A2, Crystal, Site
from diffractnet.structures.library import get_material, material_names
from diffractnet.structures.prototypes import (
    aflow_prototype_pool,
    group_by_prototype,
    square_root_allocation,
    square_root_sample,
)
from diffractnet.structures.random_crystals import DEFAULT_ELEMENTS, random_crystal
from diffractnet.structures.symmetry import CRYSTAL_SYSTEMS, crystal_system

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ================================================================ helpers
def _spglib_number(crystal: Crystal, symprec: float = 1e-3) -> int:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    return SpacegroupAnalyzer(crystal.to_pymatgen(), symprec=symprec).get_space_group_number()


def _site_key(site: Site) -> tuple:
    """Order-free, rounding-tolerant identity of one site."""
    frac = tuple(round(float(x) % 1.0, 5) % 1.0 for x in site.frac)
    return site.element, frac, round(site.occupancy, 6), round(site.b_iso_a2, 6)


def _sites_multiset(crystal: Crystal) -> Counter:
    return Counter(_site_key(s) for s in crystal.sites)


def _lattice(crystal: Crystal) -> np.ndarray:
    return np.array(crystal.lattice_abc_A + crystal.lattice_angles_deg)


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def _cif(name: str, hm: str, number: int, cell: tuple, ops: list[str], atom_loop: str,
         op_key: str = "_symmetry_equiv_pos_as_xyz") -> str:
    """A CIF with an explicit list of symmetry operations and an asymmetric unit."""
    a, b, c, alpha, beta, gamma = cell
    op_lines = "\n".join(f" '{op}'" for op in ops)
    return (f"data_{name}\n"
            f"_symmetry_space_group_name_H-M   '{hm}'\n"
            f"_symmetry_Int_Tables_number   {number}\n"
            f"_cell_length_a   {a}\n_cell_length_b   {b}\n_cell_length_c   {c}\n"
            f"_cell_angle_alpha   {alpha}\n_cell_angle_beta   {beta}\n_cell_angle_gamma   {gamma}\n"
            f"loop_\n{op_key}\n{op_lines}\n"
            f"{atom_loop}")


# Rutile, P4_2/mnm (136): the 16 operations as Materials Project writes them.
RUTILE_OPS = ["x, y, z", "-x, -y, z", "-y+1/2, x+1/2, z+1/2", "y+1/2, -x+1/2, z+1/2",
              "-x+1/2, y+1/2, -z+1/2", "x+1/2, -y+1/2, -z+1/2", "y, x, -z", "-y, -x, -z",
              "-x, -y, -z", "x, y, -z", "y+1/2, -x+1/2, -z+1/2", "-y+1/2, x+1/2, -z+1/2",
              "x+1/2, -y+1/2, z+1/2", "-x+1/2, y+1/2, z+1/2", "-y, -x, z", "y, x, z"]
RUTILE_CELL = (4.5937, 4.5937, 2.9587, 90, 90, 90)
RUTILE_ATOMS_B = """loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
_atom_site_B_iso_or_equiv
Ti1 Ti 0.00000 0.00000 0.00000 1.0 0.42(2)
O1 O 0.30480(3) 0.30480(3) 0.00000 1.0 0.61(3)
"""
RUTILE_ATOMS_U = """loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
_atom_site_U_iso_or_equiv
Ti1 Ti 0 0 0 1 0.0050(2)
O1 O 0.3048(3) 0.3048(3) 0 1 0.0070(4)
"""


def _fm3m_ops() -> list[str]:
    """The 192 operations of Fm-3m (from pymatgen's tables) as CIF xyz strings."""
    from pymatgen.symmetry.groups import SpaceGroup

    return [op.as_xyz_str() for op in SpaceGroup("Fm-3m").symmetry_ops]


# ICSD style: oxidation states in the type symbols, Wyckoff columns, space_group_symop loop.
ROCKSALT_ICSD_ATOMS = """loop_
_atom_type_symbol
_atom_type_oxidation_number
Na1+ 1
Cl1- -1
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_symmetry_multiplicity
_atom_site_Wyckoff_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_B_iso_or_equiv
_atom_site_occupancy
Na1 Na1+ 4 a 0 0 0 1.61(4) 1
Cl1 Cl1- 4 b 0.5 0.5 0.5 1.19(3) 1
"""

# Disordered fcc CuAu given in P1: each position shared 0.5 / 0.5, with different B per species.
CUAU_P1_ATOMS = """loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
_atom_site_B_iso_or_equiv
Cu1 Cu 0 0 0 0.5 0.7
Au1 Au 0 0 0 0.5 0.6
Cu2 Cu 0.5 0.5 0 0.5 0.7
Au2 Au 0.5 0.5 0 0.5 0.6
Cu3 Cu 0.5 0 0.5 0.5 0.7
Au3 Au 0.5 0 0.5 0.5 0.6
Cu4 Cu 0 0.5 0.5 0.5 0.7
Au4 Au 0 0.5 0.5 0.5 0.6
"""


@pytest.fixture(scope="module")
def rutile_text() -> str:
    return _cif("TiO2", "P 42/m n m", 136, RUTILE_CELL, RUTILE_OPS, RUTILE_ATOMS_B)


@pytest.fixture(scope="module")
def rocksalt_text() -> str:
    return _cif("NaCl", "F m -3 m", 225, (5.6402, 5.6402, 5.6402, 90, 90, 90), _fm3m_ops(),
                ROCKSALT_ICSD_ATOMS, op_key="_space_group_symop_operation_xyz")


# ================================================================ CIF: good files
@pytest.mark.parametrize("name", sorted(PEER_ENTRIES))
@pytest.mark.parametrize("symprec", [None, 0.01], ids=["P1-cell", "symmetrized"])
def test_cifwriter_round_trip(tmp_path, name, symprec):
    """pymatgen's CifWriter output (full cell or asymmetric unit) loads back to the same crystal."""
    from pymatgen.io.cif import CifWriter

    crystal = make_crystal(name)
    path = tmp_path / f"{name}.cif"
    CifWriter(crystal.to_pymatgen(), symprec=symprec).write_file(str(path))
    loaded = load_cif(path)
    assert loaded.space_group_number == crystal.space_group_number
    np.testing.assert_allclose(_lattice(loaded), _lattice(crystal), atol=1e-4)
    assert len(loaded.sites) == len(crystal.sites)
    assert Counter(loaded.elements) == Counter(crystal.elements)
    assert loaded.formula == crystal.formula
    assert loaded.name == name and loaded.source == f"CIF {name}.cif"
    assert loaded.volume_A3 == pytest.approx(crystal.volume_A3, rel=1e-6)


def test_cif_name_argument(tmp_path, rutile_text):
    path = _write(tmp_path, "rutile_mp.cif", rutile_text)
    assert load_cif(path).name == "rutile_mp"
    assert load_cif(str(path), name="rutile").name == "rutile"


def test_mp_style_asymmetric_unit_expands_and_keeps_b(tmp_path, rutile_text):
    """Rutile given as 2 atoms + 16 operations → the full 6-atom cell, B per element kept."""
    crystal = load_cif(_write(tmp_path, "TiO2.cif", rutile_text))
    assert crystal.space_group_number == 136
    assert crystal.formula == "TiO2"
    assert Counter(crystal.elements) == {"Ti": 2, "O": 4}
    np.testing.assert_allclose(_lattice(crystal), RUTILE_CELL, atol=1e-6)
    b_by_element = {el: {s.b_iso_a2 for s in crystal.sites if s.element == el} for el in ("Ti", "O")}
    assert b_by_element == {"Ti": {0.42}, "O": {0.61}}  # '(2)' uncertainties stripped
    assert all(s.occupancy == 1.0 for s in crystal.sites)
    ti = sorted(tuple(np.round(s.frac, 6)) for s in crystal.sites if s.element == "Ti")
    assert ti == [(0.0, 0.0, 0.0), (0.5, 0.5, 0.5)]
    o = {tuple(np.round(s.frac, 4)) for s in crystal.sites if s.element == "O"}
    assert o == {(0.3048, 0.3048, 0.0), (0.6952, 0.6952, 0.0), (0.1952, 0.8048, 0.5), (0.8048, 0.1952, 0.5)}
    assert _spglib_number(crystal) == 136


def test_icsd_style_rock_salt_full_cell(tmp_path, rocksalt_text):
    """Rock salt from Na, Cl + 192 Fm-3m operations, oxidation-state type symbols → 8 atoms, B kept."""
    crystal = load_cif(_write(tmp_path, "NaCl_icsd.cif", rocksalt_text))
    assert crystal.space_group_number == 225
    assert Counter(crystal.elements) == {"Na": 4, "Cl": 4}  # 'Na1+' / 'Cl1-' cleaned to elements
    assert crystal.formula == "NaCl"
    assert {s.b_iso_a2 for s in crystal.sites if s.element == "Na"} == {1.61}
    assert {s.b_iso_a2 for s in crystal.sites if s.element == "Cl"} == {1.19}
    na = {tuple(np.round(s.frac, 6)) for s in crystal.sites if s.element == "Na"}
    assert na == {(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)}
    cl = {tuple(np.round(s.frac, 6)) for s in crystal.sites if s.element == "Cl"}
    assert cl == {(0.5, 0.5, 0.5), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5)}


def test_u_iso_converted_to_b(tmp_path):
    crystal = load_cif(_write(tmp_path, "TiO2_U.cif",
                              _cif("TiO2", "P 42/m n m", 136, RUTILE_CELL, RUTILE_OPS, RUTILE_ATOMS_U)))
    assert len(crystal.sites) == 6
    for site in crystal.sites:
        u = 0.0050 if site.element == "Ti" else 0.0070
        assert site.b_iso_a2 == pytest.approx(8 * math.pi**2 * u, rel=1e-12)


def test_missing_b_gives_default(tmp_path):
    atoms = "\n".join(line for line in RUTILE_ATOMS_B.splitlines() if "B_iso" not in line)
    atoms = atoms.replace(" 0.42(2)", "").replace(" 0.61(3)", "") + "\n"
    crystal = load_cif(_write(tmp_path, "noB.cif", _cif("TiO2", "P 42/m n m", 136, RUTILE_CELL, RUTILE_OPS, atoms)))
    assert len(crystal.sites) == 6
    assert {s.b_iso_a2 for s in crystal.sites} == {DEFAULT_B_ISO_A2}


def test_partial_occupancy_kept_with_per_species_b(tmp_path):
    """Each fcc position shared Cu 0.5 / Au 0.5; each species keeps its own B."""
    crystal = load_cif(_write(tmp_path, "CuAu.cif",
                              _cif("CuAu", "P 1", 1, (3.8, 3.8, 3.8, 90, 90, 90), ["x, y, z"], CUAU_P1_ATOMS)))
    assert crystal.formula == "CuAu"
    assert len(crystal.sites) == 8
    assert Counter(crystal.elements) == {"Cu": 4, "Au": 4}
    assert all(s.occupancy == pytest.approx(0.5) for s in crystal.sites)
    occupancy_at = Counter()
    for s in crystal.sites:
        occupancy_at[tuple(np.round(s.frac, 6))] += s.occupancy
    assert len(occupancy_at) == 4 and all(v == pytest.approx(1.0) for v in occupancy_at.values())
    assert {s.b_iso_a2 for s in crystal.sites if s.element == "Cu"} == {0.7}
    assert {s.b_iso_a2 for s in crystal.sites if s.element == "Au"} == {0.6}
    assert crystal.space_group_number == 225  # the disordered cell is fcc


def test_partial_occupancy_vacancy(tmp_path):
    """A site 0.5 occupied by one element (vacancies) keeps its occupancy through load and spglib."""
    atoms = RUTILE_ATOMS_B.replace("Ti1 Ti 0.00000 0.00000 0.00000 1.0", "Ti1 Ti 0.00000 0.00000 0.00000 0.5")
    crystal = load_cif(_write(tmp_path, "TiO4.cif", _cif("TiO2", "P 42/m n m", 136, RUTILE_CELL, RUTILE_OPS, atoms)))
    assert sorted(s.occupancy for s in crystal.sites if s.element == "Ti") == [0.5, 0.5]
    assert crystal.formula == "TiO4"
    assert crystal.space_group_number == 136


def test_leading_global_block_does_not_lose_b(tmp_path, rutile_text):
    """IUCr/COD journal CIFs often start with a data_global block holding only publication data."""
    text = "data_global\n_journal_name_full 'Acta Cryst. B'\n_publ_section_title\n;\nRutile\n;\n\n" + rutile_text
    crystal = load_cif(_write(tmp_path, "journal.cif", text))
    assert len(crystal.sites) == 6
    assert {s.b_iso_a2 for s in crystal.sites if s.element == "Ti"} == {0.42}
    assert {s.b_iso_a2 for s in crystal.sites if s.element == "O"} == {0.61}


def test_first_of_several_structures_is_loaded(tmp_path, rutile_text, rocksalt_text):
    crystal = load_cif(_write(tmp_path, "two.cif", rutile_text + "\n" + rocksalt_text))
    assert crystal.formula == "TiO2" and len(crystal.sites) == 6


# ================================================================ CIF: broken files
def _broken_inputs(rutile: str) -> dict[str, str | bytes]:
    cut_row = rutile.index("O1 O") + len("O1 O 0.30")  # mid-row in the atom loop
    return {
        "empty": "",
        "whitespace": "\n\n   \n",
        "garbage": "this is not a crystallographic information file {{{ ]]]\n1 2 3\n",
        "binary": bytes(range(256)) * 8,
        "no_atom_sites": rutile[: rutile.index("loop_\n_atom_site_label")],
        "unknown_element": rutile.replace("Ti1 Ti ", "Xx1 Xx "),
        "truncated_mid_row": rutile[:cut_row],
        "truncated_mid_header": rutile[: rutile.index("_atom_site_fract_y")],
        "no_cell": "\n".join(line for line in rutile.splitlines() if not line.startswith("_cell_length")) + "\n",
    }


@pytest.mark.parametrize("case", ["empty", "whitespace", "garbage", "binary", "no_atom_sites", "unknown_element",
                                  "truncated_mid_row", "truncated_mid_header", "no_cell"])
def test_broken_cif_raises_structure_error_naming_file(tmp_path, rutile_text, case):
    content = _broken_inputs(rutile_text)[case]
    path = tmp_path / f"broken_{case}.cif"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(StructureError) as info:
        load_cif(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    if case == "unknown_element":
        assert "Xx" in message


def test_missing_cif_file(tmp_path):
    path = tmp_path / "nowhere" / "missing.cif"
    with pytest.raises(StructureError, match="does not exist") as info:
        load_cif(path)
    assert str(path) in str(info.value)


def test_directory_is_not_a_cif(tmp_path):
    with pytest.raises(StructureError) as info:
        load_cif(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_oversized_cif_rejected(tmp_path, monkeypatch, rutile_text):
    import diffractnet.structures.cif as cif_module

    path = _write(tmp_path, "big.cif", rutile_text)
    monkeypatch.setattr(cif_module, "MAX_CIF_BYTES", 100)
    with pytest.raises(StructureError, match="larger than") as info:
        load_cif(path)
    assert str(path) in str(info.value)


# ================================================================ conversions
@pytest.mark.parametrize("name", sorted(PEER_ENTRIES))
def test_pymatgen_round_trip(name):
    crystal = make_crystal(name)
    structure = crystal.to_pymatgen()
    assert len(structure) == len(crystal.sites)  # ordered crystals: one pymatgen site per Site
    assert structure.site_properties["b_iso"] == [s.b_iso_a2 for s in crystal.sites]
    np.testing.assert_allclose(structure.lattice.matrix, crystal.direct_matrix_A, atol=1e-12)
    back = Crystal.from_pymatgen(structure, name=name)
    assert back.space_group_number == crystal.space_group_number
    assert back.space_group_symbol == crystal.space_group_symbol
    np.testing.assert_allclose(_lattice(back), _lattice(crystal), atol=1e-8)
    assert _sites_multiset(back) == _sites_multiset(crystal)
    np.testing.assert_allclose(back.frac_coords, crystal.frac_coords, atol=1e-9)  # same order, same values
    assert back.formula == crystal.formula


def _disordered_crystal() -> Crystal:
    """fcc with every position shared Cu/Au 0.5/0.5, plus a half-empty O site with its own B."""
    sites = []
    for frac in [(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]:
        sites += [Site("Cu", frac, 0.5, 0.9), Site("Au", frac, 0.5, 0.9)]
    sites.append(Site("O", (0.5, 0.5, 0.5), 0.25, 1.7))
    return Crystal("CuAuO", (3.9, 3.9, 3.9), (90.0, 90.0, 90.0), tuple(sites), 221, "Pm-3m")


def test_pymatgen_round_trip_partial_occupancy_and_b():
    crystal = _disordered_crystal()
    structure = crystal.to_pymatgen()
    assert len(structure) == 5  # shared positions become disordered sites
    assert not structure.is_ordered
    shared = structure[0].species.as_dict()
    assert shared == pytest.approx({"Cu": 0.5, "Au": 0.5})
    back = Crystal.from_pymatgen(structure)
    assert _sites_multiset(back) == _sites_multiset(crystal)
    assert {s.b_iso_a2 for s in back.sites if s.element == "O"} == {1.7}
    assert back.space_group_number == 221


def test_from_pymatgen_reads_b_iso_or_defaults():
    from pymatgen.core import Lattice, Structure

    structure = Structure(Lattice.cubic(2.8665), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    plain = Crystal.from_pymatgen(structure, name="Fe")
    assert plain.space_group_number == 229 and plain.name == "Fe" and plain.source == "pymatgen"
    assert [s.b_iso_a2 for s in plain.sites] == [DEFAULT_B_ISO_A2] * 2
    structure.add_site_property("b_iso", [0.35, 0.35])
    assert [s.b_iso_a2 for s in Crystal.from_pymatgen(structure).sites] == [0.35, 0.35]
    # coordinates outside [0, 1) are wrapped
    shifted = Structure(Lattice.cubic(2.8665), ["Fe", "Fe"], [[1.0, -1.0, 0], [1.5, 0.5, -0.5]])
    assert {tuple(np.round(s.frac, 9)) for s in Crystal.from_pymatgen(shifted).sites} == {(0, 0, 0), (0.5, 0.5, 0.5)}


def test_from_pymatgen_empty_structure_raises():
    from pymatgen.core import Lattice, Structure

    with pytest.raises(StructureError, match="no atoms"):
        Crystal.from_pymatgen(Structure(Lattice.cubic(3.0), [], []), name="empty")


def _fractional_as_diffsims_reads(phase) -> np.ndarray:
    """The fractional coordinates diffsims uses for |F|² (diffsims.utils.sim_utils: xyz·(stdbase·recbase)⁻¹)."""
    lattice = phase.structure.lattice
    return np.asarray(phase.structure.xyz) @ np.linalg.inv(lattice.stdbase @ lattice.recbase)


def _periodic_close(a, b, atol=1e-9) -> bool:
    return bool(np.abs(np.mod(np.asarray(a) - np.asarray(b) + 0.5, 1.0) - 0.5).max() < atol)


@pytest.mark.parametrize("name, system, n_atoms", [("Mg", "hexagonal", 2), ("ZrO2", "monoclinic", 12)])
def test_to_orix_phase_keeps_fractional_coordinates(name, system, n_atoms):
    """Same atoms, same order, and the fractional coordinates diffsims derives from the phase are ours.

    (orix re-bases non-orthogonal cells, so ``phase.structure.xyz`` itself differs from ours for
    Mg and ZrO2; diffsims undoes that with the lattice's base rotation.)
    """
    crystal = make_crystal(name)
    assert crystal_system(crystal.space_group_number) == system
    phase = crystal.to_orix_phase()
    assert phase.name == name
    assert phase.space_group.number == crystal.space_group_number
    assert len(phase.structure) == len(crystal.sites) == n_atoms
    assert _periodic_close(_fractional_as_diffsims_reads(phase), crystal.frac_coords)
    assert [atom.element for atom in phase.structure] == crystal.elements
    np.testing.assert_allclose(phase.structure.occupancy, [s.occupancy for s in crystal.sites])
    np.testing.assert_allclose(phase.structure.Uisoequiv * 8 * np.pi**2, [s.b_iso_a2 for s in crystal.sites])
    np.testing.assert_allclose(phase.structure.lattice.abcABG(), _lattice(crystal), atol=1e-9)
    # orix's base is ours: a ∥ x, c* ∥ z
    np.testing.assert_allclose(phase.structure.lattice.base, crystal.direct_matrix_A, atol=1e-9)


@pytest.mark.parametrize("name", ["CaTiO3", "TiO2", "Si"])
def test_to_orix_phase_orthogonal_cells_unchanged(name):
    """For orthogonal cells nothing is re-based: the stored coordinates are ours as they are."""
    crystal = make_crystal(name)
    phase = crystal.to_orix_phase()
    assert len(phase.structure) == len(crystal.sites)
    assert _periodic_close(phase.structure.xyz, crystal.frac_coords)
    assert _periodic_close(_fractional_as_diffsims_reads(phase), crystal.frac_coords)


# ================================================================ prototypes
@pytest.fixture(scope="module")
def pool():
    return aflow_prototype_pool()


def _label_space_group(label: str) -> int:
    return int(re.fullmatch(r"[A-Za-z0-9]+_[a-zA-Z]+\d+_(\d+)_.*", label).group(1))


def test_aflow_pool_size_and_crystal_systems(pool):
    assert len(pool) == 288
    assert all(isinstance(c, Crystal) for c in pool)
    systems = Counter(crystal_system(c.space_group_number) for c in pool)
    assert set(systems) == set(CRYSTAL_SYSTEMS) and len(systems) == 7
    assert all(c.source.startswith(f"AFLOW prototype {c.name}") for c in pool)
    assert aflow_prototype_pool() is pool  # cached


def test_aflow_pool_space_groups_match_labels(pool):
    """spglib (symprec 1e-3) finds the group written in the AFLOW label for (almost) every entry."""
    mismatched = [(c.name, c.space_group_number) for c in pool if _label_space_group(c.name) != c.space_group_number]
    assert len(mismatched) <= 3, mismatched


SIZES = {"big": 100, "medium": 25, "small": 4, "single": 1}


def _water_filling_quota(sizes: dict[str, int], n: int) -> dict[str, float]:
    """Exact continuous square-root quota: min(size, t·sqrt(size)) summing to n."""
    keys = list(sizes)
    s = np.array([sizes[k] for k in keys], float)
    w = np.sqrt(s)
    lo, hi = 0.0, float(max(s.max(), 1.0)) * 2
    for _ in range(200):
        t = (lo + hi) / 2
        lo, hi = (t, hi) if np.minimum(s, t * w).sum() < n else (lo, t)
    return dict(zip(keys, np.minimum(s, hi * w)))


def test_square_root_allocation_ratio():
    assert square_root_allocation(SIZES, 18) == {"big": 10, "medium": 5, "small": 2, "single": 1}
    alloc = square_root_allocation(SIZES, 36)
    assert sum(alloc.values()) == 36
    for key, share in {"big": 10, "medium": 5, "small": 2, "single": 1}.items():
        assert abs(alloc[key] - 2 * share) <= 1 or alloc[key] == SIZES[key]


@pytest.mark.parametrize("n", [0, 1, 5, 18, 60, 100, 129, 130])
def test_square_root_allocation_invariants(n):
    alloc = square_root_allocation(SIZES, n)
    assert set(alloc) == set(SIZES)
    assert sum(alloc.values()) == n
    assert all(0 <= alloc[k] <= SIZES[k] for k in SIZES)
    quota = _water_filling_quota(SIZES, n)
    assert all(abs(alloc[k] - quota[k]) < 1 for k in SIZES), (alloc, quota)
    # more from bigger groups, never the other way round
    order = sorted(SIZES, key=SIZES.get)
    assert all(alloc[a] <= alloc[b] for a, b in zip(order, order[1:]))


def test_square_root_allocation_edges():
    assert square_root_allocation(SIZES, 0) == {k: 0 for k in SIZES}
    assert square_root_allocation(SIZES, sum(SIZES.values())) == SIZES
    assert square_root_allocation({}, 0) == {}
    assert square_root_allocation({"empty": 0, "a": 3}, 2) == {"empty": 0, "a": 2}
    with pytest.raises(StructureError, match="131"):
        square_root_allocation(SIZES, 131)
    with pytest.raises(StructureError, match=">= 0"):
        square_root_allocation(SIZES, -1)
    with pytest.raises(StructureError):
        square_root_allocation({}, 1)


def test_square_root_allocation_within_one_of_quota_randomised():
    """Sum, caps and |allocation − square-root quota| < 1 on many random pools (caps binding or not)."""
    rng = np.random.default_rng(2024)
    for _ in range(400):
        k = int(rng.integers(1, 10))
        sizes = {f"g{i}": int(s) for i, s in enumerate(rng.integers(1, int(rng.choice([3, 30, 300])), size=k))}
        n = int(rng.integers(0, sum(sizes.values()) + 1))
        alloc = square_root_allocation(sizes, n)
        assert sum(alloc.values()) == n
        assert all(0 <= alloc[g] <= sizes[g] for g in sizes)
        quota = _water_filling_quota(sizes, n)
        assert max(abs(alloc[g] - quota[g]) for g in sizes) < 1, (sizes, n, alloc)


def test_square_root_allocation_few_draws_not_all_from_biggest():
    """4 draws from groups of 76, 249, 74, 51: quotas ≈ 0.9, 1.6, 0.9, 0.7 → at most 2 from the biggest."""
    alloc = square_root_allocation({"a": 76, "b": 249, "c": 74, "d": 51}, 4)
    assert sum(alloc.values()) == 4 and alloc["b"] <= 2


@pytest.fixture(scope="module")
def pool_by_system(pool):
    groups: dict[str, list[Crystal]] = {}
    for crystal in pool:
        groups.setdefault(crystal_system(crystal.space_group_number), []).append(crystal)
    return groups


def test_square_root_sample_reproducible(pool_by_system):
    first = square_root_sample(pool_by_system, 40, seed=11)
    again = square_root_sample(pool_by_system, 40, seed=11)
    other = square_root_sample(pool_by_system, 40, seed=12)
    assert len(first) == len(other) == 40
    assert [id(c) for c in first] == [id(c) for c in again]
    assert [id(c) for c in first] != [id(c) for c in other]
    assert len({id(c) for c in first}) == 40  # no repeats


def test_square_root_sample_follows_allocation(pool_by_system):
    n = 40
    sample = square_root_sample(pool_by_system, n, seed=3)
    alloc = square_root_allocation({k: len(v) for k, v in pool_by_system.items()}, n)
    drawn = Counter(crystal_system(c.space_group_number) for c in sample)
    assert {k: drawn.get(k, 0) for k in alloc} == alloc
    for crystal in sample:
        assert any(crystal is member for member in pool_by_system[crystal_system(crystal.space_group_number)])


def test_square_root_sample_edges(pool_by_system, pool):
    assert square_root_sample(pool_by_system, 0, seed=0) == []
    everything = square_root_sample(pool_by_system, len(pool), seed=0)
    assert sorted(id(c) for c in everything) == sorted(id(c) for c in pool)
    with pytest.raises(StructureError):
        square_root_sample(pool_by_system, len(pool) + 1, seed=0)


@pytest.fixture(scope="module")
def prototype_groups():
    crystals = [get_material("Cu"), get_material("NaCl"), get_material("Al"), get_material("Mg"),
                random_crystal(1, seed=0)]
    return crystals, group_by_prototype(crystals)


def test_group_by_prototype(prototype_groups):
    crystals, groups = prototype_groups
    names = {key: [c.name for c in members] for key, members in groups.items()}
    assert names["A_cF4_225_a"] == ["Cu", "Al"]  # fcc metals together, in input order
    assert names["AB_cF8_225_a_b"] == ["NaCl"]  # rock salt apart
    assert names["A_hP2_194_c"] == ["Mg"]
    assert names["unmatched"] == ["random-sg1-0"]  # a random triclinic ternary matches no prototype
    assert sum(len(v) for v in groups.values()) == len(crystals)
    assert square_root_sample(groups, 3, seed=0)[0].name in {"Cu", "Al", "NaCl", "Mg", "random-sg1-0"}


# ================================================================ random crystals
@pytest.mark.parametrize("space_group, system", [(1, "triclinic"), (14, "monoclinic"), (62, "orthorhombic"),
                                                 (136, "tetragonal"), (166, "trigonal"), (194, "hexagonal"),
                                                 (225, "cubic"), (213, "cubic")])
def test_random_crystal_has_its_space_group(space_group, system):
    crystal = random_crystal(space_group, seed=5)
    assert crystal_system(space_group) == system
    assert crystal.space_group_number == space_group
    assert _spglib_number(crystal) == space_group
    assert 1 <= len(crystal.sites) <= 96  # the default max_atoms
    assert len(set(crystal.elements)) <= 3
    assert set(crystal.elements) <= set(DEFAULT_ELEMENTS)
    assert crystal.name == f"random-sg{space_group}-5"
    same = random_crystal(space_group, seed=5)
    assert same == crystal
    other = random_crystal(space_group, seed=6)
    assert other.space_group_number == space_group
    assert (other.lattice_abc_A, other.sites) != (crystal.lattice_abc_A, crystal.sites)


def test_random_crystal_respects_elements_and_limits():
    crystal = random_crystal(221, seed=1, elements=["Cu", "Au"], max_species=2, max_atoms=8)
    assert set(crystal.elements) <= {"Cu", "Au"}
    assert len(crystal.sites) <= 8
    assert _spglib_number(crystal) == 221


@pytest.mark.parametrize("space_group", [0, -1, 231, 1000])
def test_random_crystal_space_group_out_of_range(space_group):
    with pytest.raises(StructureError, match="1..230"):
        random_crystal(space_group, seed=0)


def test_random_crystal_impossible_request():
    with pytest.raises(StructureError, match="Wyckoff"):
        random_crystal(225, seed=0, max_atoms=1)  # Fm-3m has no position with fewer than 4 atoms


# ================================================================ command line
def _one_error_line(captured) -> str:
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("diffractnet: error: ")
    return lines[0]


def test_cli_list_json(capsys):
    assert main(["structures", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and rows
    assert all({"name", "formula", "space_group"} <= set(row) for row in rows)
    assert [row["name"] for row in rows] == material_names()
    assert all(isinstance(row["space_group"], int) and 1 <= row["space_group"] <= 230 for row in rows)
    by_name = {row["name"]: row for row in rows}
    assert by_name["Mg"]["space_group"] == 194 and by_name["Mg"]["formula"] == "Mg"
    assert by_name["NaCl"]["space_group"] == 225


def test_cli_list_json_filtered(capsys):
    assert main(["structures", "list", "--json", "--space-group", "194"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {row["space_group"] for row in rows} == {194}
    assert "Mg" in {row["name"] for row in rows}


def test_cli_list_text(capsys):
    assert main(["structures", "list"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"{len(material_names())} materials"
    assert any(line.split()[:3] == ["NaCl", "NaCl", "225"] for line in out)


def test_cli_show_json(capsys):
    assert main(["structures", "show", "Mg", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    crystal = get_material("Mg")
    assert info["name"] == "Mg" and info["formula"] == "Mg" and info["space_group"] == 194
    assert info["n_sites"] == len(info["sites"]) == len(crystal.sites) == 2
    np.testing.assert_allclose([s["frac"] for s in info["sites"]], crystal.frac_coords)


def test_cli_show_case_insensitive_text(capsys):
    assert main(["structures", "show", "nacl"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^space_group\s+225$", out, re.M)
    assert re.search(r"^n_sites\s+8$", out, re.M)


def test_cli_show_cif_json(tmp_path, capsys, rutile_text):
    path = _write(tmp_path, "rutile.cif", rutile_text)
    assert main(["structures", "show", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "rutile" and info["space_group"] == 136 and info["n_sites"] == 6
    assert {s["b_iso_A2"] for s in info["sites"] if s["element"] == "O"} == {0.61}


def test_cli_unknown_material(capsys):
    assert main(["structures", "show", "Unobtainium"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Unobtainium" in _one_error_line(captured)


@pytest.mark.parametrize("case", ["garbage", "truncated_mid_row", "unknown_element", "empty"])
def test_cli_broken_cif(tmp_path, capsys, rutile_text, case):
    path = _write(tmp_path, f"bad_{case}.cif", _broken_inputs(rutile_text)[case])
    assert main(["structures", "show", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(path) in _one_error_line(captured)


def test_cli_missing_cif(tmp_path, capsys):
    path = tmp_path / "missing.cif"
    assert main(["structures", "show", str(path), "--json"]) == 2
    assert str(path) in _one_error_line(capsys.readouterr())


def test_cli_show_without_name(capsys):
    assert main(["structures", "show"]) == 2
    assert "name" in _one_error_line(capsys.readouterr())
