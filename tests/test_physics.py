"""Physics against closed forms and pymatgen's TEMCalculator: wavelength, f_e, absences, |F|²."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import make_crystal

from diffractnet.errors import PhysicsError, StructureError
from diffractnet.physics import (
    SpotSimulator,
    electron_scattering_factor,
    electron_wavelength_A,
    reflection_set,
    structure_factors,
    zone_axis_quaternion,
)


def test_wavelength_known_values():
    # 200 kV: 0.0250793 Å (diffsims' tested value); 300 kV: 0.0196875 Å (standard tables).
    assert electron_wavelength_A(200) == pytest.approx(0.0250793403, rel=1e-6)
    assert electron_wavelength_A(300) == pytest.approx(0.01968749, rel=1e-5)


@pytest.mark.parametrize("bad", [0, -200, float("nan"), "abc"])
def test_wavelength_rejects_bad_voltage(bad):
    with pytest.raises(PhysicsError, match="voltage"):
        electron_wavelength_A(bad)


def test_scattering_factor_limits():
    g = np.array([0.0, 0.5, 1.0, 2.0])
    f = electron_scattering_factor(["H", "C", "Au"], g)
    assert f.shape == (3, 4)
    assert np.all(np.diff(f, axis=1) < 0)  # decreasing with |g|
    assert f[2, 0] > f[1, 0] > f[0, 0] > 0  # heavier atoms scatter more
    # Large-g limit is the Rutherford form Z/(2π² a0 g²) with a0 = 0.529177 Å (Mott–Bethe).
    g_big = np.array([20.0])
    for el, z in [("C", 6), ("Au", 79)]:
        rutherford = z / (2 * np.pi**2 * 0.529177 * g_big**2)
        assert electron_scattering_factor([el], g_big)[0, 0] == pytest.approx(rutherford[0], rel=0.02)
    # numpy and torch give the same numbers
    ft = electron_scattering_factor(["Au"], torch.tensor(g, dtype=torch.float64))
    np.testing.assert_allclose(ft.numpy(), f[2:], rtol=1e-12)


def _present(crystal, hkls, g_max=2.5):
    refl = reflection_set(crystal, g_max)
    allowed = {tuple(h) for h in refl.hkl}
    return [tuple(h) in allowed for h in hkls]


@pytest.mark.parametrize("name,absent,present", [
    ("Al", [(1, 0, 0), (1, 1, 0), (2, 1, 0)], [(1, 1, 1), (2, 0, 0), (2, 2, 0)]),             # FCC
    ("Fe", [(1, 0, 0), (1, 1, 1), (2, 1, 0)], [(1, 1, 0), (2, 0, 0), (2, 1, 1)]),             # BCC
    ("Si", [(2, 0, 0), (2, 2, 2), (1, 0, 0)], [(1, 1, 1), (2, 2, 0), (3, 1, 1), (4, 0, 0)]),  # diamond
    ("Mg", [(0, 0, 1), (0, 0, 3)], [(0, 0, 2), (1, 0, 0), (1, 0, 1)]),                        # hcp
    ("ZnO", [(0, 0, 1), (0, 0, 3)], [(0, 0, 2), (1, 0, 0), (1, 0, 1)]),                       # wurtzite
])
def test_systematic_absences(name, absent, present):
    crystal = make_crystal(name)
    assert not any(_present(crystal, absent)), f"{name}: a forbidden reflection is present"
    assert all(_present(crystal, present)), f"{name}: an allowed reflection is missing"


def test_geometric_structure_factors_closed_form():
    # FCC with f = f_Al(g): F(111) = 4 f; BCC F(110) = 2 f; diamond F(111) = 4√2 f (|1 - i|·4 / √... → |F|² = 32 f²).
    for name, hkl, factor2 in [("Al", (1, 1, 1), 16.0), ("Fe", (1, 1, 0), 4.0), ("Si", (1, 1, 1), 32.0), ("Si", (2, 2, 0), 64.0)]:
        crystal = make_crystal(name)
        crystal0 = dataclasses.replace(crystal, sites=tuple(dataclasses.replace(s, b_iso_a2=0.0) for s in crystal.sites))
        g = np.linalg.norm(np.array(hkl) @ crystal.reciprocal_matrix_invA)
        f = electron_scattering_factor([crystal.elements[0]], np.array([g]))[0, 0]
        f2 = abs(structure_factors(crystal0, np.array([hkl]))[0]) ** 2
        assert f2 == pytest.approx(factor2 * f * f, rel=1e-10)


def test_debye_waller_damps_high_g():
    crystal = make_crystal("Al")
    hot = dataclasses.replace(crystal, sites=tuple(dataclasses.replace(s, b_iso_a2=2.0) for s in crystal.sites))
    hkl = np.array([[1, 1, 1], [4, 4, 4]])
    ratio = np.abs(structure_factors(hot, hkl)) / np.abs(structure_factors(crystal, hkl))
    g2 = (np.linalg.norm(hkl @ crystal.reciprocal_matrix_invA, axis=1)) ** 2
    np.testing.assert_allclose(ratio, np.exp(-(2.0 - 0.8) * g2 / 4), rtol=1e-10)


@pytest.mark.parametrize("name", ["Al", "NaCl", "Si"])
@pytest.mark.parametrize("zone", [(0, 0, 1), (0, 1, 1), (1, 1, 1)])
def test_zolz_intensities_match_pymatgen_tem(name, zone):
    """pymatgen uses its own (X-ray + Mott–Bethe) scattering factors: agreement within 5 %."""
    from pymatgen.analysis.diffraction.tem import TEMCalculator

    crystal = make_crystal(name)
    crystal0 = dataclasses.replace(crystal, sites=tuple(dataclasses.replace(s, b_iso_a2=0.0) for s in crystal.sites))
    structure = crystal0.to_pymatgen()
    structure.remove_site_property("b_iso")
    table = TEMCalculator(voltage=200, beam_direction=zone).get_pattern(structure)
    peer = {tuple(int(x) for x in h): i for h, i in zip(table["(hkl)"], table["Intensity (norm)"])
            if any(h) and i > 1e-6}
    hkl = np.array(sorted(peer, key=lambda h: -peer[h])[:10])
    ours = np.abs(structure_factors(crystal0, hkl)) ** 2
    peer_values = np.array([peer[tuple(h)] for h in hkl])
    np.testing.assert_allclose(ours / ours[0], peer_values / peer_values[0], rtol=0.05)


def test_g_max_too_small_and_bad_inputs():
    crystal = make_crystal("Al")
    with pytest.raises(PhysicsError, match="too small"):
        reflection_set(crystal, 0.1)
    with pytest.raises(PhysicsError, match="positive"):
        reflection_set(crystal, -1)
    with pytest.raises(PhysicsError):
        SpotSimulator(thickness_A=0)
    with pytest.raises(PhysicsError, match="profile"):
        SpotSimulator(profile="gauss")
    with pytest.raises(PhysicsError, match="zone axis"):
        zone_axis_quaternion(crystal, (0, 0, 0))
    with pytest.raises(PhysicsError, match="quaternion"):
        SpotSimulator().simulate(crystal, np.zeros((2, 4)))


def test_zone_axis_puts_beam_along_uvw():
    from diffractnet.physics import quaternion_to_matrix

    crystal = make_crystal("LiNiO2")
    for uvw in [(0, 0, 1), (1, 0, 0), (2, 1, 0), (1, 1, 1)]:
        q = zone_axis_quaternion(crystal, uvw, inplane_deg=[0.0, 40.0])
        beam_in_crystal = quaternion_to_matrix(torch.tensor(q)) @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        direction = np.array(uvw) @ crystal.direct_matrix_A
        np.testing.assert_allclose(beam_in_crystal.numpy(), np.tile(direction / np.linalg.norm(direction), (2, 1)), atol=1e-10)


def test_zone_axis_pattern_is_zolz_and_symmetric():
    crystal = make_crystal("Al")
    sim = SpotSimulator(200, 1.5, thickness_A=100)
    spots = sim.simulate(crystal, zone_axis_quaternion(crystal, (0, 0, 1))).pattern(0)
    assert np.all(spots["hkl"][:, 2] == 0)  # only the zero-order Laue zone at [001]
    # 4-fold symmetry: rotating every spot by 90° lands on a spot of equal intensity
    xy, inten = spots["xy_invA"], spots["intensity"]
    turned = xy @ np.array([[0, -1], [1, 0]]).T
    dist = np.linalg.norm(turned[:, None] - xy[None], axis=-1)
    j = dist.argmin(1)
    assert dist.min(1).max() < 1e-5
    np.testing.assert_allclose(inten[j], inten, rtol=1e-5)


def test_thickness_profile_and_precession():
    crystal = make_crystal("Si")
    q = zone_axis_quaternion(crystal, (0, 1, 1), inplane_deg=10.0)
    thin = SpotSimulator(200, 1.5, thickness_A=50).simulate(crystal, q).pattern(0)
    flat = SpotSimulator(200, 1.5, thickness_A=50, profile="flat").simulate(crystal, q).pattern(0)
    np.testing.assert_array_equal(thin["hkl"], flat["hkl"])
    expected = flat["intensity"] * np.sinc(50 * thin["excitation_error_invA"]) ** 2
    np.testing.assert_allclose(thin["intensity"], expected, rtol=1e-4)
    prec = SpotSimulator(200, 1.5, thickness_A=50, precession_angle_deg=1.0).simulate(crystal, q).pattern(0)
    assert len(prec["hkl"]) > len(thin["hkl"])  # precession excites more reflections
    # positions of reflections seen in both are identical (the beam is descanned)
    common = {tuple(h): i for i, h in enumerate(prec["hkl"])}
    idx = [common[tuple(h)] for h in thin["hkl"]]
    np.testing.assert_allclose(prec["xy_invA"][idx], thin["xy_invA"], atol=1e-6)


def test_batch_equals_single_and_fundamental_zone():
    from orix.quaternion import Orientation

    from diffractnet.physics import sample_fundamental_zone
    from diffractnet.physics.orientations import laue_group

    crystal = make_crystal("TiO2")
    q = sample_fundamental_zone(crystal, 64, seed=3)
    assert np.array_equal(q, sample_fundamental_zone(crystal, 64, seed=3))
    ori = Orientation(q, symmetry=laue_group(crystal))
    assert np.allclose(ori.reduce().data, q, atol=1e-8)  # already in the fundamental zone
    sim = SpotSimulator(200, 1.2)
    batch = sim.simulate(crystal, q)
    for i in (0, 17, 63):
        single = sim.simulate(crystal, q[i:i + 1]).pattern(0)
        np.testing.assert_allclose(batch.pattern(i)["xy_invA"], single["xy_invA"], atol=1e-6)


def test_unknown_element_and_empty_structure():
    from diffractnet.structures.crystal import Crystal, Site

    with pytest.raises(StructureError, match="unknown element 'Xx'"):
        Crystal("bad", (3, 3, 3), (90, 90, 90), (Site("Xx", (0, 0, 0)),), 221, "Pm-3m")
    with pytest.raises(StructureError, match="no atoms"):
        Crystal("empty", (3, 3, 3), (90, 90, 90), (), 221, "Pm-3m")
