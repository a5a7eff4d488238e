"""The lattice view: the same pattern turned any way looks the same; the frame is the one indexing uses."""

from __future__ import annotations

import pytest
import torch

from diffractnet.errors import DataError
from diffractnet.physics import SpotSimulator, zone_axis_quaternion
from diffractnet.render import Detector, render_spot_patterns
from diffractnet.render.canonical import UNIT_FRACTION, lattice_frames, lattice_view, model_view, rotate_images
from diffractnet.structures.library import get_material

TURNS_DEG = (0.0, 37.0, 123.0, 200.0)


_C = torch.arange(64) - 31.5
DISC = (_C[:, None] ** 2 + _C[None, :] ** 2 < 30**2).float()


def _patterns(name: str, zone, dose=None, generator=None) -> torch.Tensor:
    crystal = get_material(name)
    spots = SpotSimulator(200, 1.8, 20).simulate(crystal, zone_axis_quaternion(crystal, zone, inplane_deg=0))
    det = Detector(image_size_px=64, reciprocal_px_invA=0.04, intensity_power=0.5, spot_sigma_px=1.0, dose_e=dose)
    gen = generator or torch.Generator().manual_seed(0)
    return torch.cat([render_spot_patterns(spots, det, gen, rotation_deg=torch.tensor([t])) for t in TURNS_DEG])[:, None]


def test_rotate_images_turns_the_way_render_does():
    image = torch.zeros(1, 1, 33, 33)
    image[0, 0, 16, 26] = 1.0  # a spot on +x of the centre (16, 16)
    turned = rotate_images(image, torch.tensor([90.0]))
    y, x = divmod(int(turned.argmax()), 33)
    assert (x, y) == (16, 26)  # +x → +y (pixel rows grow downward), as render's rotation_deg does
    det = Detector(image_size_px=33, reciprocal_px_invA=0.1, spot_sigma_px=1.0, direct_beam=0.0)
    spot = render_spot_patterns(type("P", (), {"offsets": torch.tensor([0, 1]), "xy_invA": torch.tensor([[1.0, 0.0]]),
                                               "intensity": torch.tensor([1.0])})(), det, rotation_deg=torch.tensor([90.0]))
    assert divmod(int(spot.argmax()), 33) == (26, 16)


def test_views_and_bad_view():
    images = _patterns("Al", (0, 1, 1))
    from diffractnet.render.display import normalise

    torch.testing.assert_close(model_view(images, "plain", 0.5), normalise(images) ** 0.5)  # power after, per pixel
    assert model_view(images, "lattice").shape == images.shape
    assert model_view(images, "lattice_unit").shape == images.shape
    with pytest.raises(DataError, match="unknown input view"):
        model_view(images, "polar")


@pytest.mark.parametrize("name,zone", [("Al", (0, 1, 1)), ("W", (0, 0, 1)), ("Si", (1, 1, 1)), ("Fe3O4", (1, 1, 2)),
                                       ("Cr", (0, 1, 2))])
def test_lattice_view_is_rotation_invariant_to_within_the_noise(name, zone):
    def rel(a, b):  # inside the inscribed disc: a square image's corners come and go as it turns
        return float(((a - b).abs() * DISC).sum() / (b.abs() * DISC).sum())

    def shown(x, view="lattice"):  # what the classifier sees: the view, then brightness 0.5 per pixel
        return model_view(x, view, 0.5)[:, 0]

    clean = shown(_patterns(name, zone))
    for i in range(1, len(TURNS_DEG)):
        assert rel(clean[i], clean[0]) < 0.25, TURNS_DEG[i]  # undoing the known turn leaves 0.06-0.21 (interpolation)
    noisy = _patterns(name, zone, dose=1e4)
    view, plain = shown(noisy), shown(noisy, "plain")
    gen = torch.Generator().manual_seed(5)
    floor = rel(*[shown(_patterns(name, zone, dose=1e4, generator=gen)[:1], "plain")[0] for _ in range(2)])  # two draws
    for i in range(1, len(TURNS_DEG)):
        assert rel(view[i], view[0]) < floor + 0.15, TURNS_DEG[i]
        assert rel(plain[i], plain[0]) > floor + 0.3  # without the view, turned patterns differ far more


def test_lattice_frame_puts_the_nearest_spot_on_x_and_the_next_above():
    # a rectangle: spots at ±(8, 0) px and ±(0, 12) px, seen at 30°; the view puts (8, 0) on +x
    spots = torch.tensor([[8.0, 0.0], [-8.0, 0.0], [0.0, 12.0], [0.0, -12.0]]) * 0.05
    det = Detector(image_size_px=49, reciprocal_px_invA=0.05, spot_sigma_px=1.0, direct_beam=1.0)
    image = render_spot_patterns(type("P", (), {"offsets": torch.tensor([0, 4]), "xy_invA": spots,
                                                "intensity": torch.ones(4)})(), det, rotation_deg=torch.tensor([30.0]))
    angle, _ = lattice_frames(image[:, None])
    assert min(abs(angle.item() - 30.0), abs(abs(angle.item() - 30.0) - 180.0)) < 3.0
    view = lattice_view(image[:, None])[0, 0]
    y, x = divmod(int(view[:, 24 + 4:].argmax()), view.shape[-1] - 28)
    assert abs(x + 28 - 32) <= 1 and abs(y - 24) <= 1


def test_unit_lattice_view_removes_the_lattice_constant():
    """One W [001] pattern on detectors of 0.04 and 0.05 Å⁻¹/px (as if the cell were 25 % larger): the
    ``lattice`` views differ, the ``lattice_unit`` views agree, with the nearest spot at UNIT_FRACTION of
    the side on +x; a pattern without spots passes unzoomed."""
    crystal = get_material("W")
    spots = SpotSimulator(200, 1.8, 20).simulate(crystal, zone_axis_quaternion(crystal, (0, 0, 1), inplane_deg=20))

    def render(px):
        det = Detector(image_size_px=64, reciprocal_px_invA=px, intensity_power=0.5, spot_sigma_px=1.0)
        return render_spot_patterns(spots, det, torch.Generator().manual_seed(0))[:, None]

    def rel(a, b):
        return float(((a - b).abs() * DISC).sum() / (b.abs() * DISC).sum())

    near, far = render(0.04), render(0.05)
    unit_near, unit_far = lattice_view(near, unit=True), lattice_view(far, unit=True)
    plain_diff = rel(lattice_view(near)[0, 0], lattice_view(far)[0, 0])
    unit_diff = rel(unit_near[0, 0], unit_far[0, 0])  # what is left: spot widths zoomed by 0.95 and 1.19
    assert unit_diff < 0.5 * plain_diff, (unit_diff, plain_diff)
    _, _, length = lattice_frames(unit_near, with_length=True)
    assert length.item() == pytest.approx(UNIT_FRACTION * 64, abs=0.7)
    angle, _ = lattice_frames(unit_near)
    assert abs(angle.item()) < 3 or abs(abs(angle.item()) - 180) < 3
    blank = torch.zeros(1, 1, 64, 64)
    assert torch.equal(lattice_view(blank, unit=True), blank)


def test_training_config_accepts_every_view():
    import typing

    from diffractnet.render.canonical import VIEWS
    from diffractnet.train.config import ImageSpec

    assert set(typing.get_args(ImageSpec.model_fields["view"].annotation)) == set(VIEWS)
