"""Renderer: geometry (scale, rotation, centre), intensity bookkeeping, noise, detector errors."""

from __future__ import annotations

import math

import pytest
import torch

from diffractnet.errors import RenderError
from diffractnet.physics.wavelength import electron_wavelength_A
from diffractnet.render import Detector, render_patterns
from diffractnet.render.detector import reciprocal_px_from_camera


def _one_spot(gx=0.1, gy=0.0, intensity=1.0):
    return torch.tensor([0, 1]), torch.tensor([[gx, gy]]), torch.tensor([intensity])


def _peak_xy(image):
    flat = int(image.argmax())
    return flat % image.shape[1], flat // image.shape[1]


def test_spot_lands_where_geometry_says():
    det = Detector(image_size_px=65, reciprocal_px_invA=0.01, direct_beam=0.0, spot_sigma_px=0.8)
    offsets, xy, inten = _one_spot(0.1, 0.0)
    image = render_patterns(offsets, xy, inten, det)[0]
    centre = (65 - 1) / 2  # odd size: the direct beam sits on a pixel centre
    assert _peak_xy(image) == (round(centre + 10), round(centre))
    # 90° in-plane rotation takes +x to +y; a centre shift moves the whole pattern
    rotated = render_patterns(offsets, xy, inten, det, rotation_deg=torch.tensor([90.0]),
                              center_shift_px=torch.tensor([[3.0, -5.0]]))[0]
    assert _peak_xy(rotated) == (round(centre + 3), round(centre - 5 + 10))
    # doubling the reciprocal pixel size halves the distance from the centre
    scaled = render_patterns(offsets, xy, inten, det, reciprocal_px_invA=torch.tensor([0.02]))[0]
    assert _peak_xy(scaled) == (round(centre + 5), round(centre))


def test_camera_length_conversion():
    px = reciprocal_px_from_camera(camera_length_mm=100, pixel_size_um=55, voltage_kV=200)
    assert px == pytest.approx(55e-6 / (0.1 * electron_wavelength_A(200)))
    det = Detector.from_camera(100, 55, 200, image_size_px=64)
    assert det.reciprocal_px_invA == pytest.approx(px)
    for bad in [dict(camera_length_mm=0, pixel_size_um=55), dict(camera_length_mm=-5, pixel_size_um=55),
                dict(camera_length_mm=100, pixel_size_um=0)]:
        with pytest.raises(RenderError):
            reciprocal_px_from_camera(voltage_kV=200, **bad)


def test_noise_free_total_is_the_sum_of_relative_intensities():
    det = Detector(image_size_px=64, reciprocal_px_invA=0.01, direct_beam=0.5)
    offsets = torch.tensor([0, 2, 3])
    xy = torch.tensor([[0.1, 0.0], [0.0, -0.12], [0.05, 0.05]])
    inten = torch.tensor([4.0, 2.0, 7.0])
    images = render_patterns(offsets, xy, inten, det)
    # pattern 0: 1 + 0.5 (scaled to its strongest) + direct beam 0.5; pattern 1: 1 + 0.5
    assert images[0].sum().item() == pytest.approx(2.0, rel=1e-3)
    assert images[1].sum().item() == pytest.approx(1.5, rel=1e-3)
    single = render_patterns(torch.tensor([0, 1]), xy[2:], inten[2:], det)[0]
    torch.testing.assert_close(images[1], single)


def test_psf_beam_stop_background_and_dose():
    offsets, xy, inten = _one_spot(0.15, 0.0)
    base = Detector(image_size_px=64, reciprocal_px_invA=0.01, direct_beam=1.0)
    sharp = render_patterns(offsets, xy, inten, base)[0]
    blurred = render_patterns(offsets, xy, inten, base.with_(psf_sigma_px=2.0))[0]
    assert blurred.sum().item() == pytest.approx(sharp.sum().item(), rel=1e-3)
    assert blurred.max() < 0.5 * sharp.max()
    stopped = render_patterns(offsets, xy, inten, base.with_(beam_stop_radius_px=4.0))[0]
    assert stopped[29:35, 29:35].sum() == 0 and stopped.sum() > 0.9
    with_bg = render_patterns(offsets, xy, inten, base.with_(background=0.2))[0]
    assert with_bg[0, 0] > 0 and with_bg.sum() > sharp.sum()
    gen = torch.Generator().manual_seed(0)
    noisy = render_patterns(torch.tensor([0, 1] + [1] * 63), xy, inten, base.with_(dose_e=1000.0), generator=gen)
    assert torch.equal(noisy, noisy.round())
    assert noisy.sum(dim=(1, 2)).mean().item() == pytest.approx(1000, rel=0.02)


@pytest.mark.parametrize("kwargs", [dict(image_size_px=4), dict(reciprocal_px_invA=0), dict(spot_sigma_px=-1),
                                    dict(background=-0.1), dict(dose_e=0), dict(psf_sigma_px=math.nan)])
def test_bad_detector_settings(kwargs):
    with pytest.raises(RenderError):
        Detector(**kwargs)


def test_mismatched_spot_arrays():
    with pytest.raises(RenderError, match="do not match"):
        render_patterns(torch.tensor([0, 3]), torch.zeros(2, 2), torch.ones(2), Detector())


def test_shot_noise_is_drawn_on_linear_intensities():
    """A detector counts electrons linearly: a spot of 1 % of the strongest gets 1 % of its counts at any
    display power (drawing the noise after the power would give it 0.01 ** 0.15 ≈ 50 %)."""
    n = 400
    xy = torch.tensor([[0.2, 0.0], [-0.2, 0.1]]).repeat(n, 1)
    offsets, inten = torch.arange(0, 2 * n + 1, 2), torch.tensor([1.0, 0.01]).repeat(n)
    det = Detector(image_size_px=64, reciprocal_px_invA=0.01, direct_beam=0.0, intensity_power=0.15, dose_e=2e4)
    mean = render_patterns(offsets, xy, inten, det, generator=torch.Generator().manual_seed(1)).mean(0)
    strong, weak = mean[27:38, 46:57].sum(), mean[37:48, 6:17].sum()  # 11×11 boxes round (51.5, 31.5), (11.5, 41.5)
    assert float(weak / strong) == pytest.approx(0.01, rel=0.15)


def test_display_normalises_then_brightens_per_pixel():
    from diffractnet.render.display import brighten, normalise

    images = torch.tensor([[[2.0, 3.0], [6.0, 10.0]], [[5.0, 5.0], [5.0, 5.0]]])
    shown = brighten(normalise(images), 0.5)
    torch.testing.assert_close(shown[0], torch.tensor([[0.0, (1 / 8) ** 0.5], [0.5**0.5, 1.0]]))
    assert torch.equal(shown[1], torch.zeros(2, 2))  # a blank image stays blank, never NaN
    assert brighten(shown, 1.0) is shown
