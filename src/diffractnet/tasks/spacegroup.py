"""Space-group classification: label maps, probabilities and the coarser levels derived from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffractnet.errors import ConfigError, DataError
from diffractnet.structures.symmetry import bravais_lattice, crystal_system, laue_class

LEVELS = {"crystal_system": crystal_system, "laue_class": laue_class, "bravais_lattice": bravais_lattice}


@dataclass(frozen=True)
class SpaceGroupLabels:
    """The classifier's output columns: ``class_labels[i]`` is the space group of column i."""

    class_labels: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.class_labels or len(set(self.class_labels)) != len(self.class_labels):
            raise ConfigError("space-group classes must be a non-empty list without repeats")

    @property
    def num_classes(self) -> int:
        return len(self.class_labels)

    def index(self, space_groups) -> np.ndarray:
        """Column index of each space group; ``DataError`` for one the model does not know."""
        lookup = {sg: i for i, sg in enumerate(self.class_labels)}
        values = np.atleast_1d(np.asarray(space_groups)).astype(int)
        unknown = sorted({int(v) for v in values if int(v) not in lookup})
        if unknown:
            raise DataError(f"space groups {unknown} are not among the model's classes {list(self.class_labels)}")
        return np.array([lookup[int(v)] for v in values], dtype=np.int64)


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


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities (N, C) of a classifier over (N, 1, H, W) images, in batches."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        logits = model(images[start:start + batch_size])
        out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))
