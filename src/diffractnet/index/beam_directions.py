"""Beam-direction classes of one crystal, their templates, and the in-plane angle by FFT correlation.

The beam directions are a near-uniform grid (orix ``sample_S2``) inside the fundamental sector of
the crystal's Laue group; a pattern's class is its beam direction in the crystal frame, R ẑ, with
symmetry-equivalent directions counted as the same. Each class has a kinematic template (noise-free,
mean thickness) in polar form; for a candidate class the in-plane angle is the peak of the circular
cross-correlation of polar images, refined to sub-bin precision with a parabola through the peak.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from diffractnet.index.polar import PolarGrid, frame_for_direction, polar_images, rotate_about_beam
from diffractnet.structures.crystal import Crystal


def sector_directions(crystal: Crystal, bin_deg: float) -> np.ndarray:
    """(N, 3) unit crystal directions [Cartesian] on a ``bin_deg`` grid inside the Laue group's fundamental sector."""
    from orix.sampling import sample_S2

    from diffractnet.physics.orientations import laue_group

    vectors = sample_S2(float(bin_deg))
    inside = vectors <= laue_group(crystal).fundamental_sector
    d = np.asarray(vectors[inside].data, dtype=np.float64)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def direction_cosines(rotations: torch.Tensor, symmetry: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(B, N) cosine of the symmetry-reduced angle between each pattern's beam direction R ẑ (crystal frame)
    and each class direction; ``symmetry`` (K, 3, 3) proper Laue rotations (inversion: the absolute value)."""
    d = rotations[..., :, 2].float()
    equivalent = torch.einsum("kij,bj->bki", symmetry.to(d), d)  # (B, K, 3)
    return torch.einsum("bki,ni->bkn", equivalent, directions.to(d)).abs().amax(dim=1)


def soft_labels(cosines: torch.Tensor, sigma_deg: float) -> torch.Tensor:
    """(B, N) target distributions from ``direction_cosines``: Gaussian in angle, σ = ``sigma_deg``."""
    angle = torch.arccos(cosines.clamp(-1, 1))
    weights = torch.exp(-0.5 * (angle / math.radians(sigma_deg)) ** 2)
    return weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)


class BeamDirectionBank:
    """Classes, equivalences and polar templates of ``crystal`` for one set-up (``physics``, ``grid``);
    ``inplane_harmonics`` azimuthal harmonics the in-plane correlation uses (None: all; on the bench's
    LiNiO2 scan 32 of 129 moved the map median by 0.006° and halved the step's time, a one-off check)."""

    def __init__(self, crystal: Crystal, bin_deg: float, physics, grid: PolarGrid,
                 template_thickness_factor: float = 0.5, inplane_harmonics: int | None = 32) -> None:
        from diffractnet.tasks.orientation import symmetry_matrices

        self.crystal, self.bin_deg, self.physics, self.grid = crystal, float(bin_deg), physics, grid
        self.directions = torch.as_tensor(sector_directions(crystal, bin_deg), dtype=torch.float32)
        self.symmetry = symmetry_matrices(crystal)  # (K, 3, 3) proper; with inversion: ± each
        d = self.directions.double().numpy()
        # a class holds beam direction b and −b (Friedel: the same zone, the pattern mirrored), so each
        # class has two templates: frames[:N] look along b, frames[N:] along −b
        self.frames = torch.as_tensor(frame_for_direction(np.concatenate([d, -d])), dtype=torch.float32)
        self._template_fft: torch.Tensor | None = None
        self.template_thickness_factor = float(template_thickness_factor)
        self.inplane_harmonics = inplane_harmonics
        self._conj: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.directions)

    def cos_to_classes(self, rotations: torch.Tensor) -> torch.Tensor:
        """(B, N) cosine of the symmetry-reduced angle between each pattern's beam direction and each class."""
        return direction_cosines(rotations, self.symmetry, self.directions)

    @property
    def template_fft(self) -> torch.Tensor:
        """(2N, radii, azimuths//2+1) azimuthal spectra of the templates along ±b (built on first use)."""
        if self._template_fft is None:
            self._template_fft = torch.fft.rfft(self._template_polars(), dim=-1)
        return self._template_fft

    def _template_polars(self, chunk: int = 256) -> torch.Tensor:
        from diffractnet.data.scan_physics import synthesize_patterns
        from diffractnet.tasks.orientation import matrices_to_quaternions

        # templates see a wider excitation window than any one pattern (a thinner slab): a pattern up to
        # half a bin away from the class centre still finds its spots in the template
        t_mean = float(np.mean(self.physics.thickness_A)) * self.template_thickness_factor
        clean = self.physics.model_copy(update={"perturbation": 0.0, "dose_e": None, "direct_beam": 0.0,
                                                "background": 0.0, "thickness_A": (t_mean, t_mean)})
        sim = clean.simulator()
        parts = []
        for start in range(0, len(self.frames), chunk):
            q = matrices_to_quaternions(self.frames[start:start + chunk])
            images = synthesize_patterns(self.crystal, q, clean, thickness_A=np.full(len(q), t_mean), simulator=sim)
            parts.append(polar_images(images, self.grid, self.physics.reciprocal_px_invA))
        return torch.cat(parts)

    def inplane(self, polar: torch.Tensor, classes: torch.Tensor, peaks: int = 1,
                spectrum: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Best in-plane angles of each candidate class, looking along +b and −b: (rotations (B, 2k·peaks, 3, 3),
        normalised correlation (B, 2k·peaks)), ordered class-major (+b classes, then −b; ``peaks`` per
        class, strongest first).

        ``polar`` (B, radii, azimuths) from ``polar_images``; ``classes`` (B, k) candidate indices;
        ``peaks`` > 1 also keeps the next local maxima of the correlation: a sparse pattern's spots can
        fit the template at several turns almost equally well, and only a refinement tells them apart.
        ``spectrum``: ``torch.fft.rfft(polar, dim=-1)``, if already computed.
        """
        n_az = polar.shape[-1]
        classes = torch.cat([classes, classes + len(self)], dim=1)
        spectrum = torch.fft.rfft(polar, dim=-1) if spectrum is None else spectrum
        spectrum = spectrum[..., :self._conj_spectra.shape[-1]]  # (B, R, F)
        cross = (spectrum[:, None] * self._conj_spectra[classes]).sum(dim=2)  # (B, k, F)
        corr = torch.fft.irfft(cross, n=n_az, dim=-1)  # (B, k, A): peak at the pattern's turn
        left_all, right_all = corr.roll(1, -1), corr.roll(-1, -1)
        if peaks == 1:
            peak = corr.argmax(dim=-1, keepdim=True)
        else:
            local = (corr >= left_all) & (corr > right_all)
            peak = torch.where(local, corr, torch.full_like(corr, -torch.inf)).topk(peaks, dim=-1).indices
            peak = torch.where(local.gather(-1, peak), peak, peak[..., :1])  # fewer maxima: repeat the best
        left = left_all.gather(-1, peak)
        mid = corr.gather(-1, peak)
        right = right_all.gather(-1, peak)
        curvature = (left - 2 * mid + right)
        offset = torch.where(curvature < 0, 0.5 * (left - right) / curvature.clamp(max=-1e-12), torch.zeros_like(mid))
        angle = (peak.float() + offset.clamp(-0.5, 0.5)) * (2 * math.pi / n_az)  # (B, 2k, peaks)
        norms = polar.flatten(1).norm(dim=-1)[:, None] * self._template_norms()[classes]
        rotations = rotate_about_beam(self.frames[classes][:, :, None], angle)  # (B, 2k, peaks, 3, 3)
        scores = mid / norms.clamp(min=1e-12)[..., None]
        return rotations.flatten(1, 2), scores.flatten(1, 2)

    def prepare(self) -> None:
        """Build the templates and what the in-plane step derives from them now (not on first use)."""
        self._conj_spectra
        self._template_norms()

    @property
    def _conj_spectra(self) -> torch.Tensor:
        """(2N, radii, F) conjugate template spectra up to azimuthal harmonic ``inplane_harmonics`` (the
        correlation's peak, refined afterwards, needs no finer detail; half the spectrum, half the cost)."""
        if self._conj is None:
            keep = self.template_fft.shape[-1] if self.inplane_harmonics is None else self.inplane_harmonics + 1
            self._conj = self.template_fft[..., :keep].conj().contiguous()
        return self._conj

    def _template_norms(self) -> torch.Tensor:
        """(N,) r.m.s.-scaled norms of the templates (Parseval on the rfft spectra)."""
        if not hasattr(self, "_norms"):
            spec = self.template_fft
            n_az = self.grid.azimuths
            power = (spec.abs() ** 2).sum(dim=1)  # (N, F)
            total = 2 * power.sum(-1) - power[:, 0] - (power[:, -1] if n_az % 2 == 0 else 0)
            self._norms = torch.sqrt(total / n_az)
        return self._norms
