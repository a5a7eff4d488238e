"""Label schemes for training: which class each pattern belongs to."""

from __future__ import annotations

import numpy as np
import torch

from diffractnet.errors import ConfigError, DataError
from diffractnet.train.config import TrainConfig


class SpaceGroupLabelMap:
    """Raw space-group numbers → column indices of ``class_labels`` (picklable, for loader workers)."""

    targets = ("space_group",)

    def __init__(self, class_labels: list[int]) -> None:
        self.class_labels = [int(x) for x in class_labels]
        self._lookup = np.full(231, -1, dtype=np.int64)
        self._lookup[self.class_labels] = np.arange(len(self.class_labels))

    def __call__(self, raw) -> np.ndarray:
        raw = raw["space_group"] if isinstance(raw, dict) else raw
        sg = np.asarray(raw.numpy() if isinstance(raw, torch.Tensor) else raw, dtype=np.int64)
        out = self._lookup[sg]
        if (out < 0).any():
            raise DataError(f"space groups {sorted(set(sg[out < 0].tolist()))} are not among the classes {self.class_labels}")
        return out

    @property
    def num_outputs(self) -> int:
        return len(self.class_labels)

    def metadata(self) -> dict:
        return {"label_scheme": "space_group", "class_labels": self.class_labels}


class SpaceGroupSetLabelMap(SpaceGroupLabelMap):
    """Soft space-group targets that know what physics cannot tell apart: a zone-axis pattern's target
    is its set of look-alike groups (``structures.visible_ambiguity``: the same visible reflections
    inside ``field_invA`` [Å⁻¹], scale, turn and mirror free), each weighted by its training share, i.e.
    the Bayes posterior of a pattern that really is identical for every group of the set. A network
    trained on it says "225 or 227" where the pattern cannot say more, instead of guessing from
    intensities it learned on the training materials — what fusion over several zone axes needs.
    Patterns off zone axes (zone [000]) keep their one-hot group."""

    targets = ("space_group", "zone_axis", "material_id")

    def __init__(self, class_labels: list[int], prior: np.ndarray, zone_axes: list[tuple], field_invA: float,
                 materials: dict[int, tuple[int, list[float]]]) -> None:
        super().__init__(class_labels)
        self.prior, self.zone_axes, self.field_invA = np.asarray(prior, dtype=np.float64), zone_axes, float(field_invA)
        self._materials = materials  # material_id → (space group, lattice a b c α β γ)
        self._cache: dict[tuple, np.ndarray] = {}

    @classmethod
    def from_card(cls, card: dict, class_labels: list[int], field_invA: float, **options) -> "SpaceGroupSetLabelMap":
        from diffractnet.tasks.spacegroup_eval import train_prior
        from diffractnet.train.appearance import zones_in_card

        materials = {m["material_id"]: (m["space_group"], m["lattice_abc_A"] + m["lattice_angles_deg"])
                     for m in card["materials"]}
        return cls(class_labels, train_prior(card, class_labels), zones_in_card(card), field_invA, materials, **options)

    def prepare(self, splits: list) -> None:
        """Compute every target once, before loader workers copy the map: ``splits`` holds
        ``(zone_axis (N, 3), material_id (N,))`` label arrays. The look-alike groups are then sought at
        the zone axes the data holds, as the evaluation does (``tasks.spacegroup_eval.physics_sets``)."""
        pairs = {(int(m), tuple(int(v) for v in z)) for zones, ids in splits
                 for z, m in zip(np.asarray(zones).reshape(-1, 3).tolist(), np.asarray(ids).reshape(-1).tolist())}
        present = sorted({z for _, z in pairs if any(z)})
        if present:
            self.zone_axes, self._cache = present, {}
        for mid, zone in sorted(pairs):
            if any(zone):
                self._target(mid, zone)

    def _target(self, material_id: int, zone: tuple) -> np.ndarray:
        key = (material_id, zone)
        if key not in self._cache:
            from diffractnet.structures.crystal import lattice_matrix
            from diffractnet.structures.visible_ambiguity import visible_zone_ambiguity

            sg, params = self._materials[material_id]
            alike = visible_zone_ambiguity(sg, zone, lattice_matrix(*params), self.class_labels, self.zone_axes,
                                           self.field_invA)
            target = np.zeros(len(self.class_labels))
            cols = self._lookup[list(alike)]
            target[cols] = self.prior[cols]
            self._cache[key] = (target / target.sum()).astype(np.float32)
        return self._cache[key]

    def __call__(self, raw: dict) -> np.ndarray:
        groups = super().__call__(raw["space_group"])
        zones = np.asarray(raw["zone_axis"]).reshape(-1, 3).astype(int)
        ids = np.asarray(raw["material_id"]).reshape(-1).astype(int)
        out = np.eye(len(self.class_labels), dtype=np.float32)[groups]
        for i, (mid, zone) in enumerate(zip(ids.tolist(), map(tuple, zones.tolist()))):
            if any(zone):
                out[i] = self._target(mid, zone)
        return out

    def metadata(self) -> dict:
        return {"label_scheme": "space_group_set", "class_labels": self.class_labels, "set_field_invA": self.field_invA}


class LookAlikeLabelMap(SpaceGroupSetLabelMap):
    """Targets for a network with two heads over the same C groups, (N, 2C) floats: the group target
    (one-hot, or with ``soft_groups`` the look-alike set weighted by the prior, as ``SpaceGroupSetLabelMap``)
    and then one membership bit per group — 1 where physics says the pattern's visible reflections are
    those of that group too, scale, turn and mirror free (``structures.visible_ambiguity``). The
    membership head learns "which groups can this pattern not tell apart" as C yes/no questions, not
    as probability mass that also has to rank them; a pattern off a zone axis (zone [000]) has no
    known set, so its bits are NaN and ``train.module.lookalike_loss`` skips them."""

    def __init__(self, *args, soft_groups: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.soft_groups = bool(soft_groups)

    def __call__(self, raw: dict) -> np.ndarray:
        alike = super().__call__(raw)
        onehot = np.eye(len(self.class_labels), dtype=np.float32)[SpaceGroupLabelMap.__call__(self, raw["space_group"])]
        member = (alike > 0).astype(np.float32)
        member[~np.asarray(raw["zone_axis"]).reshape(-1, 3).any(axis=1)] = np.nan
        return np.concatenate([alike if self.soft_groups else onehot, member], axis=1)

    @property
    def num_outputs(self) -> int:
        return 2 * len(self.class_labels)

    def metadata(self) -> dict:
        scheme = "space_group_set" if self.soft_groups else "space_group"
        return {"label_scheme": scheme, "class_labels": self.class_labels, "set_field_invA": self.field_invA,
                "lookalike_head": True}


def split_lookalike(columns):
    """(..., 2C) outputs or targets of a model with a look-alike head → (group part, membership part):
    the layout ``LookAlikeLabelMap`` writes and the network's last layer follows."""
    c = columns.shape[-1] // 2
    return columns[..., :c], columns[..., c:]


def outputs_space_groups(metadata: dict) -> bool:
    """Whether a model's outputs are one column per space group (not seed 003's appearance classes)."""
    return metadata.get("label_scheme", "space_group") in ("space_group", "space_group_set")


def build_label_map(config: TrainConfig, card: dict):
    """The label map of ``config.labels`` for the dataset described by ``card``."""
    train_groups = sorted({m["space_group"] for m in card["materials"] if m["split"] == "train"})
    if not train_groups:
        raise ConfigError(f"dataset '{config.dataset}' has no training materials")
    groups = config.labels.space_groups or train_groups
    from diffractnet.tasks.spacegroup_eval import visible_field_invA

    field_invA = visible_field_invA(config.image.model_dump(), config.augment)
    if config.labels.lookalike_head:
        return LookAlikeLabelMap.from_card(card, groups, field_invA, soft_groups=config.labels.scheme == "space_group_set")
    if config.labels.scheme == "space_group":
        return SpaceGroupLabelMap(groups)
    if config.labels.scheme == "space_group_set":
        return SpaceGroupSetLabelMap.from_card(card, groups, field_invA)
    from diffractnet.train.appearance import AppearanceLabelMap

    return AppearanceLabelMap.from_card(card, groups)
