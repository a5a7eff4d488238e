"""Orientation maps: misorientations, grain boundaries, IPF colours, CrystalMap files (.ang, orix HDF5), figures."""

from __future__ import annotations

import numpy as np
import pytest

from diffractnet.analysis.misorientation import laue_rotations, misorientation_deg, misorientation_stats
from diffractnet.analysis.orientation_maps import (
    MapPanel,
    crystal_map,
    grain_boundaries,
    ipf_rgb,
    plot_orientation_maps,
    save_ang,
    save_orix_hdf5,
)
from diffractnet.errors import DataError
from diffractnet.physics.orientations import laue_group, random_quaternions

NY, NX = 16, 16
BEAM_FLIP = np.array([0.0, 0.0, 0.0, 1.0])


def _mul(a, b):
    """Hamilton product of (..., 4) quaternions (test-side copy, independent of the module)."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, float), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, float), -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def _axis_angle(axis, angle_deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    half = np.radians(angle_deg) / 2
    return np.array([np.cos(half), *(np.sin(half) * axis)])


def _raw_angle_deg(q_a, q_b):
    """Rotation angle [deg] between quaternions without any symmetry (q and −q equal)."""
    dot = np.clip(np.abs(np.sum(q_a * q_b, axis=-1)), 0, 1)
    return np.degrees(2 * np.arccos(dot))


GENERAL = np.array([0.8, 0.3, -0.4, 0.33])
GENERAL = GENERAL / np.linalg.norm(GENERAL)
GRAIN_A = GENERAL
GRAIN_B = _mul(GENERAL, _axis_angle([1, 2, 0.5], 20.0))
GRAIN_C = _mul(GENERAL, _axis_angle([0, 1, 1], 35.0))


def _three_grains(rng=None, noise_deg=0.0):
    """16×16 map: grain A on the left half, B top right, C bottom right; optional small scatter."""
    q = np.empty((NY, NX, 4))
    q[:, :8] = GRAIN_A
    q[:8, 8:] = GRAIN_B
    q[8:, 8:] = GRAIN_C
    if noise_deg:
        axes = rng.normal(size=(NY, NX, 3))
        angles = rng.uniform(0, noise_deg, size=(NY, NX))
        kicks = np.stack([_axis_angle(a, t) for a, t in zip(axes.reshape(-1, 3), angles.ravel())]).reshape(NY, NX, 4)
        q = _mul(q, kicks)
    return q


@pytest.fixture(params=["Al", "LiNiO2"])
def crystal(request, crystals):
    return crystals[request.param]


# ----------------------------------------------------------------------------- misorientation


def test_identical_and_symmetry_equivalent_are_zero(crystal):
    q = random_quaternions(50, seed=1)
    assert np.allclose(misorientation_deg(q, q, crystal), 0.0, atol=1e-6)
    laue = laue_group(crystal)
    ops = np.asarray(laue.data)  # all Laue operations, improper ones included (their rotation part)
    assert len(ops) == {"Al": 48, "LiNiO2": 12}[crystal.name]
    for op in ops:
        equivalent = _mul(op, q)  # crystal-side operation: R → S R
        assert np.allclose(misorientation_deg(q, equivalent, crystal), 0.0, atol=1e-6)
        assert np.allclose(misorientation_deg(equivalent, -q, crystal), 0.0, atol=1e-6)


def test_known_rotation_angle_and_orix_agree(crystal):
    from orix.quaternion import Orientation

    q = random_quaternions(40, seed=2)
    for axis in ([0, 0, 1], [1, 1, 1], [0.3, -0.2, 0.9]):
        turned = _mul(q, _axis_angle(axis, 10.0))  # lab-side 10° turn
        assert np.allclose(misorientation_deg(q, turned, crystal), 10.0, atol=1e-6)
        assert np.allclose(misorientation_deg(turned, q, crystal), 10.0, atol=1e-6)
    a, b = random_quaternions(500, seed=3), random_quaternions(500, seed=4)
    symmetry = laue_group(crystal)
    reference = Orientation(a, symmetry=symmetry).angle_with(Orientation(b, symmetry=symmetry), degrees=True)
    assert np.allclose(misorientation_deg(a, b, crystal), reference, atol=1e-6)


def test_misorientation_broadcasts_leading_shapes(crystal):
    q = _three_grains()
    out = misorientation_deg(q, GRAIN_A, crystal)
    assert out.shape == (NY, NX)
    assert np.allclose(out[:, :8], 0.0, atol=1e-6)
    assert np.allclose(out[:8, 8:], 20.0, atol=1e-6)


def test_beam_flip_counts_only_when_asked(crystals):
    al = crystals["Al"]
    flipped = _mul(GENERAL, BEAM_FLIP)  # 180° about lab z, applied on the lab side
    plain = misorientation_deg(GENERAL, flipped, al)
    assert plain > 30.0
    assert misorientation_deg(GENERAL, flipped, al, beam_flip_equal=True) < 1e-6
    near = _mul(flipped, _axis_angle([1, 0, 0], 3.0))
    assert misorientation_deg(GENERAL, near, al, beam_flip_equal=True) == pytest.approx(3.0, abs=1e-6)
    # an ordinary error is never made larger by the flag
    a, b = random_quaternions(200, seed=5), random_quaternions(200, seed=6)
    assert (misorientation_deg(a, b, al, beam_flip_equal=True) <= misorientation_deg(a, b, al) + 1e-9).all()


def test_misorientation_stats():
    deg = np.array([0.5, 0.5, 2.0, 4.0, 10.0, np.nan])
    stats = misorientation_stats(deg)
    assert stats["n"] == 5
    assert stats["median_deg"] == pytest.approx(2.0)
    assert stats["mean_deg"] == pytest.approx(17.0 / 5)
    assert stats["p90_deg"] == pytest.approx(np.percentile(deg[:5], 90))
    assert stats["fraction_below_1deg"] == pytest.approx(0.4)
    assert stats["fraction_below_5deg"] == pytest.approx(0.8)
    assert all(isinstance(v, (int, float)) for v in stats.values())
    with pytest.raises(DataError):
        misorientation_stats([np.nan])


# ----------------------------------------------------------------------------- grain boundaries


def test_grain_boundaries_at_edges_only(crystal):
    rng = np.random.default_rng(7)
    q = _three_grains(rng, noise_deg=0.5)
    q[:8, 8:] = GRAIN_A  # two grains: A everywhere but the bottom-right quarter (C)
    # symmetry-equivalent variants inside grain A must not make boundaries
    ops = laue_rotations(crystal)
    q[2:5, 1:4] = _mul(ops[-1], q[2:5, 1:4])
    expected = np.zeros((NY, NX), dtype=bool)
    expected[8:, 8] = True  # C's left column and A's column beside it
    expected[8:, 7] = True
    expected[8, 8:] = True  # C's top row and A's row above it
    expected[7, 8:] = True
    found = grain_boundaries(q, crystal, threshold_deg=5.0)
    assert found.dtype == bool and found.shape == (NY, NX)
    assert np.array_equal(found, expected)
    assert not grain_boundaries(q, crystal, threshold_deg=40.0).any()  # A–C is 35°


def test_grain_boundaries_ignore_masked_pixels(crystals):
    al = crystals["Al"]
    q = _three_grains()
    mask = np.ones((NY, NX), dtype=bool)
    mask[:, 7:9] = False  # hide the A | B, C seam
    found = grain_boundaries(q, al, mask=mask)
    assert not found[:, :9].any()
    assert found[7:9, 9:].all()  # the B | C seam stays


# ----------------------------------------------------------------------------- IPF colours


def test_ipf_rgb_shape_range_and_symmetry(crystal):
    q = random_quaternions(NY * NX, seed=8).reshape(NY, NX, 4)
    rgb = ipf_rgb(q, crystal)
    assert rgb.shape == (NY, NX, 3)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    for op in laue_rotations(crystal):
        assert np.allclose(ipf_rgb(_mul(op, q), crystal), rgb, atol=1e-6)
    identity = ipf_rgb(np.array([1.0, 0, 0, 0]), crystal)  # [001] / c along the beam: red
    assert np.allclose(identity, [1.0, 0.0, 0.0], atol=1e-6)
    assert ipf_rgb(q, crystal, direction="x").shape == (NY, NX, 3)


# ----------------------------------------------------------------------------- CrystalMap and files


def _no_temp_files(folder):
    return not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_crystal_map_layout_and_props(crystal):
    q = _three_grains()
    confidence = np.linspace(0, 1, NY * NX).reshape(NY, NX)
    cmap = crystal_map(q, crystal, confidence=confidence, step_nm=2.5,
                       extra_props={"misorientation_deg": misorientation_deg(q, GRAIN_A, crystal)})
    assert cmap.shape == (NY, NX)
    assert cmap.scan_unit == "nm"
    assert cmap.phases[0].space_group.number == crystal.space_group_number
    assert np.allclose(cmap.x[:3], [0.0, 2.5, 5.0]) and np.allclose(cmap.y[NX], 2.5)  # row-major
    assert np.allclose(cmap.get_map_data("confidence"), confidence)
    assert np.allclose(_raw_angle_deg(cmap.rotations.data.reshape(NY, NX, 4), q), 0.0, atol=1e-6)


@pytest.mark.parametrize("suffix", ["ang", "h5"])
def test_files_round_trip(crystal, tmp_path, suffix):
    from orix import io

    q = _three_grains(np.random.default_rng(9), noise_deg=2.0)
    confidence = np.round(np.linspace(0.05, 1, NY * NX).reshape(NY, NX), 3)
    error = np.round(misorientation_deg(q, GRAIN_A, crystal), 3)
    mask = np.ones((NY, NX), dtype=bool)
    mask[0, 0] = False
    cmap = crystal_map(q, crystal, confidence=confidence, step_nm=2.0, mask=mask,
                       extra_props={"misorientation_deg": error})
    path = tmp_path / f"map.{suffix}"
    out = (save_ang if suffix == "ang" else save_orix_hdf5)(path, cmap)
    assert out == path and path.stat().st_size > 0 and _no_temp_files(tmp_path)

    back = io.load(path)
    assert back.shape == (NY, NX) and back.size == NY * NX
    assert np.array_equal(back.is_indexed.reshape(NY, NX), mask)
    q_back = back.rotations.data.reshape(NY, NX, 4)
    assert _raw_angle_deg(q_back, q)[mask].max() < 0.1  # the same rotation, not only a symmetry-equivalent
    assert np.allclose(back.x.reshape(NY, NX)[0, :3], [0.0, 2.0, 4.0])
    assert np.allclose(back.y.reshape(NY, NX)[:3, 0], [0.0, 2.0, 4.0])
    assert np.allclose(back.prop["misorientation_deg"].reshape(NY, NX)[mask], error[mask], atol=1e-4)
    confidence_back = back.prop["ci" if suffix == "ang" else "confidence"].reshape(NY, NX)
    assert np.allclose(confidence_back[mask], confidence[mask], atol=1e-4)
    phase = back.phases[int(back.phase_id.max())]
    if suffix == "h5":  # orix HDF5 keeps everything
        assert back.scan_unit == "nm"
        assert phase.space_group.number == crystal.space_group_number
    else:  # .ang keeps the proper point group (TSL symmetry code) and reads the unit as µm
        assert phase.point_group.proper_subgroup.name == laue_group(crystal).proper_subgroup.name
    save_orix_hdf5(path, cmap)  # overwriting leaves no temporary files either
    assert _no_temp_files(tmp_path)


# ----------------------------------------------------------------------------- figure


def test_plot_orientation_maps_writes_png(crystal, tmp_path):
    import matplotlib.image

    rng = np.random.default_rng(10)
    truth = _three_grains()
    predicted = _three_grains(rng, noise_deg=3.0)
    error = misorientation_deg(predicted, truth, crystal)
    confidence = rng.uniform(0, 1, (NY, NX))
    mask = confidence > 0.1
    path = tmp_path / "figs" / "orientation_map.png"
    out = plot_orientation_maps(path, [("truth", truth), ("predicted", predicted),
                                       MapPanel("error to truth", error, label="misorientation [deg]", vmin=0),
                                       ("confidence", confidence)],
                                crystal, mask=mask, step_nm=2.0)
    assert out == path and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[1] > image.shape[0] > 100  # panels side by side
    assert _no_temp_files(path.parent)
    plot_orientation_maps(tmp_path / "dict.png", {"only": truth}, crystal)
    assert (tmp_path / "dict.png").stat().st_size > 0


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("make, message", [
    (lambda q: q[..., :3], "shape"),
    (lambda q: q[0], "shape"),
    (lambda q: np.where(np.arange(NX)[None, :, None] == 3, np.nan, q), "NaN"),
    (lambda q: 2 * q, "unit"),
])
def test_bad_maps_raise_data_error(crystals, make, message):
    al = crystals["Al"]
    bad = make(_three_grains())
    for call in (lambda: crystal_map(bad, al), lambda: grain_boundaries(bad, al)):
        with pytest.raises(DataError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_bad_arguments_raise_data_error(crystals, tmp_path):
    al = crystals["Al"]
    q = _three_grains()
    with pytest.raises(DataError, match="confidence"):
        crystal_map(q, al, confidence=np.ones((NY, NX + 1)))
    with pytest.raises(DataError, match="NaN"):
        crystal_map(q, al, confidence=np.full((NY, NX), np.nan))
    with pytest.raises(DataError, match="step_nm"):
        crystal_map(q, al, step_nm=0)
    with pytest.raises(DataError, match="broadcast"):
        misorientation_deg(q, q[:3], al)
    with pytest.raises(DataError, match="NaN"):
        misorientation_deg(np.array([np.nan, 0, 0, 1.0]), GENERAL, al)
    with pytest.raises(DataError, match="direction"):
        ipf_rgb(q, al, direction="w")
    with pytest.raises(DataError, match="shape"):
        plot_orientation_maps(tmp_path / "x.png", [("a", q), ("b", np.zeros((3, 3)))], al)
    with pytest.raises(DataError, match="panel"):
        plot_orientation_maps(tmp_path / "x.png", [], al)
    assert not (tmp_path / "x.png").exists()
