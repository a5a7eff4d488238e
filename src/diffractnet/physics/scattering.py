"""Electron atomic scattering factors f_e(g) of Lobato & Van Dyck (2014), Z = 1…103.

Parametrisation: I. Lobato and D. Van Dyck, "An accurate parameterization for scattering
factors, electron densities and electrostatic potentials for neutral atoms that obey all
physical constraints", Acta Cryst. A70 (2014) 636–649. Form:
f_e(g) = Σ_{i=1..5} a_i (2 + b_i g²) / (1 + b_i g²)² with g = 1/d [Å⁻¹], f_e in Å.
The coefficients are the paper's published table, stored in ``lobato_2014.json``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np
import torch

from diffractnet.structures.elements import element_symbol


@lru_cache(maxsize=1)
def _table() -> dict[str, dict]:
    text = resources.files("diffractnet.physics").joinpath("lobato_2014.json").read_text()
    return json.loads(text)["elements"]


def lobato_coefficients(elements: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) arrays of shape (n_elements, 5) [Å, Å²] for the given element symbols."""
    table = _table()
    clean = [element_symbol(el) for el in elements]
    a = np.array([table[el]["a"] for el in clean], dtype=np.float64)
    b = np.array([table[el]["b"] for el in clean], dtype=np.float64)
    return a, b


def electron_scattering_factor(elements: list[str], g_invA) -> np.ndarray | torch.Tensor:
    """f_e [Å] for each element at each |g| [Å⁻¹] (g = 1/d, no 2π): shape (n_elements, *g.shape).

    Works on numpy arrays and torch tensors (returned in the same kind).
    """
    a, b = lobato_coefficients(elements)
    if isinstance(g_invA, torch.Tensor):
        a_t = torch.as_tensor(a, dtype=g_invA.dtype, device=g_invA.device)
        b_t = torch.as_tensor(b, dtype=g_invA.dtype, device=g_invA.device)
        bg2 = b_t.reshape(len(elements), *([1] * g_invA.ndim), 5) * (g_invA**2)[None, ..., None]
        return (a_t.reshape(bg2.shape[0], *([1] * g_invA.ndim), 5) * (2 + bg2) / (1 + bg2) ** 2).sum(-1)
    g = np.asarray(g_invA, dtype=np.float64)
    bg2 = b.reshape(len(elements), *([1] * g.ndim), 5) * (g**2)[None, ..., None]
    return (a.reshape(len(elements), *([1] * g.ndim), 5) * (2 + bg2) / (1 + bg2) ** 2).sum(-1)
