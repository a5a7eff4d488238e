"""diffractnet: deep learning for electron diffraction patterns.

Stages (see DESIGN.md): ``structures`` → ``physics`` → ``render`` → ``data``.
Import the subpackages you need; this top level only carries the version and errors.
"""

from diffractnet.errors import (
    ConfigError,
    DataError,
    DiffractNetError,
    PhysicsError,
    RenderError,
    StructureError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DiffractNetError",
    "PhysicsError",
    "RenderError",
    "StructureError",
    "__version__",
]
