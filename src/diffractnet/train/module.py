"""The LightningModule: a zoo model, cross-entropy, accuracy, the configured optimizer and schedule."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from diffractnet.models.registry import create_model

IGNORE = -100


class ZooModule(L.LightningModule):
    """What every task's module shares: train/validation steps through the subclass's ``_step(batch,
    stage)`` and the optimizer/schedule from ``hparams.optimizer``/``scheduler``/``max_epochs``."""

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        return build_optimizers(self.model.parameters(), self.hparams.optimizer, self.hparams.scheduler,
                                self.hparams.max_epochs)


class ClassifierModule(ZooModule):
    """Wraps ``create_model(arch, ...)``; hyper-parameters are plain values so checkpoints load with
    ``weights_only=True``."""

    def __init__(self, arch: str, num_classes: int, image_size: int, model_kwargs: dict | None = None,
                 pretrained: str | None = None, optimizer: dict | None = None, scheduler: dict | None = None,
                 max_epochs: int = 10, task: str = "spacegroup", in_chans: int = 1, lookalike_head: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(arch, task, in_chans, num_classes, pretrained, image_size, **(model_kwargs or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, accuracy): cross-entropy, plus the look-alike head's when the model has one (outputs
        and targets then both hold the group columns first, the membership columns after)."""
        if not self.hparams.lookalike_head:
            return classification_loss(logits, labels)
        from diffractnet.train.labels import split_lookalike

        (groups, member), (group_targets, member_targets) = split_lookalike(logits), split_lookalike(labels)
        loss, acc = classification_loss(groups, group_targets)
        return loss + lookalike_loss(member, member_targets), acc

    def _step(self, batch, stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss, acc = self.loss(logits, labels)
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, prog_bar=True, on_step=on_step, on_epoch=True, sync_dist=not on_step)
        self.log(f"{stage}_acc", acc, prog_bar=True, on_step=on_step, on_epoch=True, sync_dist=not on_step)
        return loss


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy, accuracy) of (N, C) ``logits`` against (N,) class indices (IGNORE: a pattern
    without a class) or (N, C) soft targets; with soft targets a hit is an argmax the target allows."""
    logits = logits.float()
    if labels.is_floating_point():
        loss = -(labels * F.log_softmax(logits, -1)).sum(-1).mean()
        hit = labels.gather(1, logits.argmax(-1, keepdim=True)).squeeze(1) > 0
        return loss, hit.float().mean()
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE)
    known = labels != IGNORE
    acc = (logits.argmax(-1)[known] == labels[known]).float().mean() if known.any() else torch.zeros(())
    return loss, acc


def lookalike_loss(logits: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of (N, C) membership ``logits`` against (N, C) 0/1 targets, NaN
    targets (a pattern whose look-alike set is unknown) left out; 0 when every target is NaN."""
    known = torch.isfinite(member)
    if not known.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits.float()[known], member[known])


def build_optimizers(params, optimizer: dict | None, scheduler: dict | None, max_epochs: int):
    """Lightning's ``configure_optimizers`` answer for an optimizer and a schedule spec (plain dicts)."""
    opt = dict(optimizer or {"name": "adam", "lr": 1e-3, "weight_decay": 0.0})
    if opt["name"] == "sgd":
        optimizer = torch.optim.SGD(params, lr=opt["lr"], momentum=opt.get("momentum", 0.9),
                                    weight_decay=opt.get("weight_decay", 0.0), nesterov=True)
    elif opt["name"] == "adamw":
        optimizer = torch.optim.AdamW(params, lr=opt["lr"], weight_decay=opt.get("weight_decay", 0.0))
    else:
        optimizer = torch.optim.Adam(params, lr=opt["lr"], weight_decay=opt.get("weight_decay", 0.0))
    sched = dict(scheduler or {"name": "none"})
    if sched["name"] == "none":
        return optimizer
    if sched["name"] == "step":
        lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer, sched["step_size"], sched["gamma"])
    elif sched["name"] == "exponential":
        lr_scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, sched["gamma"])
    else:
        lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "interval": "epoch"}}
