"""Fusing the space-group probabilities of several patterns of one crystal.

Bayes: patterns x_1..x_K of one crystal are conditionally independent given its space group G, so
P(G | x_1..x_K) ∝ P(G)^(1-K) Π_k P(G | x_k) — the product of the per-pattern posteriors with the
prior (the training class balance) divided out K−1 times. Seed 003's ensemble (mean of the
per-pattern probabilities) is kept for comparison.
"""

from __future__ import annotations

import numpy as np

from diffractnet.errors import DataError

_EPS = 1e-12


def _check(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise DataError(f"expected probabilities of shape (patterns, classes), got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise DataError("probabilities must be finite and non-negative")
    return p / p.sum(axis=1, keepdims=True).clip(min=_EPS)


def fuse_posteriors(probs: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
    """(K, C) per-pattern posteriors of one crystal → (C,) fused posterior (uniform prior if None)."""
    p = _check(probs)
    k, c = p.shape
    prior = np.full(c, 1.0 / c) if prior is None else np.asarray(prior, dtype=np.float64)
    if prior.shape != (c,) or (prior <= 0).any():
        raise DataError(f"prior must be {c} positive numbers, got shape {prior.shape}")
    log_post = np.log(p.clip(min=_EPS)).sum(axis=0) - (k - 1) * np.log(prior / prior.sum())
    log_post -= log_post.max()
    post = np.exp(log_post)
    return post / post.sum()


def ensemble_mean(probs: np.ndarray) -> np.ndarray:
    """Seed 003's probability ensemble: the mean of the per-pattern probabilities, (K, C) → (C,)."""
    return _check(probs).mean(axis=0)


def prediction_set(probs: np.ndarray, coverage: float = 0.9) -> list[np.ndarray]:
    """For each row of (N, C) probabilities, the fewest classes (most probable first) whose total
    probability reaches ``coverage``: the set of space groups the pattern cannot tell apart."""
    if not 0 < coverage <= 1:
        raise DataError(f"coverage must be in (0, 1], got {coverage}")
    p = _check(probs)
    order = np.argsort(-p, axis=1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1)
    sizes = (cumulative < coverage - 1e-12).sum(axis=1) + 1
    return [order[i, : sizes[i]] for i in range(len(p))]


def lookalike_set(member: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> list[np.ndarray]:
    """For each row of a look-alike head's (N, C) membership probabilities, the classes at or above
    ``threshold`` together with the most probable class of (N, C) ``probs``, most probable first:
    the groups the pattern cannot tell apart, as the head trained for that question answers it."""
    if not 0 < threshold < 1:
        raise DataError(f"threshold must be in (0, 1), got {threshold}")
    m, p = np.asarray(member, dtype=np.float64), _check(probs)
    if m.shape != p.shape or not np.isfinite(m).all():
        raise DataError(f"membership must be finite and shaped like the probabilities {p.shape}, got {m.shape}")
    keep = m >= threshold
    keep[np.arange(len(p)), p.argmax(axis=1)] = True
    order = np.argsort(-p, axis=1, kind="stable")
    return [row[keep[i, row]] for i, row in enumerate(order)]


def fuse_membership(member: np.ndarray) -> np.ndarray:
    """(K, C) look-alike memberships of K patterns of one crystal → (C,): a group stays as far as
    every pattern allows it (the least of its memberships)."""
    m = np.asarray(member, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 1:
        raise DataError(f"expected memberships of shape (patterns, classes), got {m.shape}")
    return m.min(axis=0)
