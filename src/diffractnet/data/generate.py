"""Dataset generation: plan work units, simulate them in parallel with Dask, write shards and a card.

Each work unit is one (material, chunk) → one shard. Its orientations come from a random stream
seeded by (dataset seed, material name), so the data are identical for the same seed however the
work is scheduled. Re-running after a kill skips every complete shard and rewrites the rest; shards
are written to a temporary name and renamed, so a half-written shard is never taken for a whole one.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffractnet.data.config import DatasetConfig
from diffractnet.data.shards import shard_is_complete, write_shard
from diffractnet.errors import ConfigError
from diffractnet.structures.crystal import Crystal
from diffractnet.structures.random_crystals import RANDOM_SOURCE
from diffractnet.structures.symmetry import BRAVAIS_LATTICES, CRYSTAL_SYSTEMS, LAUE_CLASSES, labels_of


@dataclass(frozen=True)
class WorkUnit:
    """One shard to make: patterns [start, stop) of one material's orientation list."""

    material_id: int
    crystal: Crystal
    split: str
    chunk: int
    start: int
    stop: int
    path: Path


def config_hash(config: DatasetConfig) -> str:
    """Short hash of everything that changes the data (not the output folder)."""
    text = config.model_dump_json(exclude={"output_dir"})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def material_orientations(crystal: Crystal, config: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    """(quaternions (n, 4), zone_axis (n, 3) int) of one material, reproducible from the config seed."""
    from diffractnet.physics.orientations import sample_fundamental_zone, zone_axis_quaternion
    from diffractnet.physics.zone_axes import symmetry_distinct_zone_axes, tilt_quaternions

    spec = config.orientations
    rng = np.random.default_rng([config.seed, zlib.crc32(crystal.name.encode())])
    quats, axes = [], []
    if spec.zone_axes:
        zone_list = symmetry_distinct_zone_axes(crystal, spec.max_index) if spec.zone_axes == "standard" else spec.zone_axes
        for uvw in zone_list:
            inplane = rng.random(spec.per_zone_axis) * 360.0 if spec.inplane == "random" else np.zeros(spec.per_zone_axis)
            q = tilt_quaternions(zone_axis_quaternion(crystal, uvw, inplane), spec.tilt_deg, rng)
            quats.append(q)
            axes.append(np.tile(np.asarray(uvw, dtype=np.int16), (len(q), 1)))
    if spec.random_per_material:
        seed = int(rng.integers(2**32))
        quats.append(sample_fundamental_zone(crystal, spec.random_per_material, seed=seed))
        axes.append(np.zeros((spec.random_per_material, 3), dtype=np.int16))
    return np.concatenate(quats), np.concatenate(axes)


def plan_units(config: DatasetConfig, crystals: list[Crystal], splits: dict[str, str]) -> list[WorkUnit]:
    """Every work unit of the dataset, in a stable order."""
    units = []
    for material_id, crystal in enumerate(crystals):
        n = len(material_orientations(crystal, config)[0])
        for chunk, start in enumerate(range(0, n, config.shard_patterns)):
            name = f"{material_id:05d}-{_slug(crystal.name)}-{chunk:04d}.h5"
            units.append(WorkUnit(material_id, crystal, splits[crystal.name], chunk, start,
                                  min(n, start + config.shard_patterns), config.output_dir / splits[crystal.name] / name))
    return units


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40]


def run_unit(unit: WorkUnit, config: DatasetConfig) -> str:
    """Simulate one unit and write its shard (single-threaded torch for bit-identical results)."""
    import torch

    from diffractnet.physics.spots import SpotSimulator

    torch.set_num_threads(1)
    quats, axes = material_orientations(unit.crystal, config)
    quats, axes = quats[unit.start:unit.stop], axes[unit.start:unit.stop]
    p = config.physics
    sim = SpotSimulator(p.voltage_kV, p.g_max_invA, p.thickness_A, p.max_excitation_error_invA, p.precession_angle_deg)
    spots = sim.simulate(unit.crystal, quats)
    n = len(quats)
    lab = labels_of(unit.crystal.space_group_number)
    labels = {
        "quaternion": quats.astype(np.float32), "zone_axis": axes.astype(np.int16),
        "space_group": np.full(n, lab["space_group"], np.int16),
        "crystal_system": np.full(n, CRYSTAL_SYSTEMS.index(lab["crystal_system"]), np.int16),
        "laue_class": np.full(n, LAUE_CLASSES.index(lab["laue_class"]), np.int16),
        "bravais_lattice": np.full(n, BRAVAIS_LATTICES.index(lab["bravais_lattice"]), np.int16),
        "material_id": np.full(n, unit.material_id, np.int32),
    }
    arrays = {"xy_invA": spots.xy_invA.numpy().astype(np.float32), "intensity": spots.intensity.numpy().astype(np.float32),
              "hkl": spots.hkl.numpy().astype(np.int16),
              "excitation_error_invA": spots.excitation_error_invA.numpy().astype(np.float32)}
    attrs = {"material": unit.crystal.name, "material_id": unit.material_id, "formula": unit.crystal.formula,
             "split": unit.split, "space_group": unit.crystal.space_group_number, "chunk": unit.chunk,
             "config_hash": config_hash(config)}
    write_shard(unit.path, spots.offsets.numpy(), arrays, labels, attrs)
    return str(unit.path)


def _compute(tasks: list, scheduler: str, workers: int, progress: bool) -> list:
    import dask

    if scheduler.startswith("tcp://") or scheduler.startswith("tls://"):
        try:
            from dask.distributed import Client, progress as dist_progress
        except ImportError:
            raise ConfigError("a dask scheduler address needs 'distributed' (pip install distributed)") from None
        with Client(scheduler) as client:
            futures = client.compute(tasks)
            if progress:
                dist_progress(futures)
            return client.gather(futures)
    if scheduler not in ("processes", "threads", "synchronous"):
        raise ConfigError(f"scheduler '{scheduler}' is not 'processes', 'threads', 'synchronous' or a tcp:// address")
    if progress:
        from tqdm.dask import TqdmCallback

        with TqdmCallback(desc="shards", unit="shard"):
            return list(dask.compute(*tasks, scheduler=scheduler, num_workers=workers))
    return list(dask.compute(*tasks, scheduler=scheduler, num_workers=workers))


def generate_dataset(config: DatasetConfig, workers: int = 2, scheduler: str = "processes",
                     progress: bool = True) -> Path:
    """Make (or finish) the dataset of ``config``; returns the path of its ``card.json``."""
    import dask

    from diffractnet.data.card import write_card
    from diffractnet.data.materials import resolve_materials
    from diffractnet.data.splits import split_by_material

    crystals = resolve_materials(config.materials, config.seed)
    splits = split_by_material({c.name: c.space_group_number for c in crystals}, _split_spec(config, crystals),
                               config.seed)
    variants = _substituted(config, crystals, splits)
    crystals, splits = crystals + variants, {**splits, **{v.name: "train" for v in variants}}
    units = plan_units(config, crystals, splits)
    out = Path(config.output_dir)
    for stale in out.glob("*/.*.tmp"):  # left by a killed run
        stale.unlink()
    digest = config_hash(config)
    todo = [u for u in units if not shard_is_complete(u.path, u.stop - u.start, digest)]
    if progress:
        print(f"dataset '{config.name}': {len(crystals)} materials, {len(units)} shards, {len(units) - len(todo)} already done")
    tasks = [dask.delayed(run_unit, pure=False)(unit, config) for unit in todo]
    if tasks:
        _compute(tasks, scheduler if workers > 1 else "synchronous", workers, progress)
    return write_card(config, crystals, splits, units, digest)


def _split_spec(config: DatasetConfig, crystals: list[Crystal]):
    """The config's split, with the pyxtal random crystals sent to training when ``materials.random.split``
    says ``train`` (names in ``split.fixed`` still go where they are told)."""
    r = config.materials.random
    if r is None or r.split != "train":
        return config.split
    synthetic = {c.name: "train" for c in crystals if c.source.startswith(RANDOM_SOURCE)}
    return config.split.model_copy(update={"fixed": {**synthetic, **config.split.fixed}})


def _substituted(config: DatasetConfig, crystals: list[Crystal], splits: dict[str, str]) -> list[Crystal]:
    """``materials.substitute``'s variants of the training materials (none without it)."""
    spec = config.materials.substitute
    if spec is None:
        return []
    from diffractnet.structures.substitution import training_variants

    parents = [c for c in crystals if splits[c.name] == "train"]
    return training_variants(parents, spec.per_material, config.seed, spec.elements, spec.lattice_scale, avoid=crystals)


def load_card(path: str | Path) -> dict:
    """Read a dataset card (``card.json`` or the dataset folder holding it)."""
    path = Path(path)
    path = path / "card.json" if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"no dataset card at '{path}'; run `diffractnet simulate CONFIG.yaml` first")
    return json.loads(path.read_text())
