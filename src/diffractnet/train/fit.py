"""``train(config)``: Lightning fit with checkpoints, resume after a kill, early stopping and export.

Output folder: ``checkpoints/`` (Lightning, ``last.ckpt`` for resume), ``logs/version_0/metrics.csv``,
``model.safetensors`` (best weights + metadata, what ``evaluate``/``predict`` load) and
``train_summary.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path

import torch

from diffractnet.errors import ConfigError, DataError
from diffractnet.render.canonical import VIEWS
from diffractnet.train.config import TrainConfig


def _callbacks(config: TrainConfig, has_val: bool, progress: bool) -> list:
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

    monitor = "val_loss" if has_val else "train_loss_epoch"
    if has_val and config.early_stopping is not None:
        monitor = config.early_stopping.monitor
    mode = "max" if monitor.endswith("acc") else "min"
    callbacks = [ModelCheckpoint(dirpath=config.output_dir / "checkpoints", filename="best-{epoch:03d}",
                                 monitor=monitor, mode=mode, save_top_k=1, save_last=True),
                 LearningRateMonitor(logging_interval="epoch")]
    if config.early_stopping is not None:
        es = config.early_stopping
        callbacks.append(EarlyStopping(monitor=monitor, patience=es.patience, min_delta=es.min_delta, mode=mode))
    if progress:
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    return callbacks


def _resume_path(config: TrainConfig, module=None) -> Path | None:
    """``last.ckpt`` if it loads without unpickling code; a damaged one is set aside, not trusted.
    ``ConfigError`` if it holds another network than ``module`` (its hyper-parameters differ: the
    config changed under the same ``output_dir``)."""
    last = config.output_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    try:
        saved = torch.load(last, map_location="cpu", weights_only=True)
    except Exception:
        last.rename(last.with_suffix(".ckpt.damaged"))
        print(f"warning: {last} was damaged (a kill during saving?); training restarts from scratch")
        return None
    if module is not None:
        before, now = dict(saved.get("hyper_parameters") or {}), dict(module.hparams)
        changed = sorted(k for k in set(before) | set(now) if k not in ("max_epochs",) and before.get(k) != now.get(k))
        if changed:
            raise ConfigError(f"{last} was trained with other settings ({', '.join(changed)}); give the run a new "
                              "output_dir, or delete that folder to start again")
    return last


def fit_module(config, module, datamodule, has_val: bool, progress: bool):
    """Run Lightning's fit for any config with ``output_dir``, ``seed``, ``trainer`` and ``early_stopping``
    (resuming from ``last.ckpt``); returns (trainer, seconds)."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    t = config.trainer
    trainer = L.Trainer(max_epochs=t.max_epochs, max_time=None if t.max_minutes is None else {"minutes": t.max_minutes},
                        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
                        strategy=t.strategy, precision=t.precision, callbacks=_callbacks(config, has_val, progress),
                        logger=CSVLogger(config.output_dir, name="logs", version=0), use_distributed_sampler=False,
                        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=5,
                        default_root_dir=config.output_dir, num_sanity_val_steps=0)
    started = time.perf_counter()
    log = config.output_dir / "logs" / "version_0" / "metrics.csv"
    earlier = _set_aside_log(log) if trainer.global_rank == 0 else None
    with warnings.catch_warnings():  # a deprecation inside Lightning itself, not ours to fix
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer.fit(module, datamodule=datamodule, ckpt_path=_resume_path(config, module), weights_only=True)
    if earlier is not None:
        _merge_logs(earlier, log, log)
        earlier.unlink()
    return trainer, time.perf_counter() - started


def _set_aside_log(log: Path) -> Path | None:
    """Lightning's CSV logger starts ``metrics.csv`` afresh on a resumed run: keep the earlier rows beside it
    (merged with any from a run killed after an earlier resume) to put back afterwards."""
    earlier = log.with_name("metrics_before_resume.csv")
    if log.is_file():
        if earlier.is_file():
            _merge_logs(earlier, log, earlier)
            log.unlink()
        else:
            log.replace(earlier)
    return earlier if earlier.is_file() else None


def _merge_logs(first: Path, second: Path, out: Path) -> None:
    """Rows of ``first`` then ``second`` (columns united, in first-seen order) → ``out``, atomically."""
    import csv

    rows, columns = [], []
    for path in (first, second):
        if path.is_file():
            with path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                columns += [c for c in reader.fieldnames or [] if c not in columns]
                rows += list(reader)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out)


def prepare_run(config, progress: bool) -> None:
    """Threads, quiet logging and seeds before a fit."""
    import lightning as L

    if config.trainer.threads:
        torch.set_num_threads(config.trainer.threads)
    if not progress:  # Lightning's banner lines (accelerators, tips) only when the user wants chatter
        logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    L.seed_everything(config.seed, workers=True, verbose=False)


def train(config: TrainConfig, progress: bool = True) -> Path:
    """Fit ``config``; re-running the same config resumes from the last checkpoint. Returns the model file."""
    from diffractnet.data.generate import load_card
    from diffractnet.train.datamodule import PatternDataModule
    from diffractnet.train.labels import build_label_map
    from diffractnet.train.module import ClassifierModule

    prepare_run(config, progress)
    card = load_card(config.dataset)
    label_map = build_label_map(config, card)
    has_val = card["counts"]["val"]["patterns"] > 0
    module = ClassifierModule(config.model.name, label_map.num_outputs, config.image.size_px,
                              config.model.kwargs, config.model.pretrained, config.optimizer.model_dump(),
                              config.scheduler.model_dump(), config.trainer.max_epochs,
                              in_chans=VIEWS[config.image.view], lookalike_head=config.labels.lookalike_head)
    datamodule = PatternDataModule(config, label_map, label_map.targets)
    trainer, seconds = fit_module(config, module, datamodule, has_val, progress)
    model_path = config.output_dir / "model.safetensors"
    if trainer.global_rank == 0:
        _export(config, trainer, module, label_map, card, seconds, model_path, datamodule.val_set)
    return model_path


def load_best(trainer, module) -> str | None:
    """Put the best checkpoint's weights into ``module``; returns its path (None: keep the last weights)."""
    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
    if best:
        try:
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        except Exception as exc:
            raise DataError(f"best checkpoint '{best}' cannot be read ({str(exc).splitlines()[0][:120]})") from None
        module.load_state_dict(state)
    return best


def write_summary(config, trainer, model_path: Path, best: str | None, seconds: float, extra: dict | None = None) -> None:
    """``train_summary.json`` beside the model (atomic)."""
    ckpt = trainer.checkpoint_callback
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    earlier = config.output_dir / "train_summary.json"
    if earlier.is_file():  # a resumed run that had nothing left to train keeps the last metrics it knew
        try:
            metrics = {**json.loads(earlier.read_text()).get("final_metrics", {}), **metrics}
        except ValueError:
            pass
    summary = {"model": str(model_path), "best_checkpoint": best, "best_score": float(ckpt.best_model_score)
               if ckpt is not None and ckpt.best_model_score is not None else None,
               "epochs_completed": trainer.current_epoch, "fit_seconds_this_run": round(seconds, 1),
               "final_metrics": metrics, "config": json.loads(config.model_dump_json()), **(extra or {})}
    tmp = config.output_dir / f".train_summary.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, config.output_dir / "train_summary.json")


def _export(config: TrainConfig, trainer, module, label_map, card: dict, seconds: float, path: Path,
            val_set=None) -> None:
    """Best weights → ``model.safetensors`` with everything prediction needs (the temperature fitted on
    the validation set among it); a JSON summary beside it."""
    from diffractnet.models.checkpoint import save_model
    from diffractnet.tasks.spacegroup_eval import train_prior

    best = load_best(trainer, module)
    calibration = _validation_calibration(module.model, val_set, config.trainer.batch_size, config.labels.lookalike_head)
    metadata = {"arch": config.model.name, "task": "spacegroup", "in_chans": VIEWS[config.image.view],
                "num_outputs": label_map.num_outputs, "image_size": config.image.size_px,
                "model_kwargs": config.model.kwargs, **label_map.metadata(),
                "image": config.image.model_dump(), "dataset": card["name"], "dataset_hash": card["config_hash"],
                "class_prior": train_prior(card, label_map.class_labels).tolist(),
                **calibration, "seed": config.seed}
    save_model(path, module.model.cpu(), metadata)
    write_summary(config, trainer, path, best, seconds, calibration)


@torch.no_grad()
def _validation_calibration(model: torch.nn.Module, val_set, batch_size: int, lookalike_head: bool = False) -> dict:
    """What is fitted on the validation patterns: ``temperature`` of the group outputs (not a look-alike
    head's; ``tasks.spacegroup.fit_temperature``; 1.0 without patterns) and, with a look-alike head,
    its membership ``lookalike_threshold`` (``tasks.spacegroup.fit_lookalike_threshold``; 0.5 where the
    targets do not name the true group: soft set-weighted targets)."""
    from diffractnet.tasks.spacegroup import DEFAULT_LOOKALIKE_THRESHOLD, fit_lookalike_threshold, fit_temperature
    from diffractnet.train.labels import split_lookalike

    if val_set is None or len(val_set) == 0:
        return {"temperature": 1.0, **({"lookalike_threshold": DEFAULT_LOOKALIKE_THRESHOLD} if lookalike_head else {})}
    model = model.cpu().eval()
    outputs, targets = [], []
    for start in range(0, len(val_set), 4 * batch_size):
        images, y = val_set[list(range(start, min(len(val_set), start + 4 * batch_size)))]
        outputs.append(model(images).float()), targets.append(y)
    z, y = torch.cat(outputs), torch.cat(targets)
    if not lookalike_head:
        return {"temperature": round(fit_temperature(z, y), 4)}
    (logits, member_logits), (groups, member) = split_lookalike(z), split_lookalike(y)
    temperature = round(fit_temperature(logits, groups), 4)
    one_hot = bool(((groups == 0) | (groups == 1)).all() and (groups.sum(-1) == 1).all())
    threshold = DEFAULT_LOOKALIKE_THRESHOLD
    if one_hot:
        probs = torch.softmax(logits / temperature, -1).numpy()
        known = torch.isfinite(member).all(-1)
        size = torch.where(known, member.nan_to_num().sum(-1), torch.zeros(())).numpy()
        threshold = fit_lookalike_threshold(torch.sigmoid(member_logits).numpy(), probs, groups.argmax(-1).numpy(), size)
    return {"temperature": temperature, "lookalike_threshold": threshold}
