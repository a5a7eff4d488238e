"""Kinematic pseudo-symmetry: which groups a crystal mimics once weak reflections go unseen."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from diffractnet.physics.pseudosymmetry import apparent_space_groups
from diffractnet.physics.reflections import structure_factors
from diffractnet.structures.ambiguity import same_laue_group, systematically_absent
from diffractnet.structures.library import get_material

CUBIC5 = [213, 221, 225, 227, 229]


def test_fe_ni3_looks_face_centred_ni3_al_does_not():
    # L1₂: F(100) = f_A − f_B, F(111) = f_A + 3 f_B; Fe/Ni differ by 2 electrons, Ni/Al by 15
    fe_ni3, ni3_al = get_material("FeNi3"), get_material("Ni3Al")
    ratio = abs(structure_factors(fe_ni3, [[1, 0, 0]])[0] / structure_factors(fe_ni3, [[1, 1, 1]])[0]) ** 2
    assert ratio < 1e-3
    assert apparent_space_groups(fe_ni3, CUBIC5) == (221, 225)
    assert apparent_space_groups(ni3_al, CUBIC5) == (221,)
    assert apparent_space_groups(ni3_al, CUBIC5, relative_intensity=0.05) == (221, 225)


@pytest.mark.parametrize("name,group", [("Al", 225), ("Si", 227), ("Fe", 229), ("CsCl", 221), ("beta-Mn", 213),
                                        ("CaF2", 225)])
def test_ordinary_crystals_mimic_nothing(name, group):
    assert apparent_space_groups(get_material(name), CUBIC5) == (group,)


def test_mimicking_needs_more_absences_not_fewer():
    # fluorite's 200 (f_Ca − 2 f_F) is weak but seen; only a loose threshold calls it diamond-like (227 forbids
    # more than 225); diamond never mimics 225, whose absences are fewer
    assert apparent_space_groups(get_material("CaF2"), CUBIC5, relative_intensity=0.2) == (225, 227)
    assert apparent_space_groups(get_material("Si"), CUBIC5, relative_intensity=0.5) == (227,)


def test_absences_and_laue_helpers():
    hkl = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1], [2, 0, 0], [2, 2, 2]])
    np.testing.assert_array_equal(systematically_absent(225, hkl), [True, True, False, False, False])
    np.testing.assert_array_equal(systematically_absent(229, hkl), [True, False, True, False, False])
    # 222 of diamond vanishes only because the atoms sit on 8a: not a condition of Fd-3m itself
    np.testing.assert_array_equal(systematically_absent(227, hkl), [True, True, False, True, False])
    assert same_laue_group(213, 229) and not same_laue_group(221, 200) and not same_laue_group(164, 162)


def test_a_cell_that_breaks_its_own_absences_mimics_nothing():
    # Si labelled 229 has a strong 111, which I-centring forbids, so its label's absences do not describe
    # its hkl; every extra absence of Ia-3d happens to vanish in Si, so an unguarded check would say "mimics 230"
    fake = dataclasses.replace(get_material("Si"), space_group_number=229)
    assert apparent_space_groups(fake, [229, 230]) == (229,)
    # labelled with a subgroup, a crystal mimics the group it really has
    assert apparent_space_groups(dataclasses.replace(get_material("Al"), space_group_number=221), CUBIC5) == (221, 225)
