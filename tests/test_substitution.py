"""Element-substituted training variants: same sites and space group, other elements, a rescaled cell."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffractnet.data.config import parse_config
from diffractnet.data.generate import generate_dataset
from diffractnet.errors import ConfigError, StructureError
from diffractnet.physics.reflections import structure_factors
from diffractnet.physics.scattering import electron_scattering_factor
from diffractnet.structures.crystal import Crystal
from diffractnet.structures.library import get_material
from diffractnet.structures.substitution import substituted_variant, training_variants


@pytest.mark.parametrize("name", ["CsCl", "NaCl", "Cu3Au", "CeO2", "MgAl2O4", "beta-Mn"])
def test_variant_keeps_sites_and_space_group(name):
    """spglib finds the parent's group in the variant; elements map one-to-one; one cell factor."""
    parent = get_material(name)
    variant = substituted_variant(parent, seed=4, lattice_scale=(0.9, 1.1))
    assert Crystal.from_pymatgen(variant.to_pymatgen()).space_group_number == parent.space_group_number
    mapping = {p.element: v.element for p, v in zip(parent.sites, variant.sites)}
    assert len(set(mapping.values())) == len(mapping)  # one-to-one
    assert all(mapping[p.element] == v.element for p, v in zip(parent.sites, variant.sites))
    assert variant.formula != parent.formula
    assert [s.frac for s in variant.sites] == [s.frac for s in parent.sites]
    factor = np.array(variant.lattice_abc_A) / np.array(parent.lattice_abc_A)
    assert np.allclose(factor, factor[0]) and 0.9 <= factor[0] <= 1.1
    assert variant.name == f"{name}~{variant.formula}" and variant.source.startswith("element substitution")
    assert substituted_variant(parent, seed=4).lattice_abc_A == variant.lattice_abc_A  # reproducible


def test_b2_variant_superlattice_follows_the_new_elements():
    """A CsCl-type variant's 100 / 110 amplitude ratio is (f_A - f_B) / (f_A + f_B) of its own elements at
    each reflection's |g| (Debye-Waller aside): the variant's intensities are the new material's."""
    variant = substituted_variant(get_material("CsCl"), seed=9)
    hkl = np.array([[1, 0, 0], [1, 1, 0]])
    f = np.abs(structure_factors(variant, hkl))
    g = np.linalg.norm(hkl @ variant.reciprocal_matrix_invA, axis=1)
    a = next(s for s in variant.sites if np.allclose(s.frac, 0)).element
    b = next(s for s in variant.sites if not np.allclose(s.frac, 0)).element
    fa, fb = electron_scattering_factor([a, b], g)
    dw = np.exp(-variant.sites[0].b_iso_a2 * g**2 / 4)
    assert f[0] == pytest.approx(abs(fa[0] - fb[0]) * dw[0], rel=1e-6)
    assert f[1] == pytest.approx((fa[1] + fb[1]) * dw[1], rel=1e-6)


def test_training_variants_never_rebuild_an_avoided_crystal():
    parent = get_material("NaCl")
    first = substituted_variant(parent, seed=2026 * 1_000_003)  # the seed training_variants gives variant 0
    kept = training_variants([parent], 3, 2026, avoid=[first])
    assert first.formula not in {v.formula for v in kept} and len(kept) == 2
    assert len({v.formula for v in training_variants([parent], 5, 2026)}) == 5


def test_bad_substitution_input_is_one_clear_error():
    with pytest.raises(StructureError, match="distinct elements"):
        substituted_variant(get_material("NaCl"), seed=1, elements=["Fe"])
    with pytest.raises(StructureError, match="lattice_scale"):
        substituted_variant(get_material("Al"), seed=1, lattice_scale=(1.1, 0.9))
    with pytest.raises(ConfigError, match="lattice_scale"):
        parse_config({"materials": {"library": ["Al"], "substitute": {"lattice_scale": [0, 1]}}})


def test_dataset_variants_train_only_from_training_parents(tmp_path):
    raw = {"name": "sub", "seed": 3, "shard_patterns": 64, "output_dir": str(tmp_path / "sub"),
           "materials": {"library": ["Al", "Cu", "Ni", "Pt", "NaCl", "KCl", "CsCl", "NiAl"],
                         "substitute": {"per_material": 2}},
           "orientations": {"zone_axes": [[0, 0, 1]], "per_zone_axis": 1},
           "split": {"train": 0.5, "val": 0.25, "test": 0.25}}
    card = json.loads(generate_dataset(parse_config(raw), workers=1, progress=False).read_text())
    split = {m["name"]: m["split"] for m in card["materials"]}
    variants = [n for n in split if "~" in n]
    assert variants and all(split[n] == "train" for n in variants)
    assert all(split[n.split("~")[0]] == "train" for n in variants)  # never a val / test parent
    plain = {**raw, "output_dir": str(tmp_path / "plain"), "materials": {"library": raw["materials"]["library"]}}
    before = json.loads(generate_dataset(parse_config(plain), workers=1, progress=False).read_text())
    assert {m["name"]: m["split"] for m in before["materials"]} == {n: s for n, s in split.items() if "~" not in n}
