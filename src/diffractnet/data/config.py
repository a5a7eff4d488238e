"""Dataset configuration (YAML), validated with pydantic into one-line ``ConfigError`` messages."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from diffractnet.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RandomCrystalsSpec(_Strict):
    """``per_group`` pyxtal crystals for each space group in ``space_groups``."""

    space_groups: list[int]
    per_group: int = Field(1, ge=1)
    elements: list[str] | None = None

    @field_validator("space_groups")
    @classmethod
    def _in_range(cls, value: list[int]) -> list[int]:
        bad = [n for n in value if not 1 <= n <= 230]
        if bad:
            raise ValueError(f"space groups must be in 1..230, got {bad}")
        return value


class MaterialsSpec(_Strict):
    """Which crystals: built-in names, built-in space groups, CIF files, AFLOW prototypes, random ones."""

    library: list[str] | Literal["all"] | None = None
    space_groups: list[int] | None = None
    cif_files: list[Path] = []
    aflow_prototypes: int = Field(0, ge=0)
    random: RandomCrystalsSpec | None = None


class OrientationSpec(_Strict):
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


class PhysicsSpec(_Strict):
    """Microscope and specimen for the kinematic simulation."""

    voltage_kV: float = Field(200.0, gt=0)
    g_max_invA: float = Field(1.5, gt=0)
    thickness_A: float = Field(50.0, gt=0)
    max_excitation_error_invA: float | None = Field(None, gt=0)
    precession_angle_deg: float = Field(0.0, ge=0, lt=10)


class SplitSpec(_Strict):
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


class DatasetConfig(_Strict):
    """A whole dataset: reproducible from this config and its ``seed``."""

    name: str = "dataset"
    seed: int = 0
    output_dir: Path = Path("runs/dataset")
    shard_patterns: int = Field(512, ge=1)
    materials: MaterialsSpec
    orientations: OrientationSpec = OrientationSpec()
    physics: PhysicsSpec = PhysicsSpec()
    split: SplitSpec = SplitSpec()


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "top level"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"field '{where}': {err['msg']}{more}"


def parse_config(data: dict, where: str = "config") -> DatasetConfig:
    """Validate a config dict; raises ``ConfigError`` with one line naming the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return DatasetConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_one_line(exc)}") from None


def load_config(path: str | Path) -> DatasetConfig:
    """Read and validate a dataset YAML file; relative CIF paths are taken relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file '{path}' is not valid YAML{line}") from None
    config = parse_config(data, where=f"config file '{path}'")
    cifs = [p if p.is_absolute() else path.parent / p for p in config.materials.cif_files]
    return config.model_copy(update={"materials": config.materials.model_copy(update={"cif_files": cifs})})
