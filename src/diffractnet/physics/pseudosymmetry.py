"""Kinematic pseudo-symmetry: the groups a crystal's patterns look like once weak reflections go unseen.

A crystal of group G *mimics* a group G' of the same Laue group when G' forbids every reflection G
forbids and more, and each of those extra reflections is too weak to see: |F|² below
``relative_intensity`` of the strongest reflection up to ``g_max_invA``. Ordered FeNi3 (L1₂, 221, with
Fe ≈ Ni) is the textbook case: its superlattice reflections are ~10⁻⁴ of the fundamentals, so at
every orientation its kinematic pattern is that of a face-centred (225) crystal to within the
threshold. No pattern-based method can be asked to tell such a crystal from G'; evaluations report
accuracy both strictly and with G' counted as right.
"""

from __future__ import annotations

import numpy as np

from diffractnet.physics.reflections import reciprocal_lattice, structure_factors
from diffractnet.structures.ambiguity import same_laue_group, systematically_absent
from diffractnet.structures.crystal import Crystal


VISIBLE_RELATIVE_INTENSITY = 1e-3  # weaker reflections go unseen at the doses of a diffraction pattern


def apparent_space_groups(crystal: Crystal, candidates, g_max_invA: float = 1.5,
                          relative_intensity: float = VISIBLE_RELATIVE_INTENSITY) -> tuple[int, ...]:
    """The crystal's own group and every group of ``candidates`` it mimics (sorted).

    In: a crystal in the standard setting of its space group, candidate group numbers, the
    reflections considered (|g| ≤ ``g_max_invA`` [Å⁻¹]) and the visibility threshold (fraction of
    the strongest |F|²). Out: sorted group numbers, always holding ``crystal.space_group_number``;
    just that one when the crystal's structure factors do not vanish where its group forbids (a
    cell in a non-standard setting, whose hkl the standard-setting absences do not describe).
    """
    own_group = crystal.space_group_number
    hkl = reciprocal_lattice(crystal, g_max_invA)[0]
    intensity = np.abs(structure_factors(crystal, hkl)) ** 2
    weak = intensity < relative_intensity * intensity.max()
    own = systematically_absent(own_group, hkl)
    if (intensity[own] > 1e-6 * intensity.max()).any():
        return (own_group,)
    out = {own_group}
    for group in {int(c) for c in candidates} - {own_group}:
        if not same_laue_group(group, own_group):
            continue
        forbidden = systematically_absent(group, hkl)
        extra = forbidden & ~own
        if extra.any() and not (own & ~forbidden).any() and weak[extra].all():
            out.add(group)
    return tuple(sorted(out))
