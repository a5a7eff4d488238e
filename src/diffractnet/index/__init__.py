"""Inference over many patterns: probability fusion (and, later, chunked scan inference)."""

from diffractnet.index.fusion import ensemble_mean, fuse_membership, fuse_posteriors, lookalike_set, prediction_set

__all__ = ["ensemble_mean", "fuse_membership", "fuse_posteriors", "lookalike_set", "prediction_set"]
