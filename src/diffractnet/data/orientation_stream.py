"""Training batches for orientation regression: simulated on the fly, or from a labelled scan.

Both datasets take a *list* of indices and return one batch ``(images (B, 1, S, S), rotations (B, 3, 3))``
(used with ``train.datamodule.EpochBatches`` and ``batch_size=None``), so rendering is batched.

- ``SimulatedOrientations``: index i → an orientation uniform on SO(3), fixed by (seed, i); each call
  draws a fresh thickness, spot perturbation, dose and (for ``mix_fraction`` of the patterns) a
  second grain overlapping it, as at a grain boundary. ``fixed_noise`` makes a call reproducible
  (validation).
- ``LabelledScanPatterns``: the patterns of a scan whose labels came from template matching, keeping
  only the most confident fraction (seed 000's finding: fewer, better labels train better).
"""

from __future__ import annotations

import numpy as np
import torch

from diffractnet.data.scan_physics import ScanPhysics, add_shot_noise, preprocess_for_model, synthesize_patterns
from diffractnet.errors import DataError
from diffractnet.physics.orientations import quaternion_to_matrix, random_quaternions

VIRTUAL_SIZE = 1_000_000


def index_quaternions(seed: int, indices: list[int]) -> np.ndarray:
    """(B, 4) orientations uniform on SO(3), each fixed by (seed, index)."""
    return np.concatenate([random_quaternions(1, np.random.default_rng([seed, int(i)])) for i in indices])


class SimulatedOrientations(torch.utils.data.Dataset):
    """Endless simulated patterns of one crystal (``VIRTUAL_SIZE`` distinct orientations); ``transform``
    turns (B, H, W) detector images into the network input (default: binned, log-scaled images)."""

    def __init__(self, crystal, physics: ScanPhysics, input_size_px: int, *, seed: int = 0,
                 dose_range_e: tuple[float, float] | None = None, mix_fraction: float = 0.1,
                 fixed_noise: bool = False, size: int = VIRTUAL_SIZE, transform=None) -> None:
        self.crystal, self.physics, self.input_size_px = crystal, physics, int(input_size_px)
        self.seed, self.dose_range_e, self.mix_fraction = seed, dose_range_e, float(mix_fraction)
        self.fixed_noise, self.size = fixed_noise, int(size)
        self._simulator = None
        self.transform = transform or (lambda images: preprocess_for_model(images, self.input_size_px))

    def __len__(self) -> int:
        return self.size

    def _generator(self, indices: list[int]) -> torch.Generator:
        if self.fixed_noise:
            return torch.Generator().manual_seed(int(np.random.default_rng([self.seed, *indices[:4]]).integers(2**62)))
        return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        indices = [int(i) for i in np.atleast_1d(indices)]
        gen = self._generator(indices)
        if self._simulator is None:
            self._simulator = self.physics.simulator()
        q = index_quaternions(self.seed, indices)
        n = len(q)
        dose = None
        if self.dose_range_e is not None and self.physics.dose_e is not None:
            lo, hi = np.log(self.dose_range_e[0]), np.log(self.dose_range_e[1])
            dose = np.exp(lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64).numpy())
        clean = self.physics.model_copy(update={"dose_e": None})
        images = synthesize_patterns(self.crystal, q, clean, generator=gen, simulator=self._simulator)
        mix = torch.rand(n, generator=gen) < self.mix_fraction
        if mix.any():
            other_q = random_quaternions(int(mix.sum()), int(torch.randint(0, 2**31, (1,), generator=gen)))
            w = 0.5 + 0.4 * torch.rand(int(mix.sum()), generator=gen)  # the labelled grain dominates
            other = synthesize_patterns(self.crystal, other_q, clean, generator=gen, simulator=self._simulator)
            images[mix] = images[mix] * w[:, None, None] + other * (1 - w)[:, None, None]
        images = add_shot_noise(images, self.physics.dose_e if dose is None else dose, gen)
        rotations = quaternion_to_matrix(torch.from_numpy(q)).float()
        return self.transform(images), rotations


class LabelledScanPatterns(torch.utils.data.Dataset):
    """Patterns of a scan with orientation labels, keeping the ``keep_fraction`` most confident.

    ``patterns`` (ny, nx, H, W) array-like (numpy or dask; only kept positions are read), ``quaternions``
    (ny, nx, 4) labels, ``confidence`` (ny, nx) (e.g. template-matching correlation).
    """

    def __init__(self, patterns, quaternions: np.ndarray, confidence: np.ndarray, input_size_px: int,
                 keep_fraction: float = 1.0, transform=None) -> None:
        from diffractnet.index.template import select_confident

        q, conf = np.asarray(quaternions, dtype=np.float64), np.asarray(confidence, dtype=np.float64)
        if q.shape[:-1] != conf.shape or q.shape[:2] != tuple(patterns.shape[:2]) or q.shape[-1] != 4:
            raise DataError(f"labels {q.shape} / confidence {conf.shape} do not match the scan {tuple(patterns.shape)}")
        keep = select_confident(conf, keep_fraction)
        ys, xs = np.nonzero(keep)
        self.positions = np.stack([ys, xs], 1)
        rows = [np.asarray(patterns[y, x], dtype=np.float32) for y, x in self.positions]
        raw = torch.from_numpy(np.stack(rows))
        self.images = transform(raw) if transform is not None else preprocess_for_model(raw, input_size_px)
        self.rotations = quaternion_to_matrix(torch.from_numpy(q[keep])).float()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(np.atleast_1d(indices), dtype=torch.long)
        return self.images[idx], self.rotations[idx]
