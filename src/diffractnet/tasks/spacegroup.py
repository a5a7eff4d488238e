"""Space-group classification: calibrated probabilities, and the coarser levels (crystal system, Laue
class, Bravais) derived from them. Label maps live in ``train.labels``; evaluation and prediction beside this.

Calibration is temperature scaling (Guo et al. 2017): one number T, fitted after training on the
validation materials by minimising the negative log-likelihood of softmax(logits / T). It changes no
decision, only how sure the model says it is, and so how wide the "cannot tell apart" sets are.
A look-alike head's membership threshold is fitted on the same patterns (``fit_lookalike_threshold``):
the level at which its sets most often hold the truth without claiming more groups than physics does.
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


DEFAULT_LOOKALIKE_THRESHOLD = 0.5  # models exported before the fit, and those whose targets hide the true group
LOOKALIKE_THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(14))  # 0.30 … 0.95


def lookalike_threshold(meta: dict) -> float:
    """The membership level a look-alike model's sets keep: fitted at export, 0.5 for older models."""
    return float(meta.get("lookalike_threshold", DEFAULT_LOOKALIKE_THRESHOLD))


def fit_lookalike_threshold(member: np.ndarray, probs: np.ndarray, true_class: np.ndarray, physics_size: np.ndarray,
                            grid: tuple[float, ...] = LOOKALIKE_THRESHOLDS, default: float = DEFAULT_LOOKALIKE_THRESHOLD) -> float:
    """The membership threshold of ``grid`` whose sets (``index.fusion.lookalike_set``) hold the true class
    and are no larger than the physics set on the most patterns (the first best, lowest, on a tie).

    ``member``, ``probs`` (N, C) look-alike memberships and group probabilities; ``true_class`` (N,) column
    indices; ``physics_size`` (N,) the number of groups physics says the pattern cannot tell apart
    (0: unknown, e.g. off a zone axis; such rows are left out). ``default`` when no row is labelled."""
    from diffractnet.index.fusion import lookalike_set

    rows = np.nonzero(np.asarray(physics_size) > 0)[0]
    if not len(rows):
        return float(default)
    m, p = np.asarray(member)[rows], np.asarray(probs)[rows]
    truth, size = np.asarray(true_class)[rows], np.asarray(physics_size)[rows]
    hits = [np.mean([t in s and len(s) <= n for s, t, n in zip(lookalike_set(m, p, th), truth, size)]) for th in grid]
    return float(grid[int(np.argmax(hits))])
