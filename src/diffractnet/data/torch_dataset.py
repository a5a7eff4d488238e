"""A PyTorch ``Dataset`` that renders sparse shards into images on the fly, with augmentation.

Augmentations follow seed 003: random in-plane rotation, centre shift, scale (camera length /
voltage), spot width, diffuse background and shot noise at a random dose.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffractnet.data.shards import Shard, read_shard
from diffractnet.errors import ConfigError, DataError
from diffractnet.render.detector import Detector
from diffractnet.render.images import render_patterns

TARGETS = ("space_group", "crystal_system", "laue_class", "bravais_lattice", "material_id", "quaternion", "zone_axis")


@dataclass(frozen=True)
class Augment:
    """Ranges drawn uniformly per pattern (``dose_e`` log-uniformly); ``None`` keeps the detector's value."""

    rotation_deg: tuple[float, float] = (0.0, 360.0)
    center_shift_px: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    spot_sigma_px: tuple[float, float] | None = None
    background: tuple[float, float] | None = None
    dose_e: tuple[float, float] | None = None


class SpotDataset(torch.utils.data.Dataset):
    """Patterns of one split of a dataset folder as (image (1, H, W) float32 in [0, 1], target).

    ``target`` is one of ``TARGETS`` (or a tuple of them → a dict). With ``seed`` set, the same
    index always gives the same image (validation); without it, the augmentation is drawn afresh
    from torch's RNG (different each epoch and DataLoader worker).
    """

    def __init__(self, root: str | Path, split: str, detector: Detector, augment: Augment | None = None,
                 target: str | tuple[str, ...] = "space_group", seed: int | None = None, cache_shards: int = 8):
        from diffractnet.data.generate import load_card

        self.root, self.detector, self.augment, self.seed = Path(root), detector, augment, seed
        targets = (target,) if isinstance(target, str) else tuple(target)
        unknown = [t for t in targets if t not in TARGETS]
        if unknown:
            raise ConfigError(f"unknown target(s) {unknown}; choose from {TARGETS}")
        self.target = target
        card = load_card(self.root)
        if split not in card["shards"]:
            raise ConfigError(f"split '{split}' is not one of {sorted(card['shards'])}")
        self.card, self.shard_paths = card, [self.root / p for p in card["shards"][split]]
        sizes = np.array([self._shard_size(p) for p in self.shard_paths], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(sizes)])
        self._cache: OrderedDict[int, Shard] = OrderedDict()
        self._cache_size = cache_shards

    @staticmethod
    def _shard_size(path: Path) -> int:
        from diffractnet.data.shards import read_shard_attrs

        if not path.is_file():
            raise DataError(f"shard '{path}' listed in the card is missing; re-run `diffractnet simulate`")
        return int(read_shard_attrs(path)["n_patterns"])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _shard(self, k: int) -> Shard:
        if k in self._cache:
            self._cache.move_to_end(k)
        else:
            self._cache[k] = read_shard(self.shard_paths[k])
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return self._cache[k]

    def locate(self, index: int) -> tuple[Shard, int]:
        """The shard holding pattern ``index`` and the row inside it."""
        if not 0 <= index < len(self):
            raise IndexError(f"pattern {index} out of range 0..{len(self) - 1}")
        k = int(np.searchsorted(self._starts, index, side="right") - 1)
        return self._shard(k), index - int(self._starts[k])

    def _generator(self, index: int) -> torch.Generator:
        base = self.seed if self.seed is not None else torch.initial_seed()
        return torch.Generator().manual_seed(zlib.crc32(f"{base}:{index}".encode()))

    def __getitem__(self, index: int):
        shard, row = self.locate(int(index))
        lo, hi = int(shard.offsets[row]), int(shard.offsets[row + 1])
        gen = self._generator(int(index))
        detector, overrides = self._draw(gen)
        image = render_patterns(torch.tensor([0, hi - lo]), torch.from_numpy(shard.spots["xy_invA"][lo:hi]),
                                torch.from_numpy(shard.spots["intensity"][lo:hi]), detector, generator=gen, **overrides)[0]
        image = image / image.max().clamp(min=1e-12)
        return image[None], self._target(shard, row)

    def _uniform(self, gen: torch.Generator, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=gen))

    def _draw(self, gen: torch.Generator) -> tuple[Detector, dict]:
        a, det = self.augment, self.detector
        if a is None:
            return det, {}
        changes = {}
        if a.spot_sigma_px:
            changes["spot_sigma_px"] = self._uniform(gen, *a.spot_sigma_px)
        if a.background:
            changes["background"] = self._uniform(gen, *a.background)
        if a.dose_e:
            changes["dose_e"] = math.exp(self._uniform(gen, math.log(a.dose_e[0]), math.log(a.dose_e[1])))
        shift = [self._uniform(gen, -a.center_shift_px, a.center_shift_px) for _ in range(2)]
        overrides = {"rotation_deg": self._uniform(gen, *a.rotation_deg), "center_shift_px": shift,
                     "reciprocal_px_invA": det.reciprocal_px_invA * self._uniform(gen, *a.scale)}
        return (det.with_(**changes) if changes else det), overrides

    def _target(self, shard: Shard, row: int):
        names = (self.target,) if isinstance(self.target, str) else self.target
        values = {name: torch.as_tensor(shard.labels[name][row]) for name in names}
        return values[self.target] if isinstance(self.target, str) else values
