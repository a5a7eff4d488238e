"""Space-group classification: the coarser levels (crystal system, Laue class, Bravais) derived from
space-group probabilities. Label maps live in ``train.labels``; evaluation and prediction beside this."""

from __future__ import annotations

import numpy as np

from diffractnet.errors import ConfigError
from diffractnet.structures.symmetry import bravais_lattice, crystal_system, laue_class

LEVELS = {"crystal_system": crystal_system, "laue_class": laue_class, "bravais_lattice": bravais_lattice}


def coarse_probabilities(probs: np.ndarray, class_labels: tuple[int, ...], level: str) -> dict[str, np.ndarray]:
    """Sum space-group probabilities (N, C) into a coarser level: {'names': (K,), 'probs': (N, K)}."""
    if level not in LEVELS:
        raise ConfigError(f"unknown level '{level}'; choose from {sorted(LEVELS)}")
    names = [LEVELS[level](sg) for sg in class_labels]
    unique = sorted(set(names))
    out = np.zeros((probs.shape[0], len(unique)))
    for j, name in enumerate(names):
        out[:, unique.index(name)] += probs[:, j]
    return {"names": np.array(unique), "probs": out}
