"""Detector geometry and image-formation settings."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from diffractnet.errors import RenderError
from diffractnet.physics.wavelength import electron_wavelength_A


def reciprocal_px_from_camera(camera_length_mm: float, pixel_size_um: float, voltage_kV: float) -> float:
    """Reciprocal-space size of one pixel [Å⁻¹/px] = pixel / (camera length × λ) (small angles)."""
    if not (camera_length_mm and camera_length_mm > 0):
        raise RenderError(f"camera length must be positive, got {camera_length_mm} mm")
    if not (pixel_size_um and pixel_size_um > 0):
        raise RenderError(f"detector pixel size must be positive, got {pixel_size_um} µm")
    return (pixel_size_um * 1e-6) / (camera_length_mm * 1e-3 * electron_wavelength_A(voltage_kV))


@dataclass(frozen=True)
class Detector:
    """How spots become an image.

    ``image_size_px`` side of the square image; ``reciprocal_px_invA`` Å⁻¹ per pixel (or use
    ``Detector.from_camera``); ``center_shift_px`` (dx, dy) of the direct beam from the image centre;
    ``rotation_deg`` in-plane rotation of the pattern; ``spot_sigma_px`` Gaussian spot width;
    ``psf_sigma_px`` detector point-spread (0: none); ``intensity_power`` the display power a model's
    input gets per pixel after the (linear) image is recorded (``render.display.brighten``; 1: linear,
    0.5: compresses the dynamic range as film and log displays do);
    ``direct_beam`` intensity of the central beam relative to the strongest spot;
    ``background`` diffuse background peak relative to the strongest spot, decaying as exp(-r/``background_decay_px``);
    ``beam_stop_radius_px`` radius of a central beam stop (0: none);
    ``dose_e`` electrons per pattern for Poisson noise (None: noise-free).
    """

    image_size_px: int = 128
    reciprocal_px_invA: float = 0.02
    center_shift_px: tuple[float, float] = (0.0, 0.0)
    rotation_deg: float = 0.0
    spot_sigma_px: float = 1.0
    psf_sigma_px: float = 0.0
    intensity_power: float = 1.0
    direct_beam: float = 1.0
    background: float = 0.0
    background_decay_px: float = 20.0
    beam_stop_radius_px: float = 0.0
    dose_e: float | None = None

    def __post_init__(self) -> None:
        if int(self.image_size_px) < 8:
            raise RenderError(f"image size must be at least 8 px, got {self.image_size_px}")
        checks = {"reciprocal pixel size": self.reciprocal_px_invA, "spot width": self.spot_sigma_px,
                  "background decay length": self.background_decay_px, "intensity power": self.intensity_power}
        for what, value in checks.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise RenderError(f"{what} must be a positive number, got {value}")
        for what, value in {"point-spread width": self.psf_sigma_px, "direct beam": self.direct_beam,
                            "background": self.background, "beam stop radius": self.beam_stop_radius_px}.items():
            if not (math.isfinite(value) and value >= 0):
                raise RenderError(f"{what} must be zero or positive, got {value}")
        if self.dose_e is not None and not (math.isfinite(self.dose_e) and self.dose_e > 0):
            raise RenderError(f"dose must be a positive number of electrons per pattern, got {self.dose_e}")

    @classmethod
    def from_camera(cls, camera_length_mm: float, pixel_size_um: float, voltage_kV: float, **kwargs) -> "Detector":
        """A detector whose reciprocal pixel size comes from camera length [mm], pixel [µm] and voltage [kV]."""
        return cls(reciprocal_px_invA=reciprocal_px_from_camera(camera_length_mm, pixel_size_um, voltage_kV), **kwargs)

    def with_(self, **changes) -> "Detector":
        """A copy with some settings changed (validated again)."""
        return replace(self, **changes)

    @property
    def field_of_view_invA(self) -> float:
        """Largest |g| [Å⁻¹] that still falls on the detector (half the image side)."""
        return self.image_size_px * self.reciprocal_px_invA / 2


def detector_from_image_spec(image: dict) -> Detector:
    """The detector of a training ``image`` section (``size_px``, ``reciprocal_px_invA``, ...), as stored
    in model metadata: the same rendering at training, evaluation and prediction."""
    return Detector(image_size_px=image["size_px"], reciprocal_px_invA=image["reciprocal_px_invA"],
                    spot_sigma_px=image["spot_sigma_px"], intensity_power=image["intensity_power"],
                    direct_beam=image["direct_beam"], beam_stop_radius_px=image["beam_stop_radius_px"])
