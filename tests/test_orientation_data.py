"""Orientation-mapping data: scan physics (spot positions, FCC absences, dose, reproducibility, model input)
and synthetic polycrystal scans (Voronoi grains, boundaries, thickness, texture, determinism, resume
after a kill, bad input)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from diffractnet._config import validate
from diffractnet.data.polycrystal import (
    PolycrystalSpec,
    generate_polycrystal,
    grain_layout,
    load_truth,
    resolve_crystal,
    truth_path,
)
from diffractnet.data.scan_physics import ScanPhysics, add_shot_noise, preprocess_for_model, synthesize_patterns
from diffractnet.errors import ConfigError, DataError
from diffractnet.io.scans import open_scan
from diffractnet.physics.orientations import direction_cartesian, quaternion_to_matrix, zone_axis_quaternion

SIZE_PX, PX_INVA = 64, 0.04
CENTRE = (SIZE_PX - 1) / 2


def _clean_physics(**changes) -> ScanPhysics:
    """Noise-free, unperturbed, no direct beam or background: only the kinematic spots."""
    return ScanPhysics(**{"image_size_px": SIZE_PX, "reciprocal_px_invA": PX_INVA, "dose_e": None, "perturbation": 0.0,
                          "direct_beam": 0.0, "background": 0.0, **changes})


def _centroid(image: np.ndarray, x: float, y: float, half: int = 3) -> tuple[float, float, float]:
    """Intensity-weighted centroid (x, y) and summed intensity of a window around (x, y) [px]."""
    x0, y0 = int(round(x)), int(round(y))
    win = image[y0 - half:y0 + half + 1, x0 - half:x0 + half + 1]
    yy, xx = np.mgrid[y0 - half:y0 + half + 1, x0 - half:x0 + half + 1]
    total = win.sum()
    return float((win * xx).sum() / total), float((win * yy).sum() / total), float(total)


# ------------------------------------------------------------------------------------------ scan physics


@pytest.fixture(scope="module")
def al_zone_001(crystals):
    al = crystals["Al"]
    q = zone_axis_quaternion(al, (0, 0, 1))
    image = synthesize_patterns(al, q[None], _clean_physics(), thickness_A=np.array([50.0]))[0].numpy()
    return al, image


def test_al_001_spots_at_200_and_220_radii(al_zone_001):
    al, image = al_zone_001
    a = float(np.linalg.norm(al.direct_matrix_A[0]))
    r200, r220 = 2 / a / PX_INVA, 2 * np.sqrt(2) / a / PX_INVA  # |g| / (Å⁻¹ per px)
    # [001] zone, in-plane 0: lab x ∥ crystal a, so 200-type spots on the axes, 220-type on the diagonals
    expected = [(r200 * c, r200 * s) for c, s in ((1, 0), (-1, 0), (0, 1), (0, -1))]
    expected += [(r220 / np.sqrt(2) * c, r220 / np.sqrt(2) * s) for c in (1, -1) for s in (1, -1)]
    sums = []
    for dx, dy in expected:
        cx, cy, total = _centroid(image, CENTRE + dx, CENTRE + dy)
        assert abs(cx - (CENTRE + dx)) < 0.25 and abs(cy - (CENTRE + dy)) < 0.25, (dx, dy, cx, cy)
        sums.append(total)
    # the eight spots carry essentially all the intensity of the inner pattern, 200 stronger than 220
    assert min(sums[:4]) > max(sums[4:]) > 0
    # the brightest pixels of the whole pattern are the 200 spots
    ys, xs = np.unravel_index(np.argsort(image.ravel())[::-1][:4], image.shape)
    radii = np.hypot(xs - CENTRE, ys - CENTRE)
    assert np.all(np.abs(radii - r200) < 1.0)


def test_al_001_fcc_absences_100_and_110(al_zone_001):
    al, image = al_zone_001
    a = float(np.linalg.norm(al.direct_matrix_A[0]))
    r100, r110 = 1 / a / PX_INVA, np.sqrt(2) / a / PX_INVA
    peak = image.max()
    for r, angles in ((r100, (0, 90, 180, 270)), (r110, (45, 135, 225, 315))):
        for deg in angles:
            x, y = CENTRE + r * np.cos(np.radians(deg)), CENTRE + r * np.sin(np.radians(deg))
            assert image[int(round(y)), int(round(x))] < 1e-3 * peak, (r, deg)


def test_direct_beam_is_the_brightest_spot_at_the_centre(crystals):
    al = crystals["Al"]
    q = zone_axis_quaternion(al, (0, 0, 1))
    image = synthesize_patterns(al, q[None], _clean_physics(direct_beam=3.0), thickness_A=np.array([50.0]))[0].numpy()
    y, x = np.unravel_index(image.argmax(), image.shape)
    assert abs(x - CENTRE) <= 0.5 and abs(y - CENTRE) <= 0.5


def test_dose_gives_integer_counts_summing_to_the_dose(crystals):
    al = crystals["Al"]
    q = zone_axis_quaternion(al, (0, 0, 1), np.array([0.0, 30.0, 60.0]))
    dose = np.array([2e3, 2e4, 2e5])
    images = synthesize_patterns(al, q, _clean_physics(background=0.05, direct_beam=3.0), dose_e=dose,
                                 generator=torch.Generator().manual_seed(1)).numpy()
    assert np.array_equal(images, np.round(images)) and images.min() >= 0
    totals = images.sum(axis=(1, 2))
    assert np.all(np.abs(totals - dose) < 5 * np.sqrt(dose)), totals  # Poisson: σ = √dose


def test_add_shot_noise_scales_to_the_dose_and_none_is_identity():
    images = torch.rand(2, 16, 16) * 7.0
    assert add_shot_noise(images, None, None) is images
    noisy = add_shot_noise(images, [1e3, 1e5], torch.Generator().manual_seed(0))
    totals = noisy.sum(dim=(1, 2)).numpy()
    assert abs(totals[0] - 1e3) < 5 * np.sqrt(1e3) and abs(totals[1] - 1e5) < 5 * np.sqrt(1e5)
    # per-pixel means follow the image: correlation with the clean image near 1 at the high dose
    assert np.corrcoef(noisy[1].flatten(), images[1].flatten())[0, 1] > 0.95


def test_same_generator_seed_gives_identical_images(crystals):
    linio2 = crystals["LiNiO2"]
    physics = ScanPhysics(image_size_px=SIZE_PX, reciprocal_px_invA=PX_INVA)  # perturbation, thickness and noise on
    q = np.array([[0.9, 0.1, 0.3, -0.2], [0.2, 0.7, -0.5, 0.4]])
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    a = synthesize_patterns(linio2, q, physics, generator=torch.Generator().manual_seed(5))
    b = synthesize_patterns(linio2, q, physics, generator=torch.Generator().manual_seed(5))
    c = synthesize_patterns(linio2, q, physics, generator=torch.Generator().manual_seed(6))
    assert a.shape == (2, SIZE_PX, SIZE_PX)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_thickness_changes_relative_intensities(crystals):
    """Per-pattern sinc² profile: off the zone axis a thicker specimen narrows the excitation window."""
    al = crystals["Al"]
    q = zone_axis_quaternion(al, (1, 1, 2))
    q = np.stack([q, q])
    images = synthesize_patterns(al, q, _clean_physics(thickness_A=(20.0, 200.0)), thickness_A=np.array([20.0, 200.0]))
    assert not torch.allclose(images[0], images[1])


def test_preprocess_for_model_bins_scales_and_is_dose_independent(crystals):
    al = crystals["Al"]
    q = zone_axis_quaternion(al, (0, 1, 1), np.array([0.0, 20.0]))
    raw = synthesize_patterns(al, q, ScanPhysics(image_size_px=SIZE_PX, reciprocal_px_invA=PX_INVA, dose_e=None),
                              generator=torch.Generator().manual_seed(0))
    x = preprocess_for_model(raw, 32)
    assert x.shape == (2, 1, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and torch.allclose(x.amax(dim=(1, 2, 3)), torch.ones(2))
    assert torch.allclose(preprocess_for_model(raw * 1000.0, 32), x, atol=1e-5)  # mean-normalised first
    # area-average binning: the brightest binned pixel sits where the direct beam is (centre 2×2)
    y, xx = np.unravel_index(x[0, 0].argmax().item(), (32, 32))
    assert {int(y), int(xx)} <= {15, 16}
    assert preprocess_for_model(raw, SIZE_PX).shape == (2, 1, SIZE_PX, SIZE_PX)


def test_preprocess_for_model_refuses_a_size_that_does_not_divide_the_pattern():
    images = torch.rand(1, SIZE_PX, SIZE_PX)
    try:
        out = preprocess_for_model(images, 24)
    except (DataError, ValueError):
        return
    assert out.shape[-1] == 24


@pytest.mark.parametrize("thickness", [(80.0, 30.0), (0.0, 50.0), (-5.0, 10.0)])
def test_bad_thickness_range_is_a_config_error(thickness):
    with pytest.raises(ConfigError, match="thickness_A"):
        validate(ScanPhysics, {"thickness_A": list(thickness)}, "scan physics")


def test_unknown_physics_field_is_a_config_error():
    with pytest.raises(ConfigError, match="thikness"):
        validate(ScanPhysics, {"thikness_A": [30, 80]}, "scan physics")


# ------------------------------------------------------------------------------------------ polycrystal


def _spec(**changes) -> PolycrystalSpec:
    physics = ScanPhysics(image_size_px=32, reciprocal_px_invA=0.08, dose_e=2e4)
    return PolycrystalSpec(**{"material": "Al", "scan_shape": (6, 5), "n_grains": 3, "physics": physics, "seed": 3,
                              **changes})


def test_grain_layout_is_voronoi_with_soft_boundaries():
    spec = _spec(scan_shape=(40, 36), n_grains=7, boundary_width_px=1.5)
    layout = grain_layout(spec, resolve_crystal("Al"))
    grain, weight = layout.grain, layout.weight
    assert grain.shape == (40, 36, 2) and weight.shape == (40, 36)
    assert np.all(grain[..., 0] != grain[..., 1])
    assert weight.min() >= 0.5 and weight.max() <= 1.0
    assert len(np.unique(grain[..., 0])) >= 3 and (weight < 1).any() and (weight == 1).any()
    # a pixel within half a boundary width of a Voronoi edge has a pixel of another grain within 3.5 px,
    # and a pixel whose 3.5 px disk is all one grain is no boundary pixel (weight 1)
    yy, xx = np.mgrid[-4:5, -4:5]
    disk = [(dy, dx) for dy, dx in zip(yy.ravel(), xx.ravel()) if dy * dy + dx * dx <= 3.5**2]
    ny, nx = weight.shape
    checked = {"boundary": 0, "inside": 0}
    for y in range(ny):
        for x in range(nx):
            near = {grain[y + dy, x + dx, 0] for dy, dx in disk if 0 <= y + dy < ny and 0 <= x + dx < nx}
            if y < 4 or x < 4 or y >= ny - 4 or x >= nx - 4:  # the other side may lie outside the scan
                continue
            if weight[y, x] < 1:
                assert len(near) > 1, (y, x)
                checked["boundary"] += 1
            if near == {grain[y, x, 0]}:
                assert weight[y, x] == 1.0, (y, x)
                checked["inside"] += 1
    assert checked["boundary"] > 20 and checked["inside"] > 100, checked


def test_grain_layout_thickness_spans_the_physics_range_and_is_smooth():
    spec = _spec(scan_shape=(32, 32), physics=ScanPhysics(thickness_A=(25.0, 90.0)), thickness_wavelength_px=40.0)
    layout = grain_layout(spec, resolve_crystal("Al"))
    t = layout.thickness_A
    assert t.shape == (32, 32)
    assert t.min() == pytest.approx(25.0) and t.max() == pytest.approx(90.0)
    # smooth: neighbours differ by far less than the range (4 plane waves of 40 px wavelength)
    assert np.abs(np.diff(t, axis=0)).max() < 0.35 * 65 and np.abs(np.diff(t, axis=1)).max() < 0.35 * 65
    q = layout.grain_quaternions
    assert q.shape == (spec.n_grains, 4) and np.allclose(np.linalg.norm(q, axis=1), 1)
    assert np.array_equal(layout.truth_quaternions(), q[layout.grain[..., 0]])


@pytest.mark.parametrize("material, axis", [("Al", (0, 0, 1)), ("Al", (1, 1, 1)), ("LiNiO2", (0, 0, 1)),
                                            ("LiNiO2", (1, 0, 0))])
def test_fiber_texture_without_spread_puts_the_axis_along_the_beam(material, axis):
    spec = _spec(material=material, n_grains=12, texture={"kind": "fiber", "axis_uvw": axis, "spread_deg": 0.0})
    crystal = resolve_crystal(material)
    q = grain_layout(spec, crystal).grain_quaternions
    beam_in_crystal = quaternion_to_matrix(torch.from_numpy(q))[:, :, 2].numpy()  # R ẑ
    d = direction_cartesian(crystal, axis)
    assert np.allclose(beam_in_crystal @ d, 1.0, atol=1e-6)
    # the in-plane angle is random: the grains are not all the same orientation
    x_in_crystal = quaternion_to_matrix(torch.from_numpy(q))[:, :, 0].numpy()
    assert np.ptp(x_in_crystal, axis=0).max() > 0.5


def test_fiber_texture_spread_stays_inside_the_cone():
    spec = _spec(n_grains=40, texture={"kind": "fiber", "axis_uvw": (0, 0, 1), "spread_deg": 10.0})
    crystal = resolve_crystal("Al")
    q = grain_layout(spec, crystal).grain_quaternions
    beam = quaternion_to_matrix(torch.from_numpy(q))[:, :, 2].numpy()
    angle = np.degrees(np.arccos(np.clip(beam @ direction_cartesian(crystal, (0, 0, 1)), -1, 1)))
    assert angle.max() <= 10.0 + 1e-6 and angle.max() > 2.0


def test_generate_polycrystal_writes_scan_and_truth_deterministically(tmp_path):
    spec = _spec()
    a = generate_polycrystal(spec, tmp_path / "a.zarr", rows_per_block=2)
    b = generate_polycrystal(spec, tmp_path / "b.zarr", rows_per_block=3)
    c = generate_polycrystal(_spec(seed=4), tmp_path / "c.zarr", rows_per_block=2)
    scan_a, scan_b = open_scan(a), open_scan(b)
    assert scan_a.scan_shape == (6, 5) and scan_a.pattern_shape == (32, 32)
    assert scan_a.reciprocal_px_invA == pytest.approx(0.08) and scan_a.voltage_kV == pytest.approx(200.0)
    assert scan_a.scan_step_nm == pytest.approx(spec.scan_step_nm)
    data_a = np.asarray(scan_a.data)
    # noise seeded by the first row of the block: same blocks, same data; both are integer counts
    assert np.array_equal(data_a, np.round(data_a)) and data_a.sum() > 0
    again = generate_polycrystal(spec, tmp_path / "a2.zarr", rows_per_block=2)
    assert np.array_equal(data_a, np.asarray(open_scan(again).data))
    assert not np.array_equal(data_a, np.asarray(open_scan(c).data))
    # another blocking: the same grains, weights and thickness (the noise may be drawn differently)
    data_b = np.asarray(scan_b.data)
    assert data_b.shape == data_a.shape
    assert np.corrcoef(data_a.ravel(), data_b.ravel())[0, 1] > 0.9
    truth = load_truth(a)
    assert truth_path(a).is_file() and truth_path(a).name == "a.zarr.truth.npz"
    layout = grain_layout(spec, resolve_crystal("Al"))
    assert np.array_equal(truth["quaternions"], layout.truth_quaternions())
    assert np.array_equal(truth["grain"], layout.grain[..., 0])
    assert np.allclose(truth["weight"], layout.weight) and np.allclose(truth["thickness_A"], layout.thickness_A)
    assert int(truth["space_group"]) == 225 and str(truth["material"]) == "Al"


def test_generate_polycrystal_per_pattern_dose(tmp_path):
    spec = _spec(physics=ScanPhysics(image_size_px=32, reciprocal_px_invA=0.08, dose_e=3e3))
    data = np.asarray(open_scan(generate_polycrystal(spec, tmp_path / "s.zarr", rows_per_block=2)).data)
    totals = data.sum(axis=(2, 3))
    assert np.all(np.abs(totals - 3e3) < 5 * np.sqrt(3e3))


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import diffractnet.data.polycrystal as poly
    from diffractnet.data.polycrystal import PolycrystalSpec
    real, calls = poly.render_rows, []
    def render_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first block is written; die while rendering the second
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    poly.render_rows = render_then_die
    spec = PolycrystalSpec.model_validate_json(sys.argv[1])
    poly.generate_polycrystal(spec, sys.argv[2], rows_per_block=2)
""")


def test_generate_polycrystal_resumes_after_a_kill(tmp_path, monkeypatch):
    import diffractnet.data.polycrystal as poly

    spec = _spec()
    path = tmp_path / "killed.zarr"
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, spec.model_dump_json(), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    partial = path.with_name(path.name + ".partial")
    assert partial.is_dir() and not path.exists() and not truth_path(path).exists()
    import zarr

    assert list(zarr.open_group(str(partial), mode="r")["rows_done"][:].astype(bool)) == [True, False, False]

    rendered = []
    real = poly.render_rows

    def counting(spec_, crystal, layout, y0, y1):
        rendered.append((y0, y1))
        return real(spec_, crystal, layout, y0, y1)

    monkeypatch.setattr(poly, "render_rows", counting)
    resumed = generate_polycrystal(spec, path, rows_per_block=2)
    assert rendered == [(2, 4), (4, 6)]  # the finished block was kept, not rendered again
    assert resumed == path and not partial.exists()
    monkeypatch.setattr(poly, "render_rows", real)
    whole = generate_polycrystal(spec, tmp_path / "whole.zarr", rows_per_block=2)
    assert np.array_equal(np.asarray(open_scan(path).data), np.asarray(open_scan(whole).data))
    assert np.array_equal(load_truth(path)["quaternions"], load_truth(whole)["quaternions"])


def _interrupt_after_first_block(spec, path, monkeypatch) -> None:
    """Leave ``<path>.partial`` with only the first block of 2 rows done, as a kill would."""
    import diffractnet.data.polycrystal as poly

    real, calls = poly.render_rows, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(poly, "render_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate_polycrystal(spec, path, rows_per_block=2)
    monkeypatch.setattr(poly, "render_rows", real)


def test_resume_with_another_blocking_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    _interrupt_after_first_block(_spec(), path, monkeypatch)
    with pytest.raises(DataError, match="other settings"):
        generate_polycrystal(_spec(), path, rows_per_block=3)


def test_resume_with_another_spec_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    _interrupt_after_first_block(_spec(), path, monkeypatch)
    with pytest.raises(DataError):
        generate_polycrystal(_spec(seed=4, n_grains=5), path, rows_per_block=2)


def test_generate_polycrystal_bad_path_and_existing_scan(tmp_path):
    with pytest.raises(DataError, match=r"\.zarr"):
        generate_polycrystal(_spec(), tmp_path / "scan.npy")
    path = generate_polycrystal(_spec(scan_shape=(2, 2)), tmp_path / "done.zarr")
    with pytest.raises(DataError, match="already exists"):
        generate_polycrystal(_spec(scan_shape=(2, 2)), path)


def test_load_truth_missing_and_damaged(tmp_path):
    with pytest.raises(DataError, match="no ground truth"):
        load_truth(tmp_path / "nothing.zarr")
    bad = tmp_path / "bad.zarr.truth.npz"
    bad.write_bytes(b"not an npz file")
    with pytest.raises(DataError, match="damaged"):
        load_truth(tmp_path / "bad.zarr")


@pytest.mark.parametrize("changes", [{"n_grains": 0}, {"texture": {"kind": "spiral"}},
                                     {"texture": {"kind": "fiber", "spread_deg": 120}}, {"scan_step_nm": 0},
                                     {"physics": {"thickness_A": [50, 10]}}, {"grains": 3}])
def test_bad_polycrystal_spec_is_a_config_error(changes):
    with pytest.raises(ConfigError):
        validate(PolycrystalSpec, {"material": "Al", **changes}, "polycrystal spec")


def test_load_polycrystal_spec_from_yaml(tmp_path):
    from diffractnet.data.polycrystal import load_polycrystal_spec

    path = tmp_path / "spec.yaml"
    path.write_text("material: Al\nscan_shape: [4, 5]\nn_grains: 2\nphysics: {image_size_px: 32}\n")
    spec = load_polycrystal_spec(path)
    assert spec.scan_shape == (4, 5) and spec.physics.image_size_px == 32
    path.write_text("material: Al\nscan_shape: [4, 5]\nn_grain: 2\n")
    with pytest.raises(ConfigError, match="n_grain"):
        load_polycrystal_spec(path)
