"""Relativistic electron wavelength."""

from __future__ import annotations

import math

from diffractnet.errors import PhysicsError

PLANCK_J_S = 6.62607015e-34
ELECTRON_MASS_KG = 9.1093837015e-31
ELEMENTARY_CHARGE_C = 1.602176634e-19
SPEED_OF_LIGHT_M_S = 299792458.0


def check_voltage_kV(voltage_kV: float) -> float:
    """Return ``voltage_kV`` as float, or raise ``PhysicsError`` if it is not a positive number."""
    try:
        value = float(voltage_kV)
    except (TypeError, ValueError):
        raise PhysicsError(f"accelerating voltage must be a number in kV, got {voltage_kV!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise PhysicsError(f"accelerating voltage must be positive, got {voltage_kV} kV")
    return value


def electron_wavelength_A(voltage_kV: float) -> float:
    """Relativistic de Broglie wavelength [Å] of electrons accelerated through ``voltage_kV`` [kV].

    λ = h / sqrt(2 m₀ e V (1 + e V / (2 m₀ c²))); 200 kV → 0.025079 Å.
    """
    volts = check_voltage_kV(voltage_kV) * 1e3
    energy_J = ELEMENTARY_CHARGE_C * volts
    momentum = math.sqrt(2 * ELECTRON_MASS_KG * energy_J * (1 + energy_J / (2 * ELECTRON_MASS_KG * SPEED_OF_LIGHT_M_S**2)))
    return PLANCK_J_S / momentum * 1e10
