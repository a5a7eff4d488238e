"""Orientation regression training: config, LightningModule, data module and ``train_orientation``.

Same machinery as space-group training (``train.fit``: checkpoints, resume after a kill, early
stopping, DDP, mixed precision, CSV log); the data are simulated on the fly for the scan's material
and set-up (``data.orientation_stream``), or come from a scan labelled by template matching, keeping
only its most confident fraction (seed 000). Default schedule: exponential decay, as seed 000.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from diffractnet._config import StrictModel, read_yaml, validate
from diffractnet.data.scan_physics import ScanPhysics
from diffractnet.models.registry import create_model
from diffractnet.tasks.orientation import NUM_OUTPUTS, orientation_loss
from diffractnet.train.config import EarlyStoppingSpec, ModelSpec, OptimizerSpec, SchedulerSpec, TrainerSpec
from diffractnet.train.datamodule import EpochDataModule
from diffractnet.train.module import ZooModule


class LabelledScanSpec(StrictModel):
    """A scan and its template-matching labels (``.npz`` with ``quaternions`` (ny, nx, 4) and
    ``correlation`` (ny, nx)), keeping the ``keep_fraction`` most confident."""

    scan: Path
    labels: Path
    keep_fraction: float = Field(0.5, gt=0, le=1)


class OrientationTrainConfig(StrictModel):
    """``head``: ``beam_direction`` (default: classes of beam direction read from the in-plane-invariant
    polar spectrum; the in-plane angle then comes from FFT correlation with the class template) or
    ``regression`` (a 6D rotation straight from the binned image, symmetry-aware geodesic loss).
    ``bin_deg`` spacing of the beam-direction classes."""

    task: Literal["orientation"] = "orientation"
    material: str = "LiNiO2"
    head: Literal["beam_direction", "regression"] = "beam_direction"
    bin_deg: float = Field(2.0, ge=0.5, le=10)
    output_dir: Path = Path("runs/orientation")
    seed: int = 0
    physics: ScanPhysics = ScanPhysics()
    input_size_px: int = Field(64, ge=16, le=512)
    dose_range_e: tuple[float, float] | None = (5e3, 1e5)
    mix_fraction: float = Field(0.1, ge=0, le=1)
    labelled_scan: LabelledScanSpec | None = None
    output_clamp: float | None = Field(None, gt=0)
    val_patterns: int = Field(512, ge=0)
    model: ModelSpec = ModelSpec(kwargs={"head": "flatten", "width": 16, "strided": True, "convs_per_stage": 1})
    optimizer: OptimizerSpec = OptimizerSpec(name="adamw", lr=1e-3)
    scheduler: SchedulerSpec = SchedulerSpec(name="exponential", gamma=0.9)
    early_stopping: EarlyStoppingSpec | None = None
    trainer: TrainerSpec = TrainerSpec(max_epochs=10, train_patterns_per_epoch=8192, num_workers=1)


def parse_orientation_config(data: dict, where: str = "orientation train config") -> OrientationTrainConfig:
    """Validate a dict; ``ConfigError`` naming the field on failure."""
    return validate(OrientationTrainConfig, data, where)


def load_orientation_config(path: str | Path) -> OrientationTrainConfig:
    """Read an orientation training YAML."""
    return parse_orientation_config(read_yaml(path, "orientation train config"), f"orientation train config '{path}'")


class OrientationModule(ZooModule):
    """A zoo model and its orientation loss: ``regression`` — 7 outputs (6D rotation + error estimate),
    symmetry-aware geodesic loss; ``beam_direction`` — one logit per beam-direction class, cross-entropy
    against a Gaussian over symmetry-reduced angles. ``output_clamp`` limits the raw outputs (seed 000)."""

    def __init__(self, arch: str, image_size: int, symmetry: list, model_kwargs: dict | None = None,
                 pretrained: str | None = None, optimizer: dict | None = None, scheduler: dict | None = None,
                 max_epochs: int = 10, output_clamp: float | None = None, head: str = "regression",
                 directions: list | None = None, bin_deg: float = 2.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        outputs = NUM_OUTPUTS if head == "regression" else len(directions)
        self.model = create_model(arch, "orientation", 1, outputs, pretrained, image_size, **(model_kwargs or {}))
        self.register_buffer("symmetry", torch.tensor(symmetry, dtype=torch.float32), persistent=False)
        self.register_buffer("directions", torch.tensor(directions or [[0.0, 0.0, 1.0]], dtype=torch.float32),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        clamp = self.hparams.output_clamp
        return out.clamp(-clamp, clamp) if clamp else out

    def _loss(self, outputs: torch.Tensor, rotations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, error [deg] per pattern: misorientation, or beam-direction angle of the top class)."""
        if self.hparams.head == "regression":
            return orientation_loss(outputs, rotations, self.symmetry)
        from diffractnet.index.beam_directions import direction_cosines, soft_labels

        cos = direction_cosines(rotations, self.symmetry, self.directions)
        target = soft_labels(cos, self.hparams.bin_deg)
        loss = -(target * torch.log_softmax(outputs.float(), dim=-1)).sum(-1).mean()
        top = cos.gather(1, outputs.argmax(-1, keepdim=True))[:, 0]
        return loss, torch.rad2deg(torch.arccos(top.clamp(-1, 1)))

    def _step(self, batch, stage: str) -> torch.Tensor:
        images, rotations = batch
        loss, angle_deg = self._loss(self(images), rotations)
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, prog_bar=True, on_step=on_step, on_epoch=True, sync_dist=not on_step)
        self.log(f"{stage}_median_deg", angle_deg.median(), prog_bar=True, on_step=on_step, on_epoch=True,
                 sync_dist=not on_step)
        return loss


def model_input(config: "OrientationTrainConfig"):
    """The callable turning (B, H, W) detector patterns into this model's input."""
    from diffractnet.data.scan_physics import preprocess_for_model
    from diffractnet.index.polar import PolarFeatures, PolarGrid

    if config.head == "regression":
        return lambda images: preprocess_for_model(images, config.input_size_px)
    return PolarFeatures(PolarGrid.for_model(config.physics, config.input_size_px), config.physics.reciprocal_px_invA)


class OrientationDataModule(EpochDataModule):
    """Simulated (or labelled-scan) training batches and a fixed simulated validation set."""

    def __init__(self, config: OrientationTrainConfig, crystal) -> None:
        super().__init__()
        self.config, self.crystal = config, crystal

    def setup(self, stage: str | None = None) -> None:
        from diffractnet.data.orientation_stream import SimulatedOrientations

        c = self.config
        transform = model_input(c)
        if c.labelled_scan is not None:
            self.train_set = _labelled_dataset(c, transform)
        else:
            self.train_set = SimulatedOrientations(self.crystal, c.physics, c.input_size_px, seed=c.seed,
                                                   dose_range_e=c.dose_range_e, mix_fraction=c.mix_fraction,
                                                   transform=transform)
        self.val_set = SimulatedOrientations(self.crystal, c.physics, c.input_size_px, seed=c.seed + 7919,
                                             mix_fraction=0.0, fixed_noise=True, size=c.val_patterns,
                                             transform=transform) if c.val_patterns else None


def _labelled_dataset(config: OrientationTrainConfig, transform):
    from diffractnet.data.orientation_stream import LabelledScanPatterns
    from diffractnet.errors import DataError
    from diffractnet.io.scans import open_scan

    spec = config.labelled_scan
    try:
        labels = np.load(spec.labels, allow_pickle=False)
        quaternions, correlation = labels["quaternions"], labels["correlation"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"labels '{spec.labels}' are not a readable .npz with 'quaternions' and 'correlation' "
                        f"({str(exc).splitlines()[0][:100]})") from None
    scan = open_scan(spec.scan)
    return LabelledScanPatterns(scan.data, quaternions, correlation, config.input_size_px, spec.keep_fraction,
                                transform=transform)


def train_orientation(config: OrientationTrainConfig, progress: bool = True) -> Path:
    """Fit an orientation model; re-running resumes from the last checkpoint. Returns ``model.safetensors``."""
    from diffractnet.data.polycrystal import resolve_crystal
    from diffractnet.models.checkpoint import save_model
    from diffractnet.tasks.orientation import symmetry_matrices
    from diffractnet.train.fit import fit_module, load_best, prepare_run, write_summary

    prepare_run(config, progress)
    from diffractnet.index.beam_directions import sector_directions

    crystal = resolve_crystal(config.material)
    directions = sector_directions(crystal, config.bin_deg).tolist() if config.head == "beam_direction" else None
    module = OrientationModule(config.model.name, config.input_size_px, symmetry_matrices(crystal).tolist(),
                               config.model.kwargs, config.model.pretrained, config.optimizer.model_dump(),
                               config.scheduler.model_dump(), config.trainer.max_epochs, config.output_clamp,
                               config.head, directions, config.bin_deg)
    datamodule = OrientationDataModule(config, crystal)
    trainer, seconds = fit_module(config, module, datamodule, config.val_patterns > 0, progress)
    path = config.output_dir / "model.safetensors"
    if trainer.global_rank == 0:
        best = load_best(trainer, module)
        outputs = NUM_OUTPUTS if config.head == "regression" else len(directions)
        metadata = {"arch": config.model.name, "task": "orientation", "in_chans": 1, "num_outputs": outputs,
                    "head": config.head, "bin_deg": config.bin_deg,
                    "image_size": config.input_size_px, "model_kwargs": config.model.kwargs,
                    "material": config.material, "crystal_name": crystal.name,
                    "space_group": crystal.space_group_number, "physics": config.physics.model_dump(),
                    "output_clamp": config.output_clamp, "seed": config.seed}
        save_model(path, module.model.cpu(), metadata)
        write_summary(config, trainer, path, best, seconds)
    return path
