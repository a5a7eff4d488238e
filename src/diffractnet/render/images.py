"""Render batches of sparse spot patterns into detector images (torch, CPU or GPU).

Per-pattern geometry (rotation, centre shift, scale) may vary inside a batch: that is how the
data loader augments on the fly.
"""

from __future__ import annotations

import math

import torch

from diffractnet.errors import RenderError
from diffractnet.render.detector import Detector


def _per_pattern(value, n: int, device, dtype) -> torch.Tensor:
    """A scalar or (n,) value as an (n,) tensor."""
    t = torch.as_tensor(value, device=device, dtype=dtype)
    return t.expand(n).clone() if t.ndim == 0 else t.reshape(n)


def _blur(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Gaussian point-spread of width ``sigma_px`` [px], applied in Fourier space (periodic edges)."""
    h, w = images.shape[-2:]
    fy = torch.fft.fftfreq(h, device=images.device, dtype=images.dtype)
    fx = torch.fft.rfftfreq(w, device=images.device, dtype=images.dtype)
    transfer = torch.exp(-2 * (math.pi * sigma_px) ** 2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    return torch.fft.irfft2(torch.fft.rfft2(images) * transfer, s=(h, w)).clamp(min=0)


def _splat(images_flat, b_idx, x_px, y_px, weight, sigma_px: torch.Tensor, size):
    """Add a Gaussian of width ``sigma_px`` (per spot) [px] at each (x, y) to the flattened images."""
    radius = max(1, int(math.ceil(3 * float(sigma_px.max()))))
    offs = torch.arange(-radius, radius + 1, device=x_px.device)
    xi = torch.round(x_px)[:, None, None] + offs[None, None, :]
    yi = torch.round(y_px)[:, None, None] + offs[None, :, None]
    d2 = (xi - x_px[:, None, None]) ** 2 + (yi - y_px[:, None, None]) ** 2
    g = torch.exp(-0.5 * d2 / sigma_px[:, None, None] ** 2)
    g = g * (weight / g.sum(dim=(1, 2)))[:, None, None]  # each spot carries exactly its intensity
    inside = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
    flat = (b_idx[:, None, None] * size * size + yi * size + xi).long()
    images_flat.index_add_(0, flat[inside], g[inside].to(images_flat.dtype))


def render_patterns(offsets: torch.Tensor, xy_invA: torch.Tensor, intensity: torch.Tensor, detector: Detector,
                    rotation_deg=None, center_shift_px=None, reciprocal_px_invA=None, spot_sigma_px=None,
                    background=None, dose_e=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """CSR spots → (B, H, W) float32 images.

    ``offsets`` (B+1,), ``xy_invA`` (N, 2), ``intensity`` (N,). The optional per-pattern values
    ``rotation_deg`` (B,), ``center_shift_px`` (B, 2), ``reciprocal_px_invA`` (B,), ``spot_sigma_px`` (B,),
    ``background`` (B,) and ``dose_e`` (B,) override the detector's (for augmentation). Spot
    intensities are scaled so each pattern's strongest spot is 1. The image is linear in intensity, as a
    detector records it: with a dose it is drawn as Poisson counts with that many electrons in
    expectation. The detector's ``intensity_power`` is not applied here: ``render.display.brighten``
    applies it per pixel, after the noise, to rendered and recorded patterns alike.
    """
    n_patterns, size = len(offsets) - 1, int(detector.image_size_px)
    device, dtype = xy_invA.device, torch.float32
    if n_patterns < 1:
        raise RenderError("no patterns to render")
    if len(xy_invA) != int(offsets[-1]) or len(intensity) != len(xy_invA):
        raise RenderError(f"spot arrays do not match offsets ({len(xy_invA)} spots, offsets end at {int(offsets[-1])})")

    def per(value, default):
        return _per_pattern(default if value is None else value, n_patterns, device, dtype)

    rot = torch.deg2rad(per(rotation_deg, detector.rotation_deg))
    shift = torch.as_tensor(detector.center_shift_px if center_shift_px is None else center_shift_px, device=device, dtype=dtype)
    shift = shift.expand(n_patterns, 2) if shift.ndim == 1 else shift.reshape(n_patterns, 2)
    scale, sigma = per(reciprocal_px_invA, detector.reciprocal_px_invA), per(spot_sigma_px, detector.spot_sigma_px)
    if (scale <= 0).any() or (sigma <= 0).any():
        raise RenderError("reciprocal pixel size and spot width must be positive")
    counts = offsets[1:] - offsets[:-1]
    b_idx = torch.repeat_interleave(torch.arange(n_patterns, device=device), counts)
    centre = (size - 1) / 2 + shift  # (B, 2) direct-beam position (x, y) in px
    inten = intensity.to(dtype)
    peak = torch.zeros(n_patterns, device=device, dtype=dtype).scatter_reduce(0, b_idx, inten, "amax", include_self=True)
    rel = inten / peak.clamp(min=1e-30)[b_idx]
    c, s = torch.cos(rot)[b_idx], torch.sin(rot)[b_idx]
    gx, gy = xy_invA[:, 0].to(dtype), xy_invA[:, 1].to(dtype)
    x_px = (c * gx - s * gy) / scale[b_idx] + centre[b_idx, 0]
    y_px = (s * gx + c * gy) / scale[b_idx] + centre[b_idx, 1]
    images = torch.zeros(n_patterns * size * size, device=device, dtype=dtype)
    _splat(images, b_idx, x_px, y_px, rel, sigma[b_idx], size)
    if detector.direct_beam > 0:
        every = torch.arange(n_patterns, device=device)
        _splat(images, every, centre[:, 0], centre[:, 1], torch.full((n_patterns,), detector.direct_beam, device=device, dtype=dtype),
               sigma, size)
    images = images.reshape(n_patterns, size, size)
    background = per(background, detector.background)
    dose = None if dose_e is None and detector.dose_e is None else per(dose_e, detector.dose_e)
    return _finish(images, detector, centre, sigma, background, dose, generator)


def _finish(images: torch.Tensor, detector: Detector, centre: torch.Tensor, sigma: torch.Tensor,
            background: torch.Tensor, dose: torch.Tensor | None, generator) -> torch.Tensor:
    """Diffuse background, point-spread, beam stop and shot noise (per-pattern background and dose)."""
    size = images.shape[-1]
    coords = torch.arange(size, device=images.device, dtype=images.dtype)
    r = torch.sqrt((coords[None, None, :] - centre[:, 0, None, None]) ** 2 + (coords[None, :, None] - centre[:, 1, None, None]) ** 2)
    if (background > 0).any():
        peak_value = 1.0 / (2 * math.pi * sigma**2)  # height of a relative-intensity-1 spot
        images = images + (background * peak_value)[:, None, None] * torch.exp(-r / detector.background_decay_px)
    if detector.psf_sigma_px > 0:
        images = _blur(images, detector.psf_sigma_px)
    if detector.beam_stop_radius_px > 0:
        images = images * (r > detector.beam_stop_radius_px)
    if dose is not None:
        if (dose <= 0).any():
            raise RenderError("dose must be a positive number of electrons per pattern")
        total = images.sum(dim=(1, 2), keepdim=True).clamp(min=1e-30)
        images = torch.poisson(images * (dose[:, None, None] / total), generator=generator)
    return images


def render_spot_patterns(patterns, detector: Detector, generator: torch.Generator | None = None, **overrides) -> torch.Tensor:
    """Render a ``SpotPatterns`` batch (from ``SpotSimulator.simulate``) → (B, H, W) images."""
    return render_patterns(patterns.offsets, patterns.xy_invA, patterns.intensity, detector, generator=generator, **overrides)
