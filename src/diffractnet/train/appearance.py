"""Seed 003's alternative labelling: 2D-lattice appearance classes of zone-axis patterns.

A pattern's class is its similarity-invariant zone descriptor (2D lattice of present reflections,
zone absences, plane symmetry; ``structures.ambiguity``). Each class maps back to the space groups
(among the model's) that can produce it on the lattices of the training materials, so class
probabilities become space-group probabilities by spreading each class evenly over its groups.
Patterns away from zone axes (zone [000]) get no class and are ignored by the loss.
"""

from __future__ import annotations

import numpy as np
import torch

from diffractnet.errors import DataError, StructureError
from diffractnet.structures.ambiguity import zone_descriptor
from diffractnet.structures.crystal import lattice_matrix

IGNORE = -100


class AppearanceLabelMap:
    """(material, zone axis) → appearance class; picklable for loader workers."""

    targets = ("space_group", "zone_axis", "material_id")

    def __init__(self, class_labels: list[int], descriptors: list[tuple], class_groups: list[list[int]],
                 materials: dict[int, tuple[int, list[float]]]) -> None:
        self.class_labels = [int(x) for x in class_labels]
        self.descriptors, self.class_groups = descriptors, class_groups
        self._index = {d: i for i, d in enumerate(descriptors)}
        # material_id → (space group, direct matrix), built once rather than per pattern
        self._materials = {mid: (sg, lattice_matrix(*params)) for mid, (sg, params) in materials.items()}

    @classmethod
    def from_card(cls, card: dict, class_labels: list[int], zone_axes: list[tuple] | None = None):
        """Classes from every training material and every candidate group on its lattice."""
        materials = {m["material_id"]: (m["space_group"], m["lattice_abc_A"] + m["lattice_angles_deg"])
                     for m in card["materials"]}
        zones = zone_axes or zones_in_card(card)
        groups_of: dict[tuple, set[int]] = {}
        for m in card["materials"]:
            if m["split"] != "train":
                continue
            a = lattice_matrix(*m["lattice_abc_A"], *m["lattice_angles_deg"])
            for sg in class_labels:
                for z in zones:
                    try:
                        groups_of.setdefault(zone_descriptor(sg, a, z), set()).add(int(sg))
                    except StructureError:  # the group does not fit this lattice
                        break
        descriptors = sorted(groups_of, key=repr)
        return cls(class_labels, descriptors, [sorted(groups_of[d]) for d in descriptors], materials)

    def _class_of(self, material_id: int, zone: tuple) -> int:
        if not any(zone):
            return IGNORE
        sg, direct_matrix = self._materials[int(material_id)]
        descriptor = zone_descriptor(sg, direct_matrix, zone)
        return self._index.get(descriptor, IGNORE)

    def __call__(self, raw: dict) -> np.ndarray:
        zones = raw["zone_axis"].numpy() if isinstance(raw["zone_axis"], torch.Tensor) else np.asarray(raw["zone_axis"])
        ids = np.asarray(raw["material_id"]).reshape(-1)
        return np.array([self._class_of(m, tuple(int(x) for x in z)) for m, z in zip(ids, zones.reshape(-1, 3))])

    @property
    def num_outputs(self) -> int:
        return len(self.descriptors)

    def metadata(self) -> dict:
        return {"label_scheme": "appearance", "class_labels": self.class_labels,
                "appearance_groups": self.class_groups, "n_appearance_classes": len(self.descriptors)}


def zones_in_card(card: dict) -> list[tuple]:
    """The zone axes the dataset's config asks for (symmetry-distinct lists are recomputed per material)."""
    spec = card["config"]["orientations"]
    if isinstance(spec.get("zone_axes"), list):
        return [tuple(z) for z in spec["zone_axes"]]
    r = range(0, spec.get("max_index", 3) + 1)
    from math import gcd

    return [(u, v, w) for u in r for v in r for w in r if (u, v, w) != (0, 0, 0) and gcd(gcd(u, v), w) == 1]


def space_group_probabilities(model_probs: np.ndarray, metadata: dict) -> np.ndarray:
    """Model outputs (N, K) → space-group probabilities (N, C) in ``metadata['class_labels']`` order."""
    from diffractnet.train.labels import outputs_space_groups

    if outputs_space_groups(metadata):
        return model_probs
    labels = metadata["class_labels"]
    groups = metadata.get("appearance_groups")
    if not groups or len(groups) != model_probs.shape[1]:
        raise DataError("model metadata does not describe its appearance classes")
    m = np.zeros((len(groups), len(labels)))
    for i, gs in enumerate(groups):
        for sg in gs:
            m[i, labels.index(sg)] = 1.0 / len(gs)
    return model_probs @ m
