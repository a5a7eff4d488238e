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


def build_label_map(config: TrainConfig, card: dict):
    """The label map of ``config.labels`` for the dataset described by ``card``."""
    train_groups = sorted({m["space_group"] for m in card["materials"] if m["split"] == "train"})
    if not train_groups:
        raise ConfigError(f"dataset '{config.dataset}' has no training materials")
    groups = config.labels.space_groups or train_groups
    if config.labels.scheme == "space_group":
        return SpaceGroupLabelMap(groups)
    from diffractnet.train.appearance import AppearanceLabelMap

    return AppearanceLabelMap.from_card(card, groups)
