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
from diffractnet.render.canonical import model_view
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
    shell_jitter: float = 0.0


def shell_jitter(xy_invA: torch.Tensor, offsets: torch.Tensor, sigma: float, generator: torch.Generator,
                 terms: int = 16, max_cycles_per_invA: float = 10.0) -> torch.Tensor:
    """(N,) intensity multipliers exp(σ·h_b(|g|)) for CSR spots, h_b a random smooth function of |g| drawn
    per pattern b (a sum of ``terms`` cosines, unit variance, up to ``max_cycles_per_invA``).

    Spots at one |g| (a symmetry-equivalent family, ±g) get the same factor, so the pattern keeps its
    plane symmetry and its absences while the relative strength of reflection families changes as it
    does from one material to another (scattering factors, site occupancy, Debye–Waller, thickness):
    a classifier then has to read lattice and absences rather than remember each training material's
    intensities."""
    n_patterns = len(offsets) - 1
    counts = offsets[1:] - offsets[:-1]
    b_idx = torch.repeat_interleave(torch.arange(n_patterns), counts)
    freq = max_cycles_per_invA * torch.rand(n_patterns, terms, generator=generator)
    phase = 2 * math.pi * torch.rand(n_patterns, terms, generator=generator)
    amp = torch.randn(n_patterns, terms, generator=generator) * math.sqrt(2.0 / terms)
    g = xy_invA.float().norm(dim=-1)[:, None]  # (N, 1)
    h = (amp[b_idx] * torch.cos(2 * math.pi * freq[b_idx] * g + phase[b_idx])).sum(-1)
    return torch.exp(sigma * h)


class SpotDataset(torch.utils.data.Dataset):
    """Patterns of one split of a dataset folder as (image (1, H, W) float32 in [0, 1], target), in the
    classifier's input ``view`` (``render.canonical.model_view``).

    ``target`` is one of ``TARGETS`` (or a tuple of them → a dict). With ``seed`` set, the same
    index always gives the same image (validation); without it, the augmentation is drawn afresh
    from torch's RNG (different each epoch and DataLoader worker).
    """

    def __init__(self, root: str | Path, split: str, detector: Detector, augment: Augment | None = None,
                 target: str | tuple[str, ...] = "space_group", seed: int | None = None, cache_shards: int = 256,
                 view: str = "plain"):
        from diffractnet.data.generate import load_card

        self.root, self.detector, self.augment, self.seed, self.view = Path(root), detector, augment, seed, view
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

    def label_array(self, name: str) -> np.ndarray:
        """One per-pattern label of the whole split (``labels/<name>`` of every shard, in index order)."""
        parts = [self._shard(k).labels[name] for k in range(len(self.shard_paths))]
        if not parts:
            return np.zeros((0,), dtype=np.int64)
        return np.concatenate(parts)

    def locate(self, index: int) -> tuple[Shard, int]:
        """The shard holding pattern ``index`` and the row inside it."""
        if not 0 <= index < len(self):
            raise IndexError(f"pattern {index} out of range 0..{len(self) - 1}")
        k = int(np.searchsorted(self._starts, index, side="right") - 1)
        return self._shard(k), index - int(self._starts[k])

    def _generator(self, indices: list[int]) -> torch.Generator:
        base = self.seed if self.seed is not None else torch.initial_seed()
        return torch.Generator().manual_seed(zlib.crc32(f"{base}:{indices}".encode()))

    def __getitem__(self, index):
        """An int → (image (1, H, W), target); a list of ints → (images (B, 1, H, W), targets batched).

        Lists render the whole batch in one call (fast): use them with
        ``DataLoader(ds, batch_size=None, sampler=BatchSampler(...))``.
        """
        if isinstance(index, (list, tuple, np.ndarray, torch.Tensor)):
            return self.render_batch([int(i) for i in index])
        images, targets = self.render_batch([int(index)])
        if isinstance(targets, dict):
            return images[0], {k: v[0] for k, v in targets.items()}
        return images[0], targets[0]

    def render_batch(self, indices: list[int]):
        """Render the patterns ``indices`` together: (images (B, 1, H, W) in [0, 1], targets)."""
        rows = [self.locate(i) for i in indices]
        xy, inten, counts = [], [], []
        for shard, row in rows:
            lo, hi = int(shard.offsets[row]), int(shard.offsets[row + 1])
            xy.append(shard.spots["xy_invA"][lo:hi])
            inten.append(shard.spots["intensity"][lo:hi])
            counts.append(hi - lo)
        offsets = torch.zeros(len(rows) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(torch.tensor(counts, dtype=torch.int64), 0)
        gen = self._generator(indices)
        xy_t, inten_t = torch.from_numpy(np.concatenate(xy)), torch.from_numpy(np.concatenate(inten))
        if self.augment is not None and self.augment.shell_jitter > 0:
            inten_t = inten_t * shell_jitter(xy_t, offsets, self.augment.shell_jitter, gen).to(inten_t.dtype)
        images = render_patterns(offsets, xy_t, inten_t, self.detector, generator=gen, **self._draw(gen, len(rows)))
        return model_view(images[:, None], self.view, self.detector.intensity_power), self._targets(rows)

    def _draw(self, gen: torch.Generator, n: int) -> dict:
        """Per-pattern augmentation parameters (empty without augmentation)."""
        a, det = self.augment, self.detector
        if a is None:
            return {}

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(n, generator=gen)

        out = {"rotation_deg": uniform(*a.rotation_deg),
               "center_shift_px": torch.stack([uniform(-a.center_shift_px, a.center_shift_px) for _ in range(2)], 1),
               "reciprocal_px_invA": det.reciprocal_px_invA * uniform(*a.scale)}
        if a.spot_sigma_px:
            out["spot_sigma_px"] = uniform(*a.spot_sigma_px)
        if a.background:
            out["background"] = uniform(*a.background)
        if a.dose_e:
            out["dose_e"] = torch.exp(uniform(math.log(a.dose_e[0]), math.log(a.dose_e[1])))
        return out

    def _targets(self, rows: list[tuple[Shard, int]]):
        names = (self.target,) if isinstance(self.target, str) else self.target
        values = {name: torch.as_tensor(np.stack([shard.labels[name][row] for shard, row in rows])) for name in names}
        return values[self.target] if isinstance(self.target, str) else values
