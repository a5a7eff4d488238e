"""Neighbour-pattern averaging: exact 4-neighbour means, edges with fewer neighbours, blocks agree."""

from __future__ import annotations

import dask.array as da
import numpy as np

from diffractnet.index.pattern_averaging import averaged_rows
from diffractnet.io.scans import Scan


def _scan(data: np.ndarray) -> Scan:
    return Scan(da.from_array(data, chunks=(2, -1, -1, -1)), 0.02, 200.0, 1.0, None, {})


def _reference(data: np.ndarray) -> np.ndarray:
    """Direct loop: mean of the pattern and its in-scan up/down/left/right neighbours."""
    ny, nx = data.shape[:2]
    out = np.empty_like(data)
    for y in range(ny):
        for x in range(nx):
            near = [(y, x)] + [(y + dy, x + dx) for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))
                               if 0 <= y + dy < ny and 0 <= x + dx < nx]
            out[y, x] = np.mean([data[p] for p in near], axis=0)
    return out


def test_averaged_rows_match_the_direct_mean_at_edges_and_across_blocks():
    rng = np.random.default_rng(3)
    data = rng.poisson(3.0, size=(7, 5, 4, 4)).astype(np.float32)
    scan = _scan(data)
    expected = _reference(data)
    np.testing.assert_allclose(averaged_rows(scan, 0, 7), expected, rtol=1e-6)
    blocks = np.concatenate([averaged_rows(scan, y0, min(7, y0 + 3)) for y0 in range(0, 7, 3)])
    np.testing.assert_allclose(blocks, expected, rtol=1e-6)
    # a corner pattern is the mean of 3, an edge one of 4, an interior one of 5
    np.testing.assert_allclose(expected[0, 0], (data[0, 0] + data[1, 0] + data[0, 1]) / 3, rtol=1e-6)


def test_averaging_a_single_row_scan_uses_left_and_right_only():
    data = np.arange(3 * 2 * 2, dtype=np.float32).reshape(1, 3, 2, 2)
    out = averaged_rows(_scan(data), 0, 1)
    np.testing.assert_allclose(out[0, 1], data[0].mean(0))
    np.testing.assert_allclose(out[0, 0], data[0, :2].mean(0))


def test_averaging_cuts_shot_noise_inside_a_uniform_grain():
    rng = np.random.default_rng(0)
    data = rng.poisson(20.0, size=(9, 9, 8, 8)).astype(np.float32)
    out = averaged_rows(_scan(data), 0, 9)
    ratio = data[1:-1, 1:-1].std() / out[1:-1, 1:-1].std()
    assert 1.9 < ratio < 2.6  # sqrt(5) = 2.24 for independent noise
