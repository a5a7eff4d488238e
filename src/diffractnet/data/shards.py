"""Sparse spot shards on disk (HDF5): one file per (material, chunk), written atomically.

Layout of a shard::

    attrs: format, material, material_id, formula, split, space_group, config_hash, n_patterns, complete
    offsets (n+1,) int64      CSR: pattern i owns spots offsets[i]:offsets[i+1]
    xy_invA (N, 2) float32    lab-frame (g_x, g_y) [1/Å]
    intensity (N,) float32    |F|² × excitation profile [Å²]
    hkl (N, 3) int16
    excitation_error_invA (N,) float32
    labels/quaternion (n, 4) float32 (w, x, y, z; orix convention, lab → crystal)
    labels/zone_axis (n, 3) int16 ([0, 0, 0] for random orientations)
    labels/space_group, crystal_system, laue_class, bravais_lattice (n,) int16 (indices into the card's names)
    labels/material_id (n,) int32
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffractnet.errors import DataError

SHARD_FORMAT = "diffractnet-spots/1"
SPOT_FIELDS = ("xy_invA", "intensity", "hkl", "excitation_error_invA")


@dataclass
class Shard:
    """One shard in memory: CSR spots, per-pattern labels and the file's attributes."""

    offsets: np.ndarray
    spots: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    attrs: dict

    def __len__(self) -> int:
        return len(self.offsets) - 1


def write_shard(path: str | Path, offsets: np.ndarray, spots: dict[str, np.ndarray],
                labels: dict[str, np.ndarray], attrs: dict) -> Path:
    """Write a shard to ``path`` atomically (temporary file in the same folder, then rename)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("offsets", data=np.asarray(offsets, dtype=np.int64))
            for key in SPOT_FIELDS:
                f.create_dataset(key, data=spots[key], compression="lzf" if len(spots[key]) > 0 else None)
            group = f.create_group("labels")
            for key, value in labels.items():
                group.create_dataset(key, data=value)
            for key, value in attrs.items():
                f.attrs[key] = value
            f.attrs["format"] = SHARD_FORMAT
            f.attrs["n_patterns"] = len(offsets) - 1
            f.attrs["complete"] = True
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_shard_attrs(path: str | Path) -> dict:
    """Attributes of a shard; ``DataError`` if the file is not a complete diffractnet shard."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    except (OSError, KeyError) as exc:
        raise DataError(f"shard '{path}' cannot be read ({str(exc).splitlines()[0]}); delete it and re-run") from None
    if attrs.get("format") != SHARD_FORMAT or not attrs.get("complete"):
        raise DataError(f"'{path}' is not a complete {SHARD_FORMAT} shard; delete it and re-run")
    return attrs


def read_shard(path: str | Path) -> Shard:
    """Load a whole shard; ``DataError`` for a truncated, foreign or inconsistent file."""
    import h5py

    attrs = read_shard_attrs(path)
    try:
        with h5py.File(path, "r") as f:
            offsets = f["offsets"][()]
            spots = {key: f[key][()] for key in SPOT_FIELDS}
            labels = {key: f["labels"][key][()] for key in f["labels"]}
    except (OSError, KeyError) as exc:
        raise DataError(f"shard '{path}' is damaged ({str(exc).splitlines()[0]}); delete it and re-run") from None
    n = len(offsets) - 1
    if n != attrs["n_patterns"] or offsets[-1] != len(spots["intensity"]) or any(len(v) != n for v in labels.values()):
        raise DataError(f"shard '{path}' is inconsistent (pattern or spot counts disagree); delete it and re-run")
    return Shard(offsets, spots, labels, attrs)


def shard_is_complete(path: str | Path, n_patterns: int, config_hash: str) -> bool:
    """True when ``path`` is a readable, complete shard of ``n_patterns`` made from this config."""
    if not Path(path).is_file():
        return False
    try:
        attrs = read_shard_attrs(path)
    except DataError:
        return False
    return attrs.get("n_patterns") == n_patterns and attrs.get("config_hash") == config_hash
