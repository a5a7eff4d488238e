"""Linear detector images → the brightness a classifier (or a person) sees.

A detector records counts linearly, shot noise included; a display compresses the dynamic range
afterwards, per pixel. Rendered training patterns and recorded patterns pass through these same
functions in the same order (``render.images`` draws noise on linear intensities; ``data`` and
``io.patterns`` then call ``normalise`` and ``brighten``), so a model never learns weak spots that a
recorded image would not show.
"""

from __future__ import annotations

import torch


def normalise(images: torch.Tensor) -> torch.Tensor:
    """(..., H, W) images → each image's minimum set to 0 and its maximum to 1 (a blank image stays 0)."""
    low = images.amin(dim=(-2, -1), keepdim=True)
    high = images.amax(dim=(-2, -1), keepdim=True)
    return ((images - low) / (high - low).clamp(min=1e-12)).clamp(0.0, 1.0)


def brighten(images: torch.Tensor, intensity_power: float) -> torch.Tensor:
    """Images in [0, 1] → ``images ** intensity_power`` per pixel (1: linear; < 1 lifts weak spots, and the
    shot noise around them with them)."""
    if intensity_power == 1.0:
        return images
    return images.clamp(min=0.0) ** intensity_power
