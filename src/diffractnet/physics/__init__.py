"""Kinematic electron-diffraction physics: wavelength, scattering factors, reflections, spot patterns.

Batched tensor code (torch, CPU or GPU): one call computes thousands of patterns.
"""

from diffractnet.physics.orientations import (
    quaternion_to_matrix,
    sample_fundamental_zone,
    zone_axis_quaternion,
)
from diffractnet.physics.reflections import ReflectionSet, reciprocal_lattice, reflection_set, structure_factors
from diffractnet.physics.scattering import electron_scattering_factor
from diffractnet.physics.spots import SpotPatterns, SpotSimulator
from diffractnet.physics.wavelength import electron_wavelength_A

__all__ = [
    "ReflectionSet",
    "SpotPatterns",
    "SpotSimulator",
    "electron_scattering_factor",
    "electron_wavelength_A",
    "quaternion_to_matrix",
    "reciprocal_lattice",
    "reflection_set",
    "sample_fundamental_zone",
    "structure_factors",
    "zone_axis_quaternion",
]
