"""``predict``: space-group probabilities of one or several patterns of one unknown crystal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diffractnet.index.fusion import fuse_membership, fuse_posteriors, lookalike_set, prediction_set
from diffractnet.io.patterns import load_pattern_image, prepare_for_model
from diffractnet.structures.ambiguity import global_class_of
from diffractnet.tasks.spacegroup import coarse_probabilities, lookalike_threshold, spacegroup_outputs


def images_for_model(paths: list[str | Path], meta: dict, image_px_invA: float | None = None) -> torch.Tensor:
    """Load and prepare pattern files → (N, C, S, S) model inputs in the model's view (``DataError`` on a bad file)."""
    from diffractnet.render.canonical import model_view

    im = meta["image"]
    images = torch.stack([prepare_for_model(load_pattern_image(p), im["size_px"], image_px_invA, im["reciprocal_px_invA"])
                          for p in paths])
    return model_view(images, im.get("view", "plain"), im["intensity_power"])


@torch.no_grad()
def predict_patterns(model: torch.nn.Module, meta: dict, images: torch.Tensor, coverage: float = 0.9,
                     top: int = 5) -> dict:
    """Per-pattern probabilities, indistinguishable sets and a fused answer for one crystal.

    Returns {'class_labels', 'per_pattern': [{'top': [(sg, p)], 'set': [sg...]}], 'fused': {...},
    'set_from'}; the fused part also names the global ambiguity class of its answer: the space groups
    (of all 230) that no kinematic pattern at any orientation tells apart from it. The sets come from the
    model's look-alike head where it has one (per pattern: the groups it cannot tell apart; fused: those
    every pattern allows, ``index.fusion``; both at the model's ``lookalike_threshold``, fitted on the
    validation materials), else from the fewest groups reaching ``coverage``; with a head, each pattern
    also lists its 'lookalike' membership per group, and the result its 'lookalike_threshold'.
    """
    model.eval()
    probs, member = spacegroup_outputs(model, meta, images)
    threshold = lookalike_threshold(meta)
    labels = np.array(meta["class_labels"])
    prior = np.asarray(meta.get("class_prior") or np.full(len(labels), 1 / len(labels)))
    fused = fuse_posteriors(probs, prior)
    both = np.vstack([probs, fused[None]])
    sets = prediction_set(both, coverage) if member is None else \
        lookalike_set(np.vstack([member, fuse_membership(member)[None]]), both, threshold)
    per_pattern = [{"top": _top(p, labels, top), "set": sorted(labels[s].tolist()), "probabilities": p.tolist()}
                   for p, s in zip(probs, sets[:-1])]
    if member is not None:
        for row, m in zip(per_pattern, member):
            row["lookalike"] = dict(zip(labels.tolist(), np.round(m, 4).tolist()))
    coarse = {level: dict(zip(c["names"].tolist(), c["probs"][0].round(4).tolist()))
              for level in ("crystal_system", "laue_class", "bravais_lattice")
              for c in [coarse_probabilities(fused[None], tuple(labels.tolist()), level)]}
    best = int(labels[int(np.argmax(fused))])
    return {"class_labels": labels.tolist(), "per_pattern": per_pattern,
            "fused": {"top": _top(fused, labels, top), "set": sorted(labels[sets[-1]].tolist()),
                      "probabilities": fused.tolist(), "coarse": coarse,
                      "global_class": list(global_class_of(best))}, "coverage": coverage,
            "set_from": "coverage" if member is None else "lookalike head",
            **({} if member is None else {"lookalike_threshold": threshold})}


def _top(p: np.ndarray, labels: np.ndarray, n: int) -> list[tuple[int, float]]:
    order = np.argsort(-p)[:n]
    return [(int(labels[i]), round(float(p[i]), 4)) for i in order]
