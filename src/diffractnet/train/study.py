"""Hyperparameter study of orientation training with Optuna (seed 000's systematic study).

Searched: learning rate, batch size, exponential decay rate, kernel size, output clamping and — when
the training data are a labelled scan — the label-confidence cut (fraction of template-matching
labels kept). Each trial trains for a fixed number of minutes and is scored by its validation median
misorientation. The study lives in ``<out>/study.db`` (SQLite), so a killed study resumes. Outputs:
``trials.csv`` and ``trials.md`` (one row per trial), ``importance.png`` and ``history.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffractnet.analysis._atomic import write_text_atomic
from diffractnet.errors import ConfigError


def suggest(trial, base: dict) -> dict:
    """A trial's training config: ``base`` (a parsed orientation config as a dict) with sampled values."""
    config = json.loads(json.dumps(base))
    config["optimizer"] = {**config.get("optimizer", {}), "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True)}
    config["scheduler"] = {"name": "exponential", "gamma": trial.suggest_float("decay_rate", 0.8, 0.99)}
    config["trainer"] = {**config.get("trainer", {}), "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128])}
    kwargs = dict(config.get("model", {}).get("kwargs", {}))
    if config.get("model", {}).get("name", "small_cnn") == "small_cnn":
        kwargs["kernel_size"] = trial.suggest_categorical("kernel_size", [3, 5, 7])
    config["model"] = {**config.get("model", {}), "kwargs": kwargs}
    # clamp of the raw outputs (0: none); 6D rotation outputs live near ±1, class logits span ±10s
    choices = [0.0, 1.0, 3.0] if config.get("head") == "regression" else [0.0, 5.0, 20.0]
    clamp = trial.suggest_categorical("output_clamp", choices)
    config["output_clamp"] = clamp or None
    if config.get("labelled_scan"):
        config["labelled_scan"]["keep_fraction"] = trial.suggest_float("keep_fraction", 0.1, 1.0)
    return config


def _objective(base: dict, out: Path, minutes: float, progress: bool):
    from diffractnet.train.orientation import parse_orientation_config, train_orientation

    def objective(trial) -> float:
        config = suggest(trial, base)
        config["output_dir"] = str(out / f"trial_{trial.number:03d}")
        config["trainer"] = {**config["trainer"], "max_minutes": minutes, "max_epochs": 1000}
        train_orientation(parse_orientation_config(config, f"study trial {trial.number}"), progress=progress)
        summary = json.loads((Path(config["output_dir"]) / "train_summary.json").read_text())
        value = summary["final_metrics"].get("val_median_deg")
        if value is None:
            raise ConfigError("study trials need a validation set (val_patterns > 0)")
        return float(value)

    return objective


def run_study(config_path: str | Path, out_dir: str | Path, *, trials: int = 20, minutes_per_trial: float = 2.0,
              seed: int = 0, progress: bool = False) -> dict:
    """Run (or resume) the study; returns ``best_params``, ``best_value`` and the paths written."""
    import optuna

    from diffractnet._config import read_yaml
    from diffractnet.train.orientation import parse_orientation_config

    base = json.loads(parse_orientation_config(read_yaml(config_path, "orientation train config"),
                                               f"study config '{config_path}'").model_dump_json())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="orientation", storage=f"sqlite:///{(out / 'study.db').resolve()}",
                                direction="minimize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    finished = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if trials > finished:
        study.optimize(_objective(base, out, minutes_per_trial, progress), n_trials=trials - finished)
    return {"best_params": study.best_params, "best_value": study.best_value, **write_study_outputs(study, out)}


def write_study_outputs(study, out: Path) -> dict:
    """``trials.csv``, ``trials.md``, ``importance.png`` (what mattered) and ``history.png``."""
    frame = study.trials_dataframe(attrs=("number", "value", "params", "state", "duration"))
    write_text_atomic(out / "trials.csv", frame.to_csv(index=False))
    columns = [c for c in frame.columns if c != "duration"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for _, row in frame.iterrows()]
    write_text_atomic(out / "trials.md", "\n".join(lines) + "\n")
    paths = {"table": str(out / "trials.csv")}
    complete = [t for t in study.trials if t.value is not None]
    if len(complete) >= 2:
        paths.update(_plots(study, out))
    return paths


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plots(study, out: Path) -> dict:
    """Parameter importances (fANOVA) and the optimisation history as PNGs (atomic)."""
    import optuna

    from diffractnet.analysis._atomic import new_figure, save_figure_atomic as save_figure

    paths = {}
    values = [t.value for t in study.trials if t.value is not None]
    fig = new_figure(5, 3.2)
    ax = fig.add_subplot()
    ax.plot(range(len(values)), values, "o", label="trial")
    ax.plot(range(len(values)), [min(values[: i + 1]) for i in range(len(values))], "-", label="best so far")
    ax.set_xlabel("trial"), ax.set_ylabel("validation median error [deg]"), ax.legend()
    paths["history"] = str(save_figure(fig, out / "history.png"))
    try:
        importance = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # too few distinct trials to fit the importance model
        return paths
    fig = new_figure(5, 3.2)
    ax = fig.add_subplot()
    names = list(importance)[::-1]
    ax.barh(names, [importance[n] for n in names])
    ax.set_xlabel("importance (fANOVA)"), ax.set_title("what mattered")
    paths["importance"] = str(save_figure(fig, out / "importance.png"))
    return paths
