"""Nanobeam / precession 4D-STEM patterns of one crystal at many orientations, as a detector records them.

One function serves both the synthetic scans (``data.polycrystal``) and the orientation training
stream (``data.orientation_stream``), so a model trains on exactly what it will be asked to read:
kinematic spots (``physics.spots``) with a per-pattern thickness (sinc² profile recomputed per
pattern), a random log-normal factor per spot imitating dynamical intensity changes, diffuse
background, a bright direct beam and Poisson noise at a given dose (``render``).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, model_validator

from diffractnet._config import StrictModel
from diffractnet.errors import DataError
from diffractnet.physics.spots import SpotSimulator
from diffractnet.render.detector import Detector
from diffractnet.render.images import render_patterns
from diffractnet.structures.crystal import Crystal


class ScanPhysics(StrictModel):
    """Microscope, specimen and detector of a 4D-STEM experiment.

    ``thickness_A`` (min, max) range of specimen thickness [Å]; ``perturbation`` σ of the log-normal
    per-spot intensity factor (0: pure kinematic); ``precession_deg`` precession angle (0: nanobeam);
    ``image_size_px`` detector side; ``reciprocal_px_invA`` Å⁻¹ per detector pixel; ``dose_e``
    electrons per pattern (None: noise-free); ``direct_beam`` and ``background`` relative to the
    strongest diffracted spot.
    """

    voltage_kV: float = Field(200.0, gt=0)
    g_max_invA: float = Field(1.4, gt=0)
    thickness_A: tuple[float, float] = (30.0, 80.0)
    perturbation: float = Field(0.3, ge=0, le=2)
    precession_deg: float = Field(0.0, ge=0, lt=10)
    image_size_px: int = Field(128, ge=16, le=1024)
    reciprocal_px_invA: float = Field(0.02, gt=0)
    spot_sigma_px: float = Field(1.2, gt=0)
    direct_beam: float = Field(3.0, ge=0)
    background: float = Field(0.05, ge=0)
    dose_e: float | None = Field(5e4, gt=0)

    @model_validator(mode="after")
    def _thickness_range(self) -> "ScanPhysics":
        lo, hi = self.thickness_A
        if not 0 < lo <= hi:
            raise ValueError(f"thickness_A must be (min, max) with 0 < min <= max, got {self.thickness_A}")
        return self

    def detector(self) -> Detector:
        """The ``render.Detector`` of this set-up (linear intensities; noise added per pattern)."""
        return Detector(image_size_px=self.image_size_px, reciprocal_px_invA=self.reciprocal_px_invA,
                        spot_sigma_px=self.spot_sigma_px, intensity_power=1.0, direct_beam=self.direct_beam,
                        background=self.background, background_decay_px=self.image_size_px / 6)

    def simulator(self, device: str | torch.device = "cpu") -> SpotSimulator:
        """Spot simulator with a flat profile out to the thinnest specimen's first sinc² zero (1/t_min);
        the per-pattern sinc² is applied in ``synthesize_patterns``."""
        if self.precession_deg > 0:  # precession integrates the profile itself: one mean thickness
            return SpotSimulator(self.voltage_kV, self.g_max_invA, float(np.mean(self.thickness_A)),
                                 precession_angle_deg=self.precession_deg, device=device)
        return SpotSimulator(self.voltage_kV, self.g_max_invA, self.thickness_A[0],
                             max_excitation_error_invA=1.0 / self.thickness_A[0], profile="flat", device=device)


def synthesize_patterns(crystal: Crystal, quaternions: np.ndarray, physics: ScanPhysics, *,
                        thickness_A: np.ndarray | None = None, dose_e: np.ndarray | float | None = None,
                        generator: torch.Generator | None = None, simulator: SpotSimulator | None = None) -> torch.Tensor:
    """(B, H, W) float32 detector images of ``crystal`` at ``quaternions`` (B, 4).

    ``thickness_A`` (B,) per pattern (default: drawn uniformly in the physics range); ``dose_e`` per
    pattern or one value (default: the physics dose; None there means noise-free). ``generator``
    makes the perturbation, thickness and noise reproducible.
    """
    q = np.asarray(quaternions, dtype=np.float64).reshape(-1, 4)
    n = len(q)
    sim = simulator or physics.simulator()
    spots = sim.simulate(crystal, q)
    if thickness_A is None:
        lo, hi = physics.thickness_A
        thickness_A = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64).numpy()
    weight = spots.intensity.double()
    idx = spots.pattern_index()
    if physics.precession_deg == 0:
        t = torch.as_tensor(np.asarray(thickness_A, dtype=np.float64))[idx]
        weight = weight * torch.sinc(t * spots.excitation_error_invA.double()) ** 2  # sinc(x) = sin(πx)/(πx)
    if physics.perturbation > 0 and len(weight):
        weight = weight * torch.exp(physics.perturbation * torch.randn(len(weight), generator=generator,
                                                                       dtype=torch.float64))
    detector = physics.detector()
    dose = physics.dose_e if dose_e is None else dose_e
    dose_arg = None if dose is None else torch.as_tensor(np.broadcast_to(np.asarray(dose, dtype=np.float64), (n,)).copy())
    offsets, xy = spots.offsets, spots.xy_invA
    if len(weight) == 0:  # no diffracted spot at all: the direct beam alone
        offsets, xy, weight = torch.zeros(n + 1, dtype=torch.int64), torch.zeros(0, 2), torch.zeros(0)
    return render_patterns(offsets, xy, weight.float(), detector, dose_e=dose_arg, generator=generator)


def add_shot_noise(images: torch.Tensor, dose_e, generator: torch.Generator | None) -> torch.Tensor:
    """Poisson counts with ``dose_e`` electrons per pattern in expectation (scalar or (B,); None: as is)."""
    if dose_e is None:
        return images
    dose = torch.as_tensor(np.broadcast_to(np.asarray(dose_e, dtype=np.float64), (len(images),)).copy()).float()
    total = images.sum(dim=(1, 2), keepdim=True).clamp(min=1e-30)
    return torch.poisson(images * (dose[:, None, None] / total), generator=generator)


def preprocess_for_model(images: torch.Tensor, size_px: int) -> torch.Tensor:
    """(B, H, W) detector counts → (B, 1, size_px, size_px) model input in [0, 1].

    Area-average binning to ``size_px`` (H must be a multiple of it), normalisation by the mean count
    (dose-independent), log scaling as seed 000 does (log1p), then division by the maximum.
    """
    if images.shape[-1] != images.shape[-2] or images.shape[-1] % size_px:
        raise DataError(f"patterns of {images.shape[-2]}x{images.shape[-1]} px cannot be binned to {size_px} px; "
                        f"use square patterns whose side is a multiple of {size_px}")
    x = images.float()[:, None]
    factor = x.shape[-1] // size_px
    if factor > 1:
        x = torch.nn.functional.avg_pool2d(x, factor)
    x = x / x.mean(dim=(2, 3), keepdim=True).clamp(min=1e-12)
    x = torch.log1p(x)
    return x / x.amax(dim=(2, 3), keepdim=True).clamp(min=1e-12)
