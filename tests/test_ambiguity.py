"""Space-group ambiguity of kinematic electron diffraction: global classes and zone-axis appearance."""

from __future__ import annotations

import numpy as np
import pytest

from diffractnet.errors import StructureError
from diffractnet.physics.zone_axes import symmetry_distinct_zone_axes
from diffractnet.structures import ambiguity as am
from diffractnet.structures.library import get_material, material_names
from diffractnet.structures.crystal import lattice_matrix

SEED_GROUPS = (213, 221, 225, 227, 229)
CUBIC = lattice_matrix(4.0, 4.0, 4.0, 90, 90, 90)
HCP = lattice_matrix(3.2094, 3.2094, 5.2108, 90, 90, 120)


@pytest.fixture(scope="module")
def cubic_axes():
    return symmetry_distinct_zone_axes(get_material("Al"), 3)


# ---------------------------------------------------------------- inputs
@pytest.mark.parametrize("bad", [0, 231, -5, True, 2.0])
def test_bad_space_group_raises(bad):
    with pytest.raises(StructureError):
        am.absent_reflections(bad)
    with pytest.raises(StructureError):
        am.zone_descriptor(bad, CUBIC, (0, 0, 1))


def test_zero_zone_axis_raises():
    with pytest.raises(StructureError, match="nonzero"):
        am.zone_descriptor(225, CUBIC, (0, 0, 0))


def test_group_that_does_not_fit_the_metric_raises():
    with pytest.raises(StructureError, match="metric"):
        am.zone_descriptor(225, HCP, (0, 0, 1))


# ---------------------------------------------------------------- absences and global classes
def test_known_absences():
    fcc, p4132, hcp, p61 = (am.absent_reflections(g) for g in (225, 213, 194, 169))
    assert (1, 0, 0) in fcc and (1, 1, 0) in fcc and (1, 1, 1) not in fcc and (2, 0, 0) not in fcc
    assert {(1, 0, 0), (2, 0, 0), (0, 3, 0), (0, 0, 6)} <= p4132 and not {(4, 0, 0), (0, 8, 0), (1, 2, 0)} & p4132
    assert (0, 0, 1) in hcp and (1, 1, 1) in hcp and (0, 0, 2) not in hcp and (1, 0, 1) not in hcp
    assert {(0, 0, l) for l in range(1, 12) if l % 6} <= p61 and (0, 0, 6) not in p61 and (0, 0, 12) not in p61
    assert am.absent_reflections(221) == frozenset() and am.absent_reflections(1) == frozenset()


def test_global_classes_partition_all_groups():
    classes = am.global_ambiguity_classes()
    members = [g for c in classes for g in c]
    assert sorted(members) == list(range(1, 231))
    assert list(classes) == sorted(classes) and all(list(c) == sorted(c) for c in classes)
    assert am.n_global_classes() == len(classes)
    assert 110 <= len(classes) <= 150  # "about 130"; the value is computed, not forced


@pytest.mark.parametrize("together", [(207, 215, 221), (209, 216, 225), (211, 217, 229), (212, 213),
                                      (218, 223), (219, 226), (76, 78), (144, 145), (169, 170), (1, 2)])
def test_known_global_merges(together):
    assert set(together) <= set(am.global_class_of(together[0]))


@pytest.mark.parametrize("apart", [(225, 227), (221, 229), (162, 164), (221, 225), (191, 194), (195, 221)])
def test_known_global_separations(apart):
    assert apart[1] not in am.global_class_of(apart[0])


# ---------------------------------------------------------------- Cartesian operations
def test_every_cartesian_operation_is_orthogonal():
    for name in material_names():
        crystal = get_material(name)
        ops = am.cartesian_laue_operations(crystal.space_group_number, crystal.direct_matrix_A)
        assert np.allclose(np.einsum("nji,njk->nik", ops, ops), np.eye(3), atol=1e-9), name
        assert np.allclose(np.abs(np.linalg.det(ops)), 1.0)


# ---------------------------------------------------------------- zone-axis appearance, cubic (seed 003)
def test_cubic_001_square_pattern_shared_except_p4132(cubic_axes):
    ambiguous = {g: am.zone_ambiguity(g, (0, 0, 1), CUBIC, SEED_GROUPS, [(0, 0, 1)]) for g in SEED_GROUPS}
    for g in (221, 225, 227, 229):
        assert ambiguous[g] == (221, 225, 227, 229)
    assert ambiguous[213] == (213,)
    ratio, cos, missing, ops = am.zone_descriptor(225, CUBIC, (0, 0, 1))
    assert (ratio, cos, missing, len(ops)) == (1.0, 0.0, (), 8)  # square lattice, 4mm, nothing missing
    assert (4, 0) not in am.zone_descriptor(213, CUBIC, (0, 0, 1))[2]  # h00 present for h = 4n only
    assert (1, 0) in am.zone_descriptor(213, CUBIC, (0, 0, 1))[2]


def test_cubic_011_separates_up_to_unknown_scale():
    d = {g: am.zone_descriptor(g, CUBIC, (0, 1, 1)) for g in SEED_GROUPS}
    assert len({d[213], d[221], d[225], d[227]}) == 4
    assert d[225][:2] == d[227][:2] and d[227][2] and not d[225][2]  # 227 loses 200 on the fcc net
    # sc [011] (100 × 011) and bcc [011] (011 × 200) are both √2 rectangles, 2mm: only the
    # absolute scale (camera length) tells them apart, which the descriptor deliberately drops.
    assert d[221] == d[229] and d[221][:2] == (1.4142, 0.0)


def test_cubic_111_all_five_alike():
    target = am.zone_descriptor(221, CUBIC, (1, 1, 1))
    assert target[:2] == (1.0, 0.5) and len(target[3]) == 12  # hexagonal net, 6mm
    assert all(am.zone_descriptor(g, CUBIC, (1, 1, 1)) == target for g in SEED_GROUPS)


def test_enantiomorphs_212_213_always_mutually_ambiguous(cubic_axes):
    for axis in cubic_axes:
        assert am.zone_ambiguity(212, axis, CUBIC, (212, 213), [axis]) == (212, 213)
        assert am.zone_ambiguity(213, axis, CUBIC, (212, 213), [axis]) == (212, 213)


def test_zone_ambiguity_contains_itself_even_when_axis_not_listed():
    assert am.zone_ambiguity(227, (0, 1, 1), CUBIC, SEED_GROUPS, [(0, 0, 1)]) == (227,)


def test_appearance_classes_seed_groups(cubic_axes):
    classes = am.appearance_classes(SEED_GROUPS, cubic_axes, CUBIC)
    assert len(classes) == 5 * 13
    ids = [classes[k] for k in sorted(classes)]
    assert ids[0] == 0 and max(ids) + 1 == len(set(ids)) == 39
    first_seen = [i for n, i in enumerate(ids) if i not in ids[:n]]
    assert first_seen == sorted(first_seen)  # ids in order of first appearance
    assert len({classes[(g, (0, 0, 1))] for g in (221, 225, 227, 229)}) == 1
    assert len({classes[(g, (1, 1, 1))] for g in SEED_GROUPS}) == 1
    assert classes[(213, (0, 0, 1))] != classes[(221, (0, 0, 1))]
    assert am.appearance_classes(SEED_GROUPS, cubic_axes, CUBIC) == classes


# ---------------------------------------------------------------- hexagonal
def test_hcp_001_equals_p6mmm_but_side_views_do_not():
    assert am.zone_descriptor(194, HCP, (0, 0, 1)) == am.zone_descriptor(191, HCP, (0, 0, 1))
    assert am.zone_descriptor(194, HCP, (0, 0, 1))[:2] == (1.0, 0.5)
    for axis in [(1, 0, 0), (1, -1, 0), (2, -1, 0)]:  # 00l (l odd) or hh-2hl (l odd) absent
        assert am.zone_descriptor(194, HCP, axis) != am.zone_descriptor(191, HCP, axis), axis
    assert am.zone_ambiguity(194, (0, 0, 1), HCP, (191, 194), [(0, 0, 1)]) == (191, 194)


# ---------------------------------------------------------------- invariances
@pytest.mark.parametrize("group, metric, axis, equivalents", [
    (227, CUBIC, (0, 1, 1), [(1, 0, 1), (1, -1, 0), (0, -1, 1), (-1, 0, -1)]),
    (213, CUBIC, (1, 2, 3), [(3, 1, 2), (-2, 1, 3), (-1, -2, -3), (2, 1, 3)]),
    (194, HCP, (1, 0, 0), [(0, 1, 0), (1, 1, 0), (-1, 0, 0), (2, 0, 0)]),
    (194, HCP, (1, 0, 1), [(0, 1, 1), (-1, -1, 1), (-1, 0, -1)]),
])
def test_descriptor_invariant_under_symmetry_sign_and_scale(group, metric, axis, equivalents):
    reference = am.zone_descriptor(group, metric, axis)
    for other in equivalents:
        assert am.zone_descriptor(group, metric, other) == reference, other
    assert am.zone_descriptor(group, 2.0 * metric, axis) == reference


def test_descriptor_invariant_under_rotation_and_mirror_of_the_frame():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    for frame in (q, q @ np.diag([1.0, 1.0, -1.0])):  # proper and improper
        for group, metric, axis in [(227, CUBIC, (0, 1, 1)), (213, CUBIC, (1, 1, 2)), (194, HCP, (1, 0, 1))]:
            assert am.zone_descriptor(group, metric @ frame, axis) == am.zone_descriptor(group, metric, axis)
