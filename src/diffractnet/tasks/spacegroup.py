"""Space-group classification: calibrated probabilities, and the coarser levels (crystal system, Laue
class, Bravais) derived from them. Label maps live in ``train.labels``; evaluation and prediction beside this.

Calibration is temperature scaling (Guo et al. 2017): one number T, fitted after training on the
validation materials by minimising the negative log-likelihood of softmax(logits / T). It changes no
decision, only how sure the model says it is, and so how wide the "cannot tell apart" sets are.
"""

from __future__ import annotations

import numpy as np
import torch

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


@torch.no_grad()
def spacegroup_outputs(model: torch.nn.Module, meta: dict, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 1, S, S) model inputs → ((N, C) space-group probabilities, columns ``meta['class_labels']``,
    at the model's calibrated temperature (``meta['temperature']``, 1 if absent); and, for a model with a
    look-alike head (``meta['lookalike_head']``), (N, C) probabilities that physics lets each group give
    this pattern, else None)."""
    from diffractnet.train.appearance import space_group_probabilities
    from diffractnet.train.labels import split_lookalike

    logits = model(images).float()
    member = None
    if meta.get("lookalike_head"):
        logits, member = split_lookalike(logits)
        member = torch.sigmoid(member).numpy()
    logits = logits / float(meta.get("temperature") or 1.0)
    return space_group_probabilities(torch.softmax(logits, -1).numpy(), meta), member


def class_probabilities(model: torch.nn.Module, meta: dict, images: torch.Tensor) -> np.ndarray:
    """(N, 1, S, S) model inputs → (N, C) space-group probabilities (``spacegroup_outputs``' first part)."""
    return spacegroup_outputs(model, meta, images)[0]


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The T > 0 minimising the mean cross-entropy of softmax(``logits`` / T) against ``labels``
    ((N, C) floats; labels (N,) class indices, negative ones ignored, or (N, C) soft targets).
    1.0 when nothing is labelled."""
    from scipy.optimize import minimize_scalar

    keep = labels.sum(-1) > 0 if labels.is_floating_point() else labels >= 0
    z, y = logits[keep].double(), labels[keep]
    y = y.double() if y.is_floating_point() else y.long()
    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(z / np.exp(log_t), y))

    best = minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-3})
    return float(np.exp(best.x))
