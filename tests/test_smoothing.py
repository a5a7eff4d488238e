"""Grain-aware smoothing of orientation maps: noise averaged, outliers outvoted, boundaries kept."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_crystal
from diffractnet.analysis.misorientation import _multiply, laue_rotations, misorientation_deg
from diffractnet.errors import DataError
from diffractnet.index.smoothing import smooth_orientation_map
from diffractnet.physics.orientations import random_quaternions


def _turn(q: np.ndarray, sigma_deg: float, rng: np.random.Generator) -> np.ndarray:
    """q composed with small random rotations (Gaussian rotation vectors, σ per axis)."""
    v = np.radians(sigma_deg) * rng.standard_normal((*q.shape[:-1], 3))
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    d = np.concatenate([np.cos(angle / 2), np.sin(angle / 2) * v / np.maximum(angle, 1e-12)], -1)
    return _multiply(d, q)


def _two_grains(crystal, rng, size=(16, 20), noise_deg=0.4, outliers=0.1):
    a, b = random_quaternions(2, seed=5)
    truth = np.where((np.arange(size[1]) < size[1] // 2)[None, :, None], a, b) * np.ones((*size, 1))
    noisy = _turn(truth, noise_deg, rng)
    wrong = rng.random(size) < outliers
    noisy[wrong] = random_quaternions(int(wrong.sum()), seed=6)
    # symmetry-equivalent descriptions of the same orientation must count as agreeing
    rot = laue_rotations(crystal)
    pick = rng.integers(0, len(rot), size)
    noisy = _multiply(rot[pick], noisy)
    return truth, noisy, wrong


def test_smoothing_averages_noise_outvotes_outliers_and_keeps_the_boundary():
    crystal, rng = make_crystal("Al"), np.random.default_rng(0)
    truth, noisy, wrong = _two_grains(crystal, rng)
    before = misorientation_deg(noisy, truth, crystal)
    smoothed, support = smooth_orientation_map(noisy, crystal, radius_px=1, max_deg=2.0)
    after = misorientation_deg(smoothed, truth, crystal)
    assert np.median(after) < 0.6 * np.median(before[~wrong])  # averaging 3×3 agreeing neighbours
    assert (after[wrong] < 2.0).mean() > 0.9  # isolated wrong pixels take their grain's orientation
    boundary = after[:, 9:11]  # the two columns either side of the boundary keep their own grain
    assert np.median(boundary) < 1.0 and (boundary < 3.0).mean() > 0.9
    assert support.shape == truth.shape[:2] and 0 <= support.min() and support.max() <= 1
    assert support[wrong].mean() < support[~wrong].mean()


def test_blocks_give_the_same_map_and_zero_weight_pixels_do_not_vote():
    crystal, rng = make_crystal("LiNiO2"), np.random.default_rng(1)
    truth, noisy, wrong = _two_grains(crystal, rng, size=(9, 12), outliers=0.15)
    whole, _ = smooth_orientation_map(noisy, crystal, rows_per_block=100)
    rows, _ = smooth_orientation_map(noisy, crystal, rows_per_block=1)
    assert np.allclose(misorientation_deg(whole, rows, crystal), 0, atol=1e-6)
    # a weight-0 pixel is still assigned but adds nothing: blanking the outliers' votes leaves the rest as good
    weights = np.where(wrong, 0.0, 1.0)
    trusted, _ = smooth_orientation_map(noisy, crystal, weights=weights)
    assert np.median(misorientation_deg(trusted, truth, crystal)) <= np.median(misorientation_deg(whole, truth, crystal)) + 0.05


def test_bad_maps_are_clear_errors():
    crystal = make_crystal("Al")
    good = random_quaternions(12, seed=1).reshape(3, 4, 4)
    with pytest.raises(DataError, match=r"\(rows, columns, 4\)"):
        smooth_orientation_map(good.reshape(12, 4), crystal)
    bad = good.copy()
    bad[1, 1, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        smooth_orientation_map(bad, crystal)
    with pytest.raises(DataError, match="weights"):
        smooth_orientation_map(good, crystal, weights=-np.ones((3, 4)))
    with pytest.raises(DataError, match="radius_px"):
        smooth_orientation_map(good, crystal, radius_px=0)


@pytest.mark.parametrize("name, radius", [("Al", 1), ("LiNiO2", 2)])
def test_close_pairs_from_offset_maps_equal_the_pairwise_comparison_in_each_window(name, radius):
    """The 81 difference maps give, for every pixel (edges and block seams included), the same
    within-``max_deg`` pairs as comparing all W² pairs of its window directly."""
    from diffractnet.index.smoothing import _aligned, _close_pairs, _windows

    crystal, rng = make_crystal(name), np.random.default_rng(2)
    _, noisy, _ = _two_grains(crystal, rng, size=(7, 9), noise_deg=1.5, outliers=0.2)
    rotations = laue_rotations(crystal)
    stack, mask = _windows(noisy, radius)
    _, pair = _aligned(stack, stack[..., None, :, :], rotations)
    direct = (pair < 2.0) & mask[..., None, :] & mask[..., :, None]
    assert 0.05 < direct[mask].mean() < 0.95  # both outcomes occur
    padded = np.pad(noisy, ((2 * radius, 2 * radius), (2 * radius, 2 * radius), (0, 0)))
    for y0, y1 in [(0, 7), (0, 2), (2, 5), (6, 7)]:
        close = _close_pairs(padded, y0, y1, radius, rotations, 2.0)
        m = mask[y0:y1]
        assert np.array_equal(close & m[..., None, :] & m[..., :, None], direct[y0:y1]), (y0, y1)
