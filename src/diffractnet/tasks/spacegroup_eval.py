"""Evaluating a space-group model on unseen materials: single patterns, ambiguity sets, fusion.

Per pattern: top-1, and accuracy up to the per-pattern ambiguity — the predicted set (fewest most
probable groups reaching ``coverage``) holds the true group and is no larger than the set of
groups that physics says give this very pattern (``structures.ambiguity.zone_ambiguity``).
Per crystal: patterns at three different zone axes fused into one posterior (and seed 003's mean).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from diffractnet.data.torch_dataset import Augment, SpotDataset
from diffractnet.errors import DataError
from diffractnet.index.fusion import ensemble_mean, fuse_posteriors, lookalike_set, prediction_set
from diffractnet.render.detector import detector_from_image_spec
from diffractnet.structures.ambiguity import zone_ambiguity
from diffractnet.structures.visible_ambiguity import visible_zone_ambiguity
from diffractnet.structures.crystal import lattice_matrix
from diffractnet.tasks.spacegroup import lookalike_threshold, spacegroup_outputs

# "Realistic" test conditions: what a microscope gives, not what training saw most often. An SAED
# pattern records 10⁶–10⁹ electrons; 10⁵–10⁶ is a short exposure read out binned (the weakest
# reflections of 10⁻³ of the strongest get ~10 counts). ``LOW_DOSE_E`` is a nanobeam 4D-STEM pattern's
# dose, where such reflections get none.
SAED_DOSE_E = (1e5, 1e6)
LOW_DOSE_E = (5e3, 2e4)
EVAL_AUGMENT = Augment(rotation_deg=(0.0, 360.0), center_shift_px=2.0, scale=(0.95, 1.05), spot_sigma_px=(1.0, 1.3),
                       background=(0.02, 0.08), dose_e=SAED_DOSE_E)


def eval_augment(dose_e: tuple[float, float] | None = None) -> Augment:
    """``EVAL_AUGMENT`` with its dose range [electrons per pattern, log-uniform] replaced if given."""
    if dose_e is None:
        return EVAL_AUGMENT
    low, high = (float(v) for v in dose_e)
    if not (0 < low <= high and high < float("inf")):
        raise DataError(f"evaluation dose range must be 0 < low <= high electrons per pattern, got {dose_e}")
    return replace(EVAL_AUGMENT, dose_e=(low, high))


@dataclass
class Predictions:
    """Everything known about each evaluated pattern."""

    probs: np.ndarray        # (N, C) space-group probabilities, columns = class_labels
    space_group: np.ndarray  # (N,) true
    zone_axis: np.ndarray    # (N, 3) nominal zone ([0, 0, 0]: random orientation)
    material_id: np.ndarray  # (N,)
    class_labels: list[int]
    lookalike: np.ndarray | None = None  # (N, C) the look-alike head's memberships, if the model has one
    lookalike_threshold: float = 0.5     # the membership level its sets keep (fitted on validation)


@torch.no_grad()
def predict_split(model: torch.nn.Module, meta: dict, dataset: Path, split: str = "test",
                  augment: Augment | None = EVAL_AUGMENT, seed: int = 1234, batch_size: int = 256) -> Predictions:
    """Render every pattern of ``split`` (seeded noise) and predict space-group probabilities."""
    ds = SpotDataset(dataset, split, detector_from_image_spec(meta["image"]), augment,
                     target=("space_group", "zone_axis", "material_id"), seed=seed, view=meta["image"].get("view", "plain"))
    if len(ds) == 0:
        raise DataError(f"split '{split}' of '{dataset}' holds no patterns")
    model.eval()
    probs, members, targets = [], [], []
    for start in range(0, len(ds), batch_size):
        images, t = ds.render_batch(list(range(start, min(len(ds), start + batch_size))))
        p, member = spacegroup_outputs(model, meta, images)
        probs.append(p), members.append(member)
        targets.append({k: v.numpy() for k, v in t.items()})
    probs = np.concatenate(probs)
    cat = {k: np.concatenate([t[k] for t in targets]) for k in targets[0]}
    return Predictions(probs, cat["space_group"].astype(int), cat["zone_axis"].astype(int),
                       cat["material_id"].astype(int), list(meta["class_labels"]),
                       None if members[0] is None else np.concatenate(members),
                       lookalike_threshold(meta))


def visible_field_invA(image_spec: dict, augment: Augment | None = EVAL_AUGMENT) -> float:
    """Radius [Å⁻¹] of the disc every evaluated pattern surely shows: the inscribed circle of the model's
    image at the smallest reciprocal pixel size the evaluation draws."""
    low = min(augment.scale) if augment is not None else 1.0
    return image_spec["size_px"] / 2 * image_spec["reciprocal_px_invA"] * low


def physics_sets(pred: Predictions, card: dict, field_invA: float | None = None) -> list[tuple[int, ...] | None]:
    """Per pattern, the model's groups that give the same pattern (None for random orientations): the
    same visible reflections inside a detector field of ``field_invA`` [Å⁻¹]
    (``structures.visible_ambiguity``), or the same whole zero-order zone when it is None."""
    lattices = {m["material_id"]: lattice_matrix(*m["lattice_abc_A"], *m["lattice_angles_deg"]) for m in card["materials"]}
    zones = sorted({tuple(z) for z in pred.zone_axis.tolist() if any(z)})
    cache: dict[tuple, tuple] = {}
    out = []
    for sg, z, mid in zip(pred.space_group.tolist(), pred.zone_axis.tolist(), pred.material_id.tolist()):
        if not any(z):
            out.append(None)
            continue
        key = (sg, tuple(z), mid)
        if key not in cache:
            cache[key] = zone_ambiguity(sg, tuple(z), lattices[mid], pred.class_labels, zones) if field_invA is None \
                else visible_zone_ambiguity(sg, tuple(z), lattices[mid], pred.class_labels, zones, field_invA)
        out.append(cache[key])
    return out


def within_set_accuracy(pred: Predictions, sets: list, coverage: float = 0.9) -> dict:
    """Share of zone-axis patterns whose predicted set holds the truth and is no larger than physics allows.
    The predicted set is the look-alike head's answer where the model has one (``index.fusion.lookalike_set``
    at the model's ``lookalike_threshold``), else the fewest most probable groups reaching ``coverage``."""
    head = pred.lookalike is not None
    chosen = lookalike_set(pred.lookalike, pred.probs, pred.lookalike_threshold) if head \
        else prediction_set(pred.probs, coverage)
    labels = np.array(pred.class_labels)
    hits, sizes, allowed = [], [], []
    for i, phys in enumerate(sets):
        if phys is None:
            continue
        predicted = set(labels[chosen[i]].tolist())
        hits.append(pred.space_group[i] in predicted and len(predicted) <= len(phys))
        sizes.append(len(predicted))
        allowed.append(len(phys))
    if not hits:
        return {"within_set": float("nan"), "n": 0}
    return {"within_set": float(np.mean(hits)), "n": len(hits), "mean_predicted_set": float(np.mean(sizes)),
            "mean_physics_set": float(np.mean(allowed)), "coverage": coverage,
            "set_from": "lookalike head" if head else "coverage",
            **({"lookalike_threshold": pred.lookalike_threshold} if head else {})}


def presence_reader(pred: Predictions, sets: list, prior: np.ndarray) -> Predictions:
    """What reading only which reflections are present gives: per zone-axis pattern, the prior spread
    over its physics set (``physics_sets``), the Bayes posterior of a reader blind to intensities.
    Rows off zone axes (set None) keep the model's probabilities. A model beats it only by reading
    relative intensities, which belong to a material rather than to its group."""
    labels = list(pred.class_labels)
    probs = pred.probs.copy()
    for i, alike in enumerate(sets):
        if alike is None:
            continue
        row = np.zeros(len(labels))
        cols = [labels.index(g) for g in alike]
        row[cols] = np.asarray(prior, dtype=float)[cols]
        probs[i] = row / row.sum()
    return replace(pred, probs=probs)


def apparent_groups(card: dict) -> dict[int, tuple[int, ...]]:
    """material id → its own group and those it mimics kinematically (``physics.pseudosymmetry``; a
    card written before that was recorded gives just the own group)."""
    return {m["material_id"]: tuple(m.get("apparent_space_groups") or [m["space_group"]]) for m in card["materials"]}


def apparent_top1(pred: Predictions, apparent: dict[int, tuple[int, ...]]) -> float:
    """Share of patterns whose most probable group is the true one or one the material mimics."""
    guess = np.array(pred.class_labels)[pred.probs.argmax(1)]
    return float(np.mean([g in apparent[m] for g, m in zip(guess.tolist(), pred.material_id.tolist())]))


def fused_accuracy(pred: Predictions, prior: np.ndarray | None, k: int = 3, draws_per_material: int = 50,
                   seed: int = 0, apparent: dict[int, tuple[int, ...]] | None = None) -> dict:
    """Top-1 of ``k`` patterns at ``k`` different zone axes of one crystal: Bayes fusion and seed 003's mean;
    with ``apparent`` (``apparent_groups``) also the fused top-1 that counts a mimicked group as right."""
    rng = np.random.default_rng(seed)
    labels = np.array(pred.class_labels)
    fused_hits, mean_hits, apparent_hits, per_material = [], [], [], {}
    for mid in np.unique(pred.material_id):
        rows = np.flatnonzero((pred.material_id == mid) & pred.zone_axis.any(axis=1))
        by_zone: dict[tuple, list[int]] = {}
        for r in rows:
            by_zone.setdefault(tuple(pred.zone_axis[r]), []).append(int(r))
        if len(by_zone) < k:
            continue
        zones = list(by_zone)
        hits = []
        accepted = (apparent or {}).get(int(mid), ())
        for _ in range(draws_per_material):
            picked = [by_zone[zones[j]][rng.integers(len(by_zone[zones[j]]))] for j in rng.choice(len(zones), k, replace=False)]
            truth = pred.space_group[picked[0]]
            answer = labels[np.argmax(fuse_posteriors(pred.probs[picked], prior))]
            hits.append(answer == truth)
            apparent_hits.append(answer == truth or answer in accepted)
            mean_hits.append(labels[np.argmax(ensemble_mean(pred.probs[picked]))] == truth)
        fused_hits += hits
        per_material[int(mid)] = float(np.mean(hits))
    out = {"fused_top1": float(np.mean(fused_hits)) if fused_hits else float("nan"),
           "ensemble_mean_top1": float(np.mean(mean_hits)) if mean_hits else float("nan"),
           "n_draws": len(fused_hits), "per_material": per_material, "k": k}
    if apparent is not None:
        out["fused_top1_apparent"] = float(np.mean(apparent_hits)) if apparent_hits else float("nan")
    return out


def per_zone_axis(pred: Predictions, names: dict[int, str], sets: list | None = None) -> dict[str, dict]:
    """material name → zone axis 'uvw' → {n, true_group, accuracy, most_common (predicted group),
    most_common_share, physics_set (the look-alike groups of ``physics_sets``, when given)} over its
    zone-axis patterns: where a model's errors repeat across one material's zones, fusing cannot undo them."""
    guess = np.array(pred.class_labels)[pred.probs.argmax(1)]
    out: dict[str, dict] = {}
    for mid in np.unique(pred.material_id):
        rows = np.flatnonzero((pred.material_id == mid) & pred.zone_axis.any(axis=1))
        zones: dict[str, dict] = {}
        for zone in sorted({tuple(z) for z in pred.zone_axis[rows].tolist()}, key=lambda z: (sum(z), z)):
            here = rows[(pred.zone_axis[rows] == zone).all(axis=1)]
            values, counts = np.unique(guess[here], return_counts=True)
            entry = {"n": len(here), "true_group": int(pred.space_group[here[0]]),
                     "accuracy": float(np.mean(guess[here] == pred.space_group[here])),
                     "most_common": int(values[counts.argmax()]), "most_common_share": float(counts.max() / len(here))}
            if sets is not None and sets[here[0]] is not None:
                entry["physics_set"] = [int(g) for g in sets[here[0]]]
            zones["".join(map(str, zone))] = entry
        out[names.get(int(mid), str(int(mid)))] = zones
    return out


def train_prior(card: dict, class_labels: list[int]) -> np.ndarray:
    """Training-set share of patterns of each class (the prior the classifier learned)."""
    counts = card["counts"]["train"]["patterns_per_space_group"]
    prior = np.array([counts.get(str(sg), 0) for sg in class_labels], dtype=float) + 1.0
    return prior / prior.sum()
