"""Our spot positions and |F|² against diffsims (independent simulator), 7 crystal systems × 3 zone axes."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import PEER_ENTRIES, make_crystal
from peer_diffsims import diffsims_spots, orix_phase_from_entry

from diffractnet.physics import SpotSimulator, zone_axis_quaternion

VOLTAGE_KV, G_MAX, S_MAX = 200.0, 1.5, 0.03
ZONES = {
    "Al": [(0, 0, 1), (0, 1, 1), (1, 1, 1)],
    "Fe": [(0, 0, 1), (1, 1, 1), (1, 1, 2)],
    "Si": [(0, 0, 1), (0, 1, 1), (1, 1, 2)],
    "Mg": [(0, 0, 1), (1, 0, 0), (2, 1, 0)],
    "ZnO": [(0, 0, 1), (1, 0, 0), (1, 1, 0)],
    "TiO2": [(0, 0, 1), (1, 0, 0), (1, 1, 1)],
    "LiNiO2": [(0, 0, 1), (1, 0, 0), (2, 1, 0)],
    "CaTiO3": [(1, 0, 0), (0, 1, 0), (1, 0, 1)],
    "ZrO2": [(0, 0, 1), (0, 1, 0), (1, 1, 0)],
}
CASES = [(name, zone) for name, zones in ZONES.items() for zone in zones]


@pytest.mark.parametrize("name,zone", CASES, ids=[f"{n}-{''.join(map(str, z))}" for n, z in CASES])
def test_positions_and_intensities_match_diffsims(name, zone):
    crystal = make_crystal(name)
    phase = orix_phase_from_entry({"name": name, **PEER_ENTRIES[name]})
    assert len(phase.structure) == len(crystal.sites), "orix and pyxtal expand to different cells"
    debye_waller = {s.element: s.b_iso_a2 for s in crystal.sites}
    q = zone_axis_quaternion(crystal, zone, inplane_deg=23.0)  # in-plane turn tests the full rotation
    sim = SpotSimulator(VOLTAGE_KV, G_MAX, max_excitation_error_invA=S_MAX, profile="flat")
    ours = sim.simulate(crystal, q).pattern(0)
    hkl_p, xy_p, f2_p = diffsims_spots(phase, q, VOLTAGE_KV, G_MAX, S_MAX, debye_waller)

    # Same reflections, except those sitting on the |s| or |g| cut-off within rounding.
    near_cut = (np.abs(np.abs(ours["excitation_error_invA"]) - S_MAX) < 1e-5)
    ours_set = {tuple(h) for h in ours["hkl"]}
    peer_set = {tuple(h) for h in hkl_p}
    borderline = {tuple(h) for h in ours["hkl"][near_cut]}
    assert len(ours_set) >= 6, f"too few spots to compare ({len(ours_set)})"
    assert (ours_set ^ peer_set) - borderline == set()

    peer_index = {tuple(h): i for i, h in enumerate(hkl_p)}
    order = np.argsort(-ours["intensity"])[:20]
    matched = np.array([peer_index[tuple(ours["hkl"][i])] for i in order])
    np.testing.assert_allclose(ours["xy_invA"][order], xy_p[matched], atol=1e-4)
    rel_ours = ours["intensity"][order] / ours["intensity"].max()
    rel_peer = f2_p[matched] / f2_p.max()
    np.testing.assert_allclose(rel_ours, rel_peer, rtol=0.02, atol=1e-6)


@pytest.mark.parametrize("name", ["LiNiO2", "ZrO2", "Mg", "CaTiO3"])
def test_our_orix_phase_gives_diffsims_our_spots(name):
    """``Crystal.to_orix_phase`` is what pyxem/diffsims get from us: random orientations must agree."""
    from diffractnet.physics import sample_fundamental_zone

    crystal = make_crystal(name)
    phase = crystal.to_orix_phase()
    sim = SpotSimulator(VOLTAGE_KV, G_MAX, max_excitation_error_invA=S_MAX, profile="flat")
    debye_waller = {s.element: s.b_iso_a2 for s in crystal.sites}
    for q in sample_fundamental_zone(crystal, 4, seed=1):
        ours = sim.simulate(crystal, q).pattern(0)
        hkl_p, xy_p, f2_p = diffsims_spots(phase, q, VOLTAGE_KV, G_MAX, S_MAX, debye_waller)
        borderline = {tuple(h) for h, s in zip(ours["hkl"], ours["excitation_error_invA"]) if abs(abs(s) - S_MAX) < 1e-5}
        assert ({tuple(h) for h in ours["hkl"]} ^ {tuple(h) for h in hkl_p}) - borderline == set()
