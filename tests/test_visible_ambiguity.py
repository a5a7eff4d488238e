"""Per-pattern ambiguity of the visible disc of a detector, against the whole-zone descriptor."""

from __future__ import annotations

import numpy as np
import pytest

from diffractnet.physics.zone_axes import symmetry_distinct_zone_axes
from diffractnet.structures import ambiguity as am
from diffractnet.structures.crystal import lattice_matrix
from diffractnet.structures.library import get_material
from diffractnet.structures.visible_ambiguity import visible_zone_ambiguity

SEED_GROUPS = (213, 221, 225, 227, 229)
HCP = lattice_matrix(3.2094, 3.2094, 5.2108, 90, 90, 120)


@pytest.fixture(scope="module")
def cubic_axes():
    return symmetry_distinct_zone_axes(get_material("Al"), 3)


@pytest.mark.parametrize("a_A", [4.0, 5.43])
def test_a_wide_field_gives_the_whole_zone_answer(cubic_axes, a_A):
    """Two independent constructions (point-set signatures vs reduced-lattice descriptors) agree."""
    metric = lattice_matrix(a_A, a_A, a_A, 90, 90, 90)
    for axis in cubic_axes:
        for group in SEED_GROUPS:
            whole = am.zone_ambiguity(group, axis, metric, SEED_GROUPS, cubic_axes)
            assert visible_zone_ambiguity(group, axis, metric, SEED_GROUPS, cubic_axes, 12 / a_A * 2.5) == whole, (group, axis)


def test_hexagonal_wide_field_agrees_too():
    axes = [(0, 0, 1), (1, 0, 0), (1, -1, 0), (2, -1, 0)]
    for axis in axes:
        for group in (191, 194):
            assert (visible_zone_ambiguity(group, axis, HCP, (191, 194), axes, 6.0)
                    == am.zone_ambiguity(group, axis, HCP, (191, 194), axes)), (group, axis)


def test_a_single_visible_row_tells_nothing(cubic_axes):
    # diamond (a = 3.57 Å) at [012]: inside 1.2 Å⁻¹ only ±(400) at 1.12 Å⁻¹ — one row, any group makes it
    diamond = lattice_matrix(3.57, 3.57, 3.57, 90, 90, 90)
    assert am.zone_ambiguity(227, (0, 1, 2), diamond, SEED_GROUPS, cubic_axes) == (227,)
    assert visible_zone_ambiguity(227, (0, 1, 2), diamond, SEED_GROUPS, cubic_axes, 1.2) == SEED_GROUPS


def test_a_small_field_hides_what_separates_groups(cubic_axes):
    # Fd-3m vs Fm-3m at [112] (a = 3.57 Å): inside 1.2 Å⁻¹ both groups allow 111, 220, 311 and 222; the first
    # reflection the d-glide forbids, 4 0 -2 at 1.25 Å⁻¹, lies just outside, so only a wider detector tells them apart
    small = lattice_matrix(3.57, 3.57, 3.57, 90, 90, 90)
    assert visible_zone_ambiguity(225, (1, 1, 2), small, SEED_GROUPS, cubic_axes, 1.2) == (225, 227)
    assert visible_zone_ambiguity(225, (1, 1, 2), small, SEED_GROUPS, cubic_axes, 4.0) == (225,)


def test_visible_sets_do_not_depend_on_scale_if_the_field_scales_with_it(cubic_axes):
    for axis in cubic_axes:
        for group in SEED_GROUPS:
            a = visible_zone_ambiguity(group, axis, lattice_matrix(4, 4, 4, 90, 90, 90), SEED_GROUPS, cubic_axes, 1.3)
            b = visible_zone_ambiguity(group, axis, lattice_matrix(8, 8, 8, 90, 90, 90), SEED_GROUPS, cubic_axes, 0.65)
            assert a == b, (group, axis)
