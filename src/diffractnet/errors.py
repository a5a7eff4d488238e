"""Project exceptions: every user-facing failure is one of these, with a one-line message.

Each message says what went wrong, where (file, material, parameter) and what to do.
"""

from __future__ import annotations


class DiffractNetError(Exception):
    """Base class of every error diffractnet raises on purpose."""


class StructureError(DiffractNetError):
    """A crystal structure is unusable: unknown element, empty cell, broken CIF, bad site."""


class PhysicsError(DiffractNetError):
    """A physical parameter is impossible (non-positive voltage, g_max too small, ...)."""


class RenderError(DiffractNetError):
    """A detector or rendering parameter is impossible."""


class ConfigError(DiffractNetError):
    """A configuration file is missing, malformed or has invalid values."""


class DataError(DiffractNetError):
    """A dataset file is missing, truncated or inconsistent."""
