"""Spot patterns for batches of orientations: exact Ewald sphere, thickness or precession profile.

For a reflection at g_lab = Rᵀ g_crystal the excitation error is measured along the beam from the
exact Ewald sphere (radius k = 1/λ, centre on +z, through the origin):
s = ρ² / (k + sqrt(k² − ρ²)) − g_z, ρ² = g_x² + g_y²  (the same definition as diffsims).
Intensity = |F|² × profile(s); profile is sinc²(π t s) for a slab of thickness t, or 1 ("flat").
With precession (semi-angle φ) the beam direction u runs over a cone, s is taken along each u and
the profile is averaged over the azimuth; spot positions stay at (g_x, g_y) (the beam is descanned).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from diffractnet.errors import PhysicsError
from diffractnet.physics.orientations import quaternion_to_matrix
from diffractnet.physics.reflections import reflection_set
from diffractnet.physics.wavelength import electron_wavelength_A
from diffractnet.structures.crystal import Crystal

PROFILES = ("sinc2", "flat")
_MAX_ELEMENTS_PER_CHUNK = 2**24


@dataclass
class SpotPatterns:
    """A batch of sparse spot patterns in CSR layout: pattern i owns rows offsets[i]:offsets[i+1].

    ``xy_invA`` (N, 2) lab-frame (g_x, g_y) [Å⁻¹]; ``intensity`` (N,) [Å², relative];
    ``hkl`` (N, 3); ``excitation_error_invA`` (N,); ``quaternions`` (B, 4) the orientations.
    """

    offsets: torch.Tensor
    xy_invA: torch.Tensor
    intensity: torch.Tensor
    hkl: torch.Tensor
    excitation_error_invA: torch.Tensor
    quaternions: torch.Tensor

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> torch.Tensor:
        """(B,) number of spots in each pattern."""
        return self.offsets[1:] - self.offsets[:-1]

    def pattern(self, index: int) -> dict[str, np.ndarray]:
        """The spots of one pattern as numpy arrays (xy_invA, intensity, hkl, excitation_error_invA)."""
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        return {"xy_invA": self.xy_invA[lo:hi].cpu().numpy(), "intensity": self.intensity[lo:hi].cpu().numpy(),
                "hkl": self.hkl[lo:hi].cpu().numpy(),
                "excitation_error_invA": self.excitation_error_invA[lo:hi].cpu().numpy()}

    def pattern_index(self) -> torch.Tensor:
        """(N,) index of the pattern each spot belongs to."""
        return torch.repeat_interleave(torch.arange(len(self), device=self.offsets.device), self.counts)


class SpotSimulator:
    """Kinematic spot patterns of one microscope set-up, for any crystal and any batch of orientations.

    ``voltage_kV`` accelerating voltage; ``g_max_invA`` reciprocal radius [Å⁻¹];
    ``thickness_A`` slab thickness for the sinc² profile [Å]; ``max_excitation_error_invA`` cut on |s|
    (default 1/thickness, the central lobe); ``precession_angle_deg`` 0 for none;
    ``precession_steps`` azimuths averaged; ``profile`` 'sinc2' or 'flat' (pure |F|² within the cut).
    """

    def __init__(self, voltage_kV: float = 200.0, g_max_invA: float = 1.5, thickness_A: float = 50.0,
                 max_excitation_error_invA: float | None = None, precession_angle_deg: float = 0.0,
                 precession_steps: int = 32, profile: str = "sinc2", device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.wavelength_A = electron_wavelength_A(voltage_kV)
        self.voltage_kV = float(voltage_kV)
        self.g_max_invA = float(g_max_invA)
        if profile not in PROFILES:
            raise PhysicsError(f"excitation-error profile '{profile}' is not one of {PROFILES}")
        if not (thickness_A and float(thickness_A) > 0):
            raise PhysicsError(f"thickness must be positive, got {thickness_A} Å")
        self.profile, self.thickness_A = profile, float(thickness_A)
        s_max = 1.0 / self.thickness_A if max_excitation_error_invA is None else float(max_excitation_error_invA)
        if not s_max > 0:
            raise PhysicsError(f"max excitation error must be positive, got {max_excitation_error_invA} 1/Å")
        self.max_excitation_error_invA = s_max
        if not 0 <= float(precession_angle_deg) < 10:
            raise PhysicsError(f"precession angle must be in [0, 10) deg, got {precession_angle_deg}")
        self.precession_angle_deg, self.precession_steps = float(precession_angle_deg), int(precession_steps)
        self.device, self.dtype = torch.device(device), dtype

    def __repr__(self) -> str:
        return (f"SpotSimulator(voltage_kV={self.voltage_kV}, g_max_invA={self.g_max_invA}, "
                f"thickness_A={self.thickness_A}, max_excitation_error_invA={self.max_excitation_error_invA}, "
                f"precession_angle_deg={self.precession_angle_deg}, profile='{self.profile}')")

    def _beam_directions(self) -> torch.Tensor:
        """(M, 3) unit beam directions: [ẑ] without precession, else M directions on the cone."""
        if self.precession_angle_deg == 0:
            return torch.tensor([[0.0, 0.0, 1.0]], dtype=self.dtype, device=self.device)
        phi = math.radians(self.precession_angle_deg)
        theta = torch.arange(self.precession_steps, dtype=torch.float64) * (2 * math.pi / self.precession_steps)
        dirs = torch.stack([math.sin(phi) * theta.cos(), math.sin(phi) * theta.sin(),
                            torch.full_like(theta, math.cos(phi))], dim=1)
        return dirs.to(self.device, self.dtype)

    def _profile(self, s: torch.Tensor) -> torch.Tensor:
        inside = s.abs() <= self.max_excitation_error_invA
        if self.profile == "flat":
            return inside.to(s.dtype)
        return torch.sinc(self.thickness_A * s) ** 2 * inside  # torch.sinc(x) = sin(πx)/(πx)

    def excitation_errors(self, g_lab: torch.Tensor, beam: torch.Tensor | None = None) -> torch.Tensor:
        """(..., 3) lab-frame g [Å⁻¹] → (..., M) excitation errors s [Å⁻¹] along each of the M beam
        directions ``beam`` (M, 3) (default: the simulator's, ẑ or the precession cone)."""
        beam = self._beam_directions() if beam is None else beam
        return self._excitation_from_along(g_lab @ beam.T, (g_lab * g_lab).sum(-1, keepdim=True))

    def _excitation_from_along(self, along: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
        """s from the component of g along the beam and |g|² (broadcast): exact Ewald sphere."""
        k = 1.0 / self.wavelength_A
        rho2 = (g2 - along**2).clamp(min=0.0, max=k * k)
        return rho2 / (k + torch.sqrt(k * k - rho2)) - along

    def simulate(self, crystal: Crystal, quaternions) -> SpotPatterns:
        """Spot patterns of ``crystal`` at each orientation in ``quaternions`` ((B, 4) w, x, y, z)."""
        refl = reflection_set(crystal, self.g_max_invA)
        q = torch.as_tensor(np.asarray(quaternions, dtype=np.float64), dtype=self.dtype, device=self.device)
        q = q.reshape(-1, 4)
        if not torch.isfinite(q).all() or (q.norm(dim=-1) < 1e-6).any():
            raise PhysicsError("orientations must be finite, non-zero quaternions (w, x, y, z)")
        g = torch.as_tensor(refl.g_crystal_invA, dtype=self.dtype, device=self.device)
        f2 = torch.as_tensor(refl.intensity, dtype=self.dtype, device=self.device)
        hkl = torch.as_tensor(refl.hkl, dtype=torch.int16, device=self.device)
        per_pattern = len(g) * (self.precession_steps if self.precession_angle_deg else 1)
        chunk = max(1, _MAX_ELEMENTS_PER_CHUNK // max(per_pattern, 1))
        parts = [self._simulate_chunk(g, f2, hkl, q[i:i + chunk]) for i in range(0, len(q), chunk)]
        counts = torch.cat([p[0] for p in parts])
        offsets = torch.zeros(len(q) + 1, dtype=torch.int64, device=self.device)
        offsets[1:] = torch.cumsum(counts, 0)
        return SpotPatterns(offsets, *(torch.cat([p[i] for p in parts]) for i in range(1, 5)), quaternions=q)

    def _simulate_chunk(self, g, f2, hkl, q):
        rot = quaternion_to_matrix(q)  # (B, 3, 3), v_crystal = R v_lab
        beam_in_crystal = rot @ self._beam_directions().T  # (B, 3, M): each beam direction seen by the crystal
        along = torch.einsum("gj,bjm->bgm", g, beam_in_crystal)  # g_lab · u, without forming g_lab
        g2 = (g * g).sum(-1)[None, :, None]
        s = self._excitation_from_along(along, g2)  # (B, G, M)
        keep = (s.abs() <= self.max_excitation_error_invA).any(-1)
        b_idx, g_idx = keep.nonzero(as_tuple=True)
        shape = self._profile(s[b_idx, g_idx]).mean(-1)
        counts = torch.bincount(b_idx, minlength=len(q))
        g_kept = g[g_idx]
        xy = torch.einsum("nj,nji->ni", g_kept, rot[b_idx][:, :, :2])  # (Rᵀ g)_x,y for kept spots only
        along_z = torch.einsum("nj,nj->n", g_kept, rot[b_idx][:, :, 2])
        s_untilted = self._excitation_from_along(along_z, g2[0, g_idx, 0])
        return counts, xy, f2[g_idx] * shape, hkl[g_idx], s_untilted
