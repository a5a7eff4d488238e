"""Train/validation/test splits by material (never by pattern), stratified by space group."""

from __future__ import annotations

import zlib

import numpy as np

from diffractnet.data.config import SplitSpec
from diffractnet.errors import ConfigError

SPLITS = ("train", "val", "test")


def split_by_material(materials: dict[str, int], spec: SplitSpec, seed: int) -> dict[str, str]:
    """Assign each material (name → space group) to 'train', 'val' or 'test'.

    Within each space group the materials are shuffled (seeded) and cut by the fractions, rounding
    so that every group with ≥ 1 material keeps at least one for training when train > 0. Names in
    ``spec.fixed`` go where they are told. The result does not depend on the order of ``materials``.
    """
    unknown = set(spec.fixed) - set(materials)
    if unknown:
        raise ConfigError(f"split.fixed names materials that are not in the dataset: {sorted(unknown)}")
    out = dict(spec.fixed)
    by_group: dict[int, list[str]] = {}
    for name in sorted(materials):
        if name not in out:
            by_group.setdefault(materials[name], []).append(name)
    for group, names in sorted(by_group.items()):
        rng = np.random.default_rng([seed, group, zlib.crc32(",".join(names).encode())])
        order = [names[i] for i in rng.permutation(len(names))]
        n = len(order)
        n_test = int(round(spec.test * n))
        n_val = int(round(spec.val * n))
        if spec.train > 0:
            while n_test + n_val >= n and n_test + n_val > 0:  # keep one for training
                if n_val >= n_test and n_val > 0:
                    n_val -= 1
                else:
                    n_test -= 1
        for i, name in enumerate(order):
            out[name] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out
