"""Data for training: rendered-on-the-fly batches of one dataset folder, sharded across DDP ranks."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from diffractnet.data.torch_dataset import Augment, SpotDataset
from diffractnet.render.detector import Detector, detector_from_image_spec
from diffractnet.train.config import TrainConfig


class EpochBatches(torch.utils.data.Sampler):
    """Lists of indices, one list per batch; a fresh permutation each epoch, this rank's share only.

    ``per_epoch`` patterns are drawn per epoch (all when None; more than the dataset repeats it).
    """

    def __init__(self, n: int, batch_size: int, per_epoch: int | None, seed: int, shuffle: bool,
                 rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size, self.per_epoch, self.seed = n, batch_size, per_epoch or n, seed
        self.shuffle, self.rank, self.world_size, self.epoch = shuffle, rank, world_size, 0

    def _order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        reps = -(-self.per_epoch // self.n)
        order = np.concatenate([rng.permutation(self.n) if self.shuffle else np.arange(self.n) for _ in range(reps)])
        return order[: self.per_epoch][self.rank :: self.world_size]

    def __iter__(self):
        order = self._order()
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size].tolist()

    def __len__(self) -> int:
        share = len(range(self.rank, self.per_epoch, self.world_size))
        return -(-share // self.batch_size)


class Labelled(torch.utils.data.Dataset):
    """Maps the raw targets of a ``SpotDataset`` batch with ``label_map``: class indices (long), or
    soft targets (float rows summing to 1)."""

    def __init__(self, spots: SpotDataset, label_map) -> None:
        self.spots, self.label_map = spots, label_map

    def __len__(self) -> int:
        return len(self.spots)

    def __getitem__(self, indices: list[int]):
        images, raw = self.spots.render_batch(indices)
        labels = np.asarray(self.label_map(raw))
        return images, torch.as_tensor(labels, dtype=torch.float32 if labels.dtype.kind == "f" else torch.long)


def detector_of(config: TrainConfig) -> Detector:
    """The detector that renders training (and prediction-time reference) images."""
    return detector_from_image_spec(config.image.model_dump())


def augment_of(config: TrainConfig) -> Augment | None:
    return None if config.augment is None else Augment(**config.augment.model_dump())


class EpochDataModule(L.LightningDataModule):
    """Loaders of batched datasets (``train_set``, ``val_set`` set by ``setup``) through ``EpochBatches``,
    sized by ``config.trainer`` (batch size, patterns per epoch, workers) and seeded by ``config.seed``."""

    def _loader(self, dataset, shuffle: bool, per_epoch: int | None) -> torch.utils.data.DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochBatches(len(dataset), self.config.trainer.batch_size, per_epoch, self.config.seed, shuffle, rank, world)
        workers = self.config.trainer.num_workers
        return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=workers,
                                           persistent_workers=workers > 0)

    def train_dataloader(self):
        return self._loader(self.train_set, True, self.config.trainer.train_patterns_per_epoch)

    def val_dataloader(self):
        return [] if self.val_set is None else self._loader(self.val_set, False, None)


class PatternDataModule(EpochDataModule):
    """Train and validation loaders over ``config.dataset``; targets as requested by ``label_map``."""

    def __init__(self, config: TrainConfig, label_map, targets: tuple[str, ...]) -> None:
        super().__init__()
        self.config, self.label_map, self.targets = config, label_map, targets

    def setup(self, stage: str | None = None) -> None:
        det, aug = detector_of(self.config), augment_of(self.config)
        root = self.config.dataset
        view = self.config.image.view
        self.train_set = Labelled(SpotDataset(root, "train", det, aug, target=self.targets, view=view), self.label_map)
        val = SpotDataset(root, "val", det, aug, target=self.targets, seed=self.config.seed, view=view)
        if hasattr(self.label_map, "prepare"):  # targets computed once, here, not in every loader worker
            self.label_map.prepare([(s.label_array("zone_axis"), s.label_array("material_id"))
                                    for s in (self.train_set.spots, val) if len(s)])
        self.val_set = Labelled(val, self.label_map) if len(val) else None
