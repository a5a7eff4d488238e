"""Turn each pattern into the frame a crystallographer would index it in, so a classifier need not learn
rotation invariance from augmentation.

A zone-axis pattern's in-plane angle (and which side the camera sees it from) is a nuisance. Indexing
by hand starts from the spot nearest the direct beam and the nearest spot not in line with it: the
two shortest vectors of the 2D lattice. ``lattice_view`` turns the pattern so the first lies on +x
and mirrors it if needed so the second lies at an angle of at most 90° from the x axis (the pattern
is centrosymmetric, so only the angle mod 180° matters). Spots are local maxima of the band-passed
pattern with 5×5 centroids; equivalent spots lead to the same view, and a pattern of one lattice
type is shown in one alignment, whatever its material. The ``lattice`` view keeps the absolute scale:
spot spacings stay in Å⁻¹. ``lattice_unit`` also zooms each pattern so its shortest spot vector is
``UNIT_PX`` long: spacings in units of the lattice's own, so a material whose cell is larger or
smaller than any in training looks like its structure type (the lattice constant says little about
the space group, and a network that keys on it fails on unseen materials).
"""

from __future__ import annotations

import torch

from diffractnet.errors import DataError
from diffractnet.render.display import brighten, normalise

VIEWS = {"plain": 1, "lattice": 1, "lattice_unit": 1}  # input view → channels
UNIT_FRACTION = 1 / 6  # lattice_unit: the shortest spot vector's length, as a fraction of the image side
ZOOM_RANGE = (0.4, 2.5)  # lattice_unit: the most it zooms out and in


def rotate_images(images: torch.Tensor, angle_deg: torch.Tensor, zoom: torch.Tensor | None = None) -> torch.Tensor:
    """Turn each image of (B, ..., H, W) about its centre by ``angle_deg`` (B,) [deg, counter-clockwise in
    x-right / y-down pixel axes, as ``render`` turns patterns] (bilinear, zeros outside), and magnified
    by ``zoom`` (B,) about the centre if given (> 1: spots move outward)."""
    shape = images.shape
    x = images.float().reshape(shape[0], -1, *shape[-2:])
    a = torch.deg2rad(angle_deg.float())
    c, s = torch.cos(a), torch.sin(a)
    if zoom is not None:
        c, s = c / zoom, s / zoom
    # affine_grid maps output → input coordinates: rotate the sampling grid by −angle
    theta = torch.stack([torch.stack([c, s, torch.zeros_like(c)], -1),
                         torch.stack([-s, c, torch.zeros_like(c)], -1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=True)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", align_corners=True).reshape(shape)


def _peak_maps(images: torch.Tensor, r_min_px: float, rel_threshold: float):
    """Band-passed images, a mask of spot peaks (local maxima above ``rel_threshold`` of the brightest
    diffracted peak, beyond ``r_min_px`` of the centre) and their sub-pixel centroids (x, y) [px]."""
    from diffractnet.index.polar import band_pass

    x = images.float().reshape(-1, *images.shape[-2:])
    size = x.shape[-1]
    bp = band_pass(x, 1.0, 4.0).clamp(min=0)[:, None]  # (B, 1, H, W)
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    r = torch.sqrt(xx**2 + yy**2)
    outside = (r >= r_min_px)[None, None]
    peaks = (bp == torch.nn.functional.max_pool2d(bp, 5, 1, 2)) & outside
    top = (bp * peaks).amax(dim=(2, 3), keepdim=True)
    peaks &= bp > rel_threshold * top
    mass = torch.nn.functional.avg_pool2d(bp, 5, 1, 2)  # 5×5 centroids: ±2σ of a spot
    cx = torch.nn.functional.avg_pool2d(bp * xx, 5, 1, 2) / mass.clamp(min=1e-12)
    cy = torch.nn.functional.avg_pool2d(bp * yy, 5, 1, 2) / mass.clamp(min=1e-12)
    return peaks[:, 0], cx[:, 0], cy[:, 0]


def lattice_frames(images: torch.Tensor, r_min_px: float = 3.0, rel_threshold: float = 0.2,
                   collinear_sin: float = 0.25, tie: float = 1.04,
                   with_length: bool = False) -> tuple[torch.Tensor, ...]:
    """(B, [1,] H, W) patterns → (angle θ₁ [deg], mirror (B,) bool) of the frame a crystallographer would
    index in: the spot nearest the direct beam on +x; then, of the nearest spots not in line with it
    (lengths within ``tie``), the one at the smallest angle φ to the x axis (φ mod 180°: the pattern is
    centrosymmetric), mirrored if needed so that φ ≤ 90°. Patterns without spots get θ₁ = 0, no mirror.
    ``with_length``: also the length of the first spot vector [px] (NaN without spots)."""
    peaks, cx, cy = _peak_maps(images, r_min_px, rel_threshold)
    b = len(peaks)
    flat = peaks.reshape(b, -1)
    x, y = cx.reshape(b, -1), cy.reshape(b, -1)
    inf = torch.full_like(x, float("inf"))
    r = torch.where(flat, torch.sqrt(x**2 + y**2), inf)
    first = r.argmin(-1)
    theta1 = torch.atan2(y.gather(1, first[:, None]), x.gather(1, first[:, None]))  # (B, 1)
    xr = x * torch.cos(theta1) + y * torch.sin(theta1)  # coordinates in the frame with spot 1 on +x
    yr = -x * torch.sin(theta1) + y * torch.cos(theta1)
    away = flat & (yr.abs() > collinear_sin * torch.sqrt(xr**2 + yr**2))
    r2 = torch.where(away, r, inf)
    nearest = r2.amin(-1, keepdim=True)
    phi = torch.remainder(torch.atan2(yr, xr), torch.pi)  # (0, π) for spots off the line
    key = torch.where(away & (r2 <= nearest * tie), torch.minimum(phi, torch.pi - phi), inf)
    second = key.argmin(-1, keepdim=True)
    found = torch.isfinite(r.gather(1, first[:, None]))[:, 0]
    mirror = (phi.gather(1, second) > torch.pi / 2)[:, 0] & torch.isfinite(key.gather(1, second))[:, 0] & found
    theta1 = torch.where(found, theta1[:, 0], torch.zeros_like(theta1[:, 0]))
    if with_length:
        length = torch.where(found, r.gather(1, first[:, None])[:, 0], torch.full_like(theta1, float("nan")))
        return torch.rad2deg(theta1), mirror, length
    return torch.rad2deg(theta1), mirror


def lattice_view(images: torch.Tensor, unit: bool = False, guide: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 1, H, W) patterns turned (and mirrored) into their ``lattice_frames`` frame; ``unit``: also
    zoomed so the shortest spot vector is ``UNIT_FRACTION`` of the side (within ``ZOOM_RANGE``; a
    pattern without spots is not zoomed). The frame is found on ``guide``, by default the square root of
    the normalised linear ``images``, where Poisson noise has about even variance across the image."""
    guide = normalise(images).sqrt() if guide is None else guide
    angle, mirror, length = lattice_frames(guide, with_length=True)
    zoom = None
    if unit:
        zoom = (UNIT_FRACTION * images.shape[-1] / length).nan_to_num(1.0).clamp(*ZOOM_RANGE)
    turned = rotate_images(images, -angle, zoom)
    return torch.where(mirror[:, None, None, None], turned.flip(-2), turned)


def model_view(images: torch.Tensor, view: str = "plain", intensity_power: float = 1.0) -> torch.Tensor:
    """(B, 1, H, W) linear patterns (rendered, or recorded and cropped) → the classifier's input for
    ``view`` (``VIEWS``): normalised to [0, 1], ``intensity_power`` applied per pixel (``render.display``),
    then turned into the view (found on the linear pattern), the same steps for training and prediction."""
    if view not in VIEWS:
        raise DataError(f"unknown input view '{view}'; choose from {sorted(VIEWS)}")
    linear = normalise(images)
    shown = brighten(linear, intensity_power)
    if view == "plain":
        return shown
    return lattice_view(shown, unit=view == "lattice_unit", guide=linear.sqrt())
