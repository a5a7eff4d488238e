"""Dataset configuration (YAML), validated with pydantic into one-line ``ConfigError`` messages."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from diffractnet._config import StrictModel, read_yaml, validate


class RandomCrystalsSpec(StrictModel):
    """``per_group`` pyxtal crystals for each space group in ``space_groups``, with 2..``max_species``
    species of ``elements`` and at most ``max_atoms`` atoms in the conventional cell. ``split``:
    ``any`` — split like every other material; ``train`` — all of them train (synthetic crystals widen
    the training set, validation and test stay on the real materials)."""

    space_groups: list[int]
    per_group: int = Field(1, ge=1)
    elements: list[str] | None = None
    max_species: int = Field(3, ge=1, le=8)
    max_atoms: int = Field(96, ge=1, le=500)
    split: Literal["any", "train"] = "any"

    @field_validator("space_groups")
    @classmethod
    def _in_range(cls, value: list[int]) -> list[int]:
        bad = [n for n in value if not 1 <= n <= 230]
        if bad:
            raise ValueError(f"space groups must be in 1..230, got {bad}")
        return value


class SubstitutionSpec(StrictModel):
    """``per_material`` element-substituted variants of every *training* material
    (``structures.substitution``): the same sites with other elements of ``elements`` (one-to-one, so
    the space group stays) and the cell scaled by a factor in ``lattice_scale``. They all train;
    validation and test stay on the real materials, and no variant rebuilds one of them."""

    per_material: int = Field(1, ge=1, le=100)
    elements: list[str] | None = None
    lattice_scale: tuple[float, float] = (0.9, 1.1)

    @model_validator(mode="after")
    def _scale(self) -> "SubstitutionSpec":
        low, high = self.lattice_scale
        if not 0 < low <= high:
            raise ValueError(f"lattice_scale {list(self.lattice_scale)} must be [low, high] with 0 < low <= high")
        return self


class MaterialsSpec(StrictModel):
    """Which crystals: built-in names, built-in space groups, CIF files, AFLOW prototypes, random ones;
    ``substitute`` adds element-substituted variants of the training materials."""

    library: list[str] | Literal["all"] | None = None
    space_groups: list[int] | None = None
    cif_files: list[Path] = []
    aflow_prototypes: int = Field(0, ge=0)
    random: RandomCrystalsSpec | None = None
    substitute: SubstitutionSpec | None = None


class OrientationSpec(StrictModel):
    """Orientations per material: zone axes (with random in-plane turn and tilt) and/or random ones.

    ``zone_axes`` 'standard' = every symmetry-distinct [uvw] with indices up to ``max_index``;
    ``per_zone_axis`` patterns for each; ``tilt_deg`` largest random tilt off the zone axis;
    ``random_per_material`` orientations uniform in the fundamental zone.
    """

    zone_axes: Literal["standard"] | list[tuple[int, int, int]] | None = "standard"
    max_index: int = Field(3, ge=1, le=6)
    per_zone_axis: int = Field(1, ge=1)
    inplane: Literal["random", "zero"] = "random"
    tilt_deg: float = Field(0.0, ge=0.0, le=30.0)
    random_per_material: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _some(self) -> "OrientationSpec":
        if not self.zone_axes and self.random_per_material == 0:
            raise ValueError("no orientations: give zone_axes or random_per_material > 0")
        return self


class PhysicsSpec(StrictModel):
    """Microscope and specimen for the kinematic simulation."""

    voltage_kV: float = Field(200.0, gt=0)
    g_max_invA: float = Field(1.5, gt=0)
    thickness_A: float = Field(50.0, gt=0)
    max_excitation_error_invA: float | None = Field(None, gt=0)
    precession_angle_deg: float = Field(0.0, ge=0, lt=10)


class SplitSpec(StrictModel):
    """Fractions of materials (not patterns) per split, stratified by space group."""

    train: float = Field(0.7, ge=0, le=1)
    val: float = Field(0.15, ge=0, le=1)
    test: float = Field(0.15, ge=0, le=1)
    fixed: dict[str, Literal["train", "val", "test"]] = {}

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitSpec":
        if abs(self.train + self.val + self.test - 1) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {self.train + self.val + self.test:g}")
        return self


class DatasetConfig(StrictModel):
    """A whole dataset: reproducible from this config and its ``seed``."""

    name: str = "dataset"
    seed: int = 0
    output_dir: Path = Path("runs/dataset")
    shard_patterns: int = Field(512, ge=1)
    materials: MaterialsSpec
    orientations: OrientationSpec = OrientationSpec()
    physics: PhysicsSpec = PhysicsSpec()
    split: SplitSpec = SplitSpec()


def parse_config(data: dict, where: str = "config") -> DatasetConfig:
    """Validate a config dict; raises ``ConfigError`` with one line naming the field."""
    return validate(DatasetConfig, data, where)


def load_config(path: str | Path) -> DatasetConfig:
    """Read and validate a dataset YAML file; relative CIF paths are taken relative to the file."""
    path = Path(path)
    config = parse_config(read_yaml(path, "config file"), where=f"config file '{path}'")
    cifs = [p if p.is_absolute() else path.parent / p for p in config.materials.cif_files]
    return config.model_copy(update={"materials": config.materials.model_copy(update={"cif_files": cifs})})
