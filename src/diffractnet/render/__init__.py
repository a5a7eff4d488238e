"""Sparse spots → detector images (batched torch), for datasets and for on-the-fly augmentation."""

from diffractnet.render.detector import Detector
from diffractnet.render.images import render_patterns, render_spot_patterns

__all__ = ["Detector", "render_patterns", "render_spot_patterns"]
