"""Inference over many patterns: probability fusion (and, later, chunked scan inference)."""

from diffractnet.index.fusion import ensemble_mean, fuse_posteriors, prediction_set

__all__ = ["ensemble_mean", "fuse_posteriors", "prediction_set"]
