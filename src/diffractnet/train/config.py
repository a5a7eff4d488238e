"""Training configuration (YAML), validated into one-line ``ConfigError`` messages."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from diffractnet._config import StrictModel, read_yaml, validate


class ModelSpec(StrictModel):
    name: str = "small_cnn"
    pretrained: str | None = None
    kwargs: dict = {}


class LabelSpec(StrictModel):
    """``space_group``: one class per space group; ``space_group_set``: the same classes, each zone-axis
    pattern's target spread over the groups physics cannot tell apart from it (``train.labels``);
    ``appearance``: seed 003's 2D-lattice appearance classes (zone-axis patterns only), mapped back to
    space groups at prediction."""

    scheme: Literal["space_group", "space_group_set", "appearance"] = "space_group"
    space_groups: list[int] | None = None
    # a second head, one sigmoid per group: does physics say this pattern could be that group's
    # (``train.labels.LookAlikeLabelMap``)? It names the groups a pattern cannot tell apart.
    lookalike_head: bool = False

    @model_validator(mode="after")
    def _head_needs_groups(self) -> "LabelSpec":
        if self.lookalike_head and self.scheme == "appearance":
            raise ValueError("lookalike_head needs space-group classes; use scheme space_group or space_group_set")
        return self


class ImageSpec(StrictModel):
    """Detector used to render training images (see ``diffractnet.render.Detector``); ``view`` what the
    network reads: ``plain`` (the pattern) or ``lattice`` (the pattern turned and mirrored into the frame of
    its two shortest spot vectors, ``render.canonical``), which spares the network learning rotation
    invariance from augmentation, or ``lattice_unit`` (that, zoomed to a fixed shortest spot vector)."""

    size_px: int = Field(64, ge=16, le=1024)
    reciprocal_px_invA: float = Field(0.04, gt=0)
    spot_sigma_px: float = Field(1.0, gt=0)
    intensity_power: float = Field(0.5, gt=0)
    direct_beam: float = Field(1.0, ge=0)
    beam_stop_radius_px: float = Field(0.0, ge=0)
    view: Literal["plain", "lattice", "lattice_unit"] = "plain"


class AugmentSpec(StrictModel):
    rotation_deg: tuple[float, float] = (0.0, 360.0)
    center_shift_px: float = Field(2.0, ge=0)
    scale: tuple[float, float] = (0.9, 1.1)
    spot_sigma_px: tuple[float, float] | None = (0.8, 1.5)
    background: tuple[float, float] | None = (0.0, 0.1)
    dose_e: tuple[float, float] | None = (3e3, 3e6)
    shell_jitter: float = Field(0.0, ge=0, le=3)  # σ of the log intensity factor per |g| shell (0: off)


class OptimizerSpec(StrictModel):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)


class SchedulerSpec(StrictModel):
    """``step`` (×gamma every step_size epochs), ``exponential`` (×gamma each epoch), ``cosine`` (to 0 over max_epochs)."""

    name: Literal["none", "step", "exponential", "cosine"] = "cosine"
    step_size: int = Field(10, ge=1)
    gamma: float = Field(0.5, gt=0, le=1)


class EarlyStoppingSpec(StrictModel):
    monitor: Literal["val_loss", "val_acc"] = "val_loss"
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0)


class TrainerSpec(StrictModel):
    max_epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    num_workers: int = Field(2, ge=0)
    train_patterns_per_epoch: int | None = Field(None, ge=1)
    precision: Literal["32", "bf16-mixed", "16-mixed"] = "32"
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int = Field(1, ge=1)
    num_nodes: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    threads: int | None = Field(None, ge=1)
    max_minutes: float | None = Field(None, gt=0)


class TrainConfig(StrictModel):
    dataset: Path
    output_dir: Path = Path("runs/train")
    seed: int = 0
    model: ModelSpec = ModelSpec()
    labels: LabelSpec = LabelSpec()
    image: ImageSpec = ImageSpec()
    augment: AugmentSpec | None = AugmentSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    early_stopping: EarlyStoppingSpec | None = None
    trainer: TrainerSpec = TrainerSpec()

    @model_validator(mode="after")
    def _model_known(self) -> "TrainConfig":
        from diffractnet.models.registry import list_models

        if self.model.name not in list_models():
            raise ValueError(f"unknown model '{self.model.name}'; choose from {list_models()}")
        return self


def parse_train_config(data: dict, where: str = "train config") -> TrainConfig:
    """Validate a dict; ``ConfigError`` naming the field on failure."""
    return validate(TrainConfig, data, where)


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a training YAML; relative ``dataset`` and ``output_dir`` stay relative to the working directory."""
    return parse_train_config(read_yaml(path, "train config"), where=f"train config '{path}'")
