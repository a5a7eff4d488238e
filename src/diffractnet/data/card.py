"""The dataset card: config, seed, versions, and counts per split, class and material."""

from __future__ import annotations

import json
import os
from collections import Counter
from importlib import metadata
from pathlib import Path

from diffractnet.structures.crystal import Crystal
from diffractnet.structures.symmetry import BRAVAIS_LATTICES, CRYSTAL_SYSTEMS, LAUE_CLASSES, labels_of

PACKAGES = ("diffractnet", "numpy", "torch", "pymatgen", "pyxtal", "spglib", "orix", "h5py", "dask")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the data."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_card(config, crystals: list[Crystal], splits: dict[str, str], units: list, digest: str) -> Path:
    """Write ``card.json`` atomically beside the shards and return its path. Each material lists its
    ``apparent_space_groups``: its own and those of the dataset it mimics (``physics.pseudosymmetry``)."""
    patterns_per_material = Counter()
    for unit in units:
        patterns_per_material[unit.crystal.name] += unit.stop - unit.start
    from diffractnet.physics.pseudosymmetry import apparent_space_groups

    groups = sorted({c.space_group_number for c in crystals})
    materials = []
    for material_id, crystal in enumerate(crystals):
        materials.append({"material_id": material_id, "name": crystal.name, "formula": crystal.formula,
                          "lattice_abc_A": list(crystal.lattice_abc_A), "lattice_angles_deg": list(crystal.lattice_angles_deg),
                          **labels_of(crystal.space_group_number), "split": splits[crystal.name],
                          "source": crystal.source, "n_patterns": patterns_per_material[crystal.name],
                          "apparent_space_groups": list(apparent_space_groups(crystal, groups, config.physics.g_max_invA))})
    counts: dict[str, dict] = {}
    for split in ("train", "val", "test"):
        rows = [m for m in materials if m["split"] == split]
        counts[split] = {
            "materials": len(rows), "patterns": sum(m["n_patterns"] for m in rows),
            "patterns_per_space_group": _count(rows, "space_group"),
            "patterns_per_crystal_system": _count(rows, "crystal_system"),
        }
    card = {
        "name": config.name, "seed": config.seed, "config_hash": digest,
        "config": json.loads(config.model_dump_json()), "versions": package_versions(),
        "label_names": {"crystal_system": list(CRYSTAL_SYSTEMS), "laue_class": list(LAUE_CLASSES),
                        "bravais_lattice": list(BRAVAIS_LATTICES)},
        "shards": {split: sorted(str(u.path.relative_to(config.output_dir)) for u in units if u.split == split)
                   for split in ("train", "val", "test")},
        "counts": counts, "materials": materials,
    }
    path = Path(config.output_dir) / "card.json"
    tmp = path.with_name(f".card.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(card, indent=1, default=str))
    os.replace(tmp, path)
    return path


def _count(rows: list[dict], key: str) -> dict[str, int]:
    counter: Counter = Counter()
    for row in rows:
        counter[str(row[key])] += row["n_patterns"]
    return dict(sorted(counter.items()))
