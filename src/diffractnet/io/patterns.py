"""Single diffraction-pattern images (PNG, TIFF, JPEG, .npy) → validated arrays → model inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diffractnet.errors import DataError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
MIN_SIDE_PX = 16


def load_pattern_image(path: str | Path) -> np.ndarray:
    """A pattern as a float64 (H, W) array; RGB is averaged to gray. ``DataError`` for a missing or
    unreadable file, a wrong rank or dtype, NaN/inf pixels, or an all-zero image."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pattern file '{path}' does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"pattern file '{path}' is not a readable .npy array ({str(exc).splitlines()[0][:100]})") from None
    elif suffix in IMAGE_SUFFIXES:
        from PIL import Image

        try:
            with Image.open(path) as img:
                array = np.asarray(img)
        except Exception as exc:
            raise DataError(f"pattern file '{path}' is not a readable image ({str(exc).splitlines()[0][:100]})") from None
    else:
        raise DataError(f"pattern file '{path}' has unknown format '{suffix}'; use {', '.join(IMAGE_SUFFIXES)} or .npy")
    return validate_pattern(array, where=f"pattern file '{path}'")


def validate_pattern(array: np.ndarray, where: str = "pattern") -> np.ndarray:
    """Check and convert one pattern to float64 (H, W)."""
    a = np.asarray(array)
    if a.dtype.kind not in "uif":
        raise DataError(f"{where}: pixels must be integers or floats, got dtype {a.dtype}")
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3].mean(axis=-1)
    elif a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise DataError(f"{where}: expected one 2-D pattern (H, W), got shape {tuple(np.shape(array))}")
    if min(a.shape) < MIN_SIDE_PX:
        raise DataError(f"{where}: pattern of {a.shape[0]}x{a.shape[1]} px is smaller than {MIN_SIDE_PX} px")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise DataError(f"{where}: {int((~np.isfinite(a)).sum())} pixels are NaN or infinite")
    if a.max() - a.min() <= 0:
        raise DataError(f"{where}: the pattern is blank (all pixels {a.flat[0]:g})")
    return a


def prepare_for_model(pattern: np.ndarray, size_px: int, image_px_invA: float | None = None,
                      model_px_invA: float | None = None) -> torch.Tensor:
    """(H, W) recorded pattern → (1, size_px, size_px) float32, linear, cut and scaled as the model's
    training patterns were rendered (``render.canonical.model_view`` then normalises it, turns it into the
    model's view and applies its brightness power, as training does).

    The largest centred square is cut out (the direct beam is assumed near the centre); if both
    reciprocal pixel sizes are known [Å⁻¹/px], the image is first zoomed so its scale matches the
    model's. Pixels are kept linear: background removal and the power come after, in ``model_view``.
    """
    a = validate_pattern(pattern)
    side = min(a.shape)
    if image_px_invA and model_px_invA:
        side = min(side, max(MIN_SIDE_PX, int(round(size_px * model_px_invA / image_px_invA))))
    top, left = (a.shape[0] - side) // 2, (a.shape[1] - side) // 2
    crop = torch.from_numpy(a[top:top + side, left:left + side]).float()[None, None]
    resized = torch.nn.functional.interpolate(crop, size=(size_px, size_px), mode="bilinear", antialias=True,
                                              align_corners=False)[0]
    return resized
