#!/usr/bin/env python
"""Space-group identification on unseen materials: seed 003's task, and all 36 cubic groups.

One run: simulate the data, train each model on this CPU (training time measured), evaluate on
test materials never seen in training, print a table; ``--json PATH`` writes, per model name,
``single_top1``, ``single_within_set``, ``fused3_top1``, ``train_seconds`` (and more), under
``appearance_labels`` the same for seed 003's 2D-appearance labelling, and under ``cubic36`` its
``top1`` and ``ambiguity_class_top1``.

    python bench/spacegroup.py [--out runs/bench_spacegroup] [--json out.json] [--quick]

Test patterns: every zone axis of the 13 symmetry-distinct cubic axes up to index 3 (seed 003
drew 16), random in-plane turns, random tilts up to ``--tilt`` degrees off the axis, Poisson noise
at 10⁵–10⁶ electrons per pattern (an SAED exposure; again at a nanobeam pattern's 5·10³–2·10⁴) with
diffuse background, drawn on linear intensities before the display power, as a detector records. Single-pattern "within set": the
fewest most probable groups reaching 90 % probability hold the true group and are no more than the
groups physics says give the same visible pattern: the reflections inside the disc every test image
shows, at some zone axis, once scale, turn and mirror are free (``structures.visible_ambiguity``).
"Mimic ok" also counts a group the material mimics kinematically (``physics.pseudosymmetry``).
"physics, presence only" is a reader blind to intensities: each pattern's look-alike set weighted by
the training prior (``spacegroup_eval.presence_reader``), fused alike; what systematic absences tell.
``--labels space_group_set`` trains on such sets as soft targets (``train.labels``); ``--lookalike-head`` adds a
second head that answers, per group, whether physics lets it give the pattern, and within set then counts its sets.
Epochs are sized from the training rate measured on this machine first, so each learning-rate
schedule runs to its end inside its time budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SEED003_GROUPS = [213, 221, 225, 227, 229]
CUBIC36 = list(range(195, 231))


def _parse() -> argparse.Namespace:
    from diffractnet.tasks.spacegroup_eval import LOW_DOSE_E, SAED_DOSE_E

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench_spacegroup"))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--models", nargs="+", default=["small_cnn", "resnet18"])
    p.add_argument("--minutes", type=float, nargs="+", default=[14.0, 26.0], help="training budget per model")
    p.add_argument("--labels", choices=["space_group", "space_group_set"], default="space_group",
                   help="the models' targets: the true group, or each zone-axis pattern's look-alike groups "
                        "weighted by the training prior (train.labels.SpaceGroupSetLabelMap)")
    p.add_argument("--lookalike-head", action=argparse.BooleanOptionalAction, default=True,
                   help="give the models a second head, per group whether physics lets it give this pattern "
                        "(train.labels.LookAlikeLabelMap); within-set then counts that head's set (default on)")
    p.add_argument("--appearance-minutes", type=float, default=8.0, help="0 skips the appearance-label run")
    p.add_argument("--cubic36-minutes", type=float, default=10.0, help="0 skips the 36-group run")
    p.add_argument("--tilt", type=float, default=0.5, help="largest tilt off the zone axis [deg]")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--scale", type=float, nargs=2, default=[0.92, 1.08], metavar=("MIN", "MAX"),
                   help="range of the random scale (camera length / voltage) augmentation")
    p.add_argument("--view", choices=["plain", "lattice", "lattice_unit"], default="lattice_unit",
                   help="classifier input: the pattern as rendered, turned into its lattice frame, or also "
                        "zoomed to unit shortest spot vector")
    p.add_argument("--shell-jitter", type=float, default=0.0,
                   help="σ of the random log intensity factor per |g| shell in training (0: off)")
    p.add_argument("--intensity-power", type=float, default=0.3,
                   help="classifier input brightness = (pixel / brightest) ** this, per pixel after the shot noise (lower lifts weak spots and the noise with them)")
    p.add_argument("--random-per-group", type=int, default=0,
                   help="pyxtal random crystals per group added to training only (0: built-in materials only)")
    p.add_argument("--substitute", type=int, default=0,
                   help="element-substituted variants per training material, training only (materials.substitute; 0: off)")
    p.add_argument("--random-max-atoms", type=int, default=32, help="largest conventional cell of a random crystal")
    p.add_argument("--dose", type=float, nargs=2, default=list(SAED_DOSE_E), metavar=("LOW", "HIGH"),
                   help="electrons per test pattern (log-uniform): an SAED exposure read out binned")
    p.add_argument("--low-dose", type=float, nargs=2, default=list(LOW_DOSE_E), metavar=("LOW", "HIGH"),
                   help="the second evaluation's electrons per test pattern: a nanobeam 4D-STEM pattern's")
    p.add_argument("--train-dose", type=float, nargs=2, default=[3e3, 3e6], metavar=("LOW", "HIGH"),
                   help="electrons per training pattern (log-uniform), spanning both test doses")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (minutes → seconds); figures meaningless")
    return p.parse_args()


def dataset_config(name: str, out: Path, groups: list[int], per_zone: int, tilt: float, random_per_group: int = 0,
                   seed: int = 2026, random_split: str = "any", random_max_atoms: int = 96, substitute: int = 0) -> dict:
    materials = {"space_groups": groups}
    if substitute:
        materials["substitute"] = {"per_material": substitute}
    if random_per_group:
        materials["random"] = {"space_groups": groups, "per_group": random_per_group, "split": random_split,
                               "max_atoms": random_max_atoms}
    return {"name": name, "seed": seed, "output_dir": str(out), "shard_patterns": 512, "materials": materials,
            "orientations": {"zone_axes": "standard", "max_index": 3, "per_zone_axis": per_zone, "tilt_deg": tilt},
            "physics": {"voltage_kV": 200, "g_max_invA": 1.8, "thickness_A": 20},
            "split": {"train": 0.7, "val": 0.1, "test": 0.2}}


def train_config(dataset: Path, out: Path, model: str, minutes: float, patterns_per_s: float, scheme: str,
                 threads: int, scale: tuple[float, float] = (0.92, 1.08), view: str = "plain",
                 shell_jitter: float = 0.0, intensity_power: float = 0.5,
                 train_dose: tuple[float, float] = (3e3, 3e6), lookalike_head: bool = False) -> dict:
    """Epochs sized so the run ends within ``minutes`` at the expected speed; max_time as a guard."""
    per_epoch = 8192
    epochs = max(2, int(minutes * 60 * 0.95 * patterns_per_s / per_epoch))  # 5 %: validation and checkpoints
    kwargs = {"width": 16} if model == "small_cnn" else {}
    return {"dataset": str(dataset), "output_dir": str(out), "seed": 7,
            "model": {"name": model, "kwargs": kwargs}, "labels": {"scheme": scheme, "lookalike_head": lookalike_head and scheme != "appearance"},
            "image": {"size_px": 64, "reciprocal_px_invA": 0.04, "spot_sigma_px": 1.0, "intensity_power": intensity_power,
                      "view": view},
            "augment": {"center_shift_px": 2, "scale": list(scale), "spot_sigma_px": [0.8, 1.4],
                        "background": [0.0, 0.1], "dose_e": list(train_dose), "shell_jitter": shell_jitter},
            "optimizer": {"name": "adamw", "lr": 0.002 if model == "small_cnn" else 0.001, "weight_decay": 1e-4},
            "scheduler": {"name": "cosine"},
            "trainer": {"max_epochs": epochs, "batch_size": 64, "num_workers": 1, "train_patterns_per_epoch": per_epoch,
                        "threads": threads, "max_minutes": minutes * 1.1}}


def measure_training_rate(raw_config: dict, steps: int = 16, warmup: int = 4) -> float:
    """Training patterns/s of this config on this machine: the real loader (rendering in its worker), forward,
    backward and optimizer step, timed over ``steps`` batches after ``warmup``. Sizing the epochs from it
    lets the learning-rate schedule run to its end inside the time budget (a guess that is too high
    leaves the cosine schedule cut off halfway, at a high learning rate)."""
    import torch

    from diffractnet.train.config import parse_train_config
    from diffractnet.train.datamodule import PatternDataModule
    from diffractnet.train.labels import build_label_map
    from diffractnet.data.generate import load_card
    from diffractnet.render.canonical import VIEWS
    from diffractnet.train.module import ClassifierModule

    config = parse_train_config(raw_config)
    label_map = build_label_map(config, load_card(config.dataset))
    module = ClassifierModule(config.model.name, label_map.num_outputs, config.image.size_px, config.model.kwargs,
                              None, config.optimizer.model_dump(), in_chans=VIEWS[config.image.view],
                              lookalike_head=config.labels.lookalike_head)
    data = PatternDataModule(config, label_map, label_map.targets)
    data.trainer = None
    data.setup("fit")
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    loader = iter(data.train_dataloader())
    for i in range(warmup + steps):
        if i == warmup:
            started = time.perf_counter()
        images, labels = next(loader)
        loss, _ = module.loss(module(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * config.trainer.batch_size / (time.perf_counter() - started)


def calibrated_train_config(dataset: Path, out: Path, model: str, minutes: float, scheme: str, threads: int,
                            **options) -> dict:
    """``train_config`` with its epochs sized by the measured training rate; ``options``: its keyword options."""
    probe = train_config(dataset, out, model, minutes, 1.0, scheme, threads, **options)
    rate = measure_training_rate(probe)
    print(f"  {model}: {rate:.0f} training patterns/s measured; epochs sized to {minutes:.1f} min", flush=True)
    return train_config(dataset, out, model, minutes, rate, scheme, threads, **options)


def run_model(name: str, dataset: Path, out: Path, minutes: float, scheme: str, threads: int,
              doses: tuple, **options) -> dict:
    """Train ``name`` and evaluate it at the test dose ``doses[0]``, and again at the low dose ``doses[1]``."""
    from diffractnet.tasks.spacegroup_report import evaluate
    from diffractnet.train import train
    from diffractnet.train.config import parse_train_config

    config = parse_train_config(calibrated_train_config(dataset, out / "train", name, minutes, scheme, threads,
                                                        **options))
    started = time.perf_counter()
    model_path = train(config, progress=False)
    seconds = time.perf_counter() - started
    summary = evaluate(model_path, dataset, out / "eval", dose_e=doses[0])
    low = evaluate(model_path, dataset, out / "eval_low_dose", dose_e=doses[1])
    return {"single_top1": summary["single_top1"], "single_within_set": summary["within_set"]["within_set"],
            "fused3_top1": summary["fused3"]["fused_top1"], "fused3_seed003_mean_top1": summary["fused3"]["ensemble_mean_top1"],
            "single_top1_apparent": summary["single_top1_apparent"],
            "fused3_top1_apparent": summary["fused3"]["fused_top1_apparent"], "pseudo_symmetric": summary["pseudo_symmetric"],
            "train_seconds": round(seconds, 1), "ece": summary["ece"],
            "mean_predicted_set": summary["within_set"].get("mean_predicted_set"),
            "mean_physics_set": summary["within_set"].get("mean_physics_set"),
            "test_materials": summary["test_materials"], "report": str(out / "eval" / "report.html"),
            "dose_e": list(doses[0]), "presence_reader": summary["presence_reader"],
            "low_dose": {"dose_e": list(doses[1]), "single_top1": low["single_top1"],
                         "single_within_set": low["within_set"]["within_set"], "fused3_top1": low["fused3"]["fused_top1"],
                         "fused3_top1_apparent": low["fused3"]["fused_top1_apparent"]}}


def run_cubic36(root: Path, minutes: float, tilt: float, threads: int, quick: bool, dose: tuple,
                scheme: str = "space_group", **options) -> dict:
    """All 36 cubic groups: built-in cubic materials plus pyxtal random crystals of every group."""
    import numpy as np

    from diffractnet.data.config import parse_config
    from diffractnet.data.generate import generate_dataset, load_card
    from diffractnet.models import load_model
    from diffractnet.structures.ambiguity import global_class_of
    from diffractnet.tasks.spacegroup_eval import eval_augment, predict_split
    from diffractnet.train import train
    from diffractnet.train.config import parse_train_config

    data = root / "cubic36" / "data"
    generate_dataset(parse_config(dataset_config("cubic36", data, CUBIC36, 1 if quick else 4, tilt,
                                                 random_per_group=1 if quick else 5)), workers=2, progress=False)
    config = parse_train_config(calibrated_train_config(data, root / "cubic36" / "train", "small_cnn", minutes,
                                                        scheme, threads, **options))
    started = time.perf_counter()
    model, meta = load_model(train(config, progress=False), task="spacegroup")
    seconds = time.perf_counter() - started
    pred = predict_split(model, meta, data, "test", augment=eval_augment(dose))
    labels = np.array(pred.class_labels)
    guess = labels[pred.probs.argmax(1)]
    same_class = [g in global_class_of(int(t)) for g, t in zip(guess, pred.space_group)]
    card = load_card(data)
    return {"top1": float(np.mean(guess == pred.space_group)), "ambiguity_class_top1": float(np.mean(same_class)),
            "n_test_patterns": int(len(guess)), "n_test_materials": card["counts"]["test"]["materials"],
            "n_classes": len(labels), "train_seconds": round(seconds, 1)}


def main() -> int:
    args = _parse()
    import torch

    torch.set_num_threads(args.threads)
    from diffractnet.data.config import parse_config
    from diffractnet.data.generate import generate_dataset

    scale = 1 / 60 if args.quick else 1.0  # --quick: minutes become seconds
    data = args.out / "cubic5" / "data"
    t0 = time.perf_counter()
    generate_dataset(parse_config(dataset_config("cubic5", data, SEED003_GROUPS, 2 if args.quick else 24, args.tilt,
                                                 args.random_per_group, random_split="train",
                                                 random_max_atoms=args.random_max_atoms, substitute=args.substitute)),
                     workers=2, progress=False)
    results: dict = {"dataset_seconds": round(time.perf_counter() - t0, 1), "tilt_deg": args.tilt, "threads": args.threads,
                     "scale_augmentation": list(args.scale), "random_per_group": args.random_per_group, "substitute_per_material": args.substitute,
                     "labels": args.labels, "lookalike_head": args.lookalike_head, "view": args.view, "shell_jitter": args.shell_jitter, "intensity_power": args.intensity_power,
                     "test_dose_e": args.dose, "low_dose_e": args.low_dose, "train_dose_e": args.train_dose}
    options = {"scale": tuple(args.scale), "view": args.view, "shell_jitter": args.shell_jitter,
               "intensity_power": args.intensity_power, "train_dose": tuple(args.train_dose),
               "lookalike_head": args.lookalike_head}
    doses = (tuple(args.dose), tuple(args.low_dose))
    minutes = dict(zip(args.models, args.minutes + [args.minutes[-1]] * len(args.models)))
    for name in args.models:
        print(f"training {name} ({minutes[name] * scale:.1f} min budget) ...", flush=True)
        results[name] = run_model(name, data, args.out / name, minutes[name] * scale, args.labels, args.threads,
                                  doses, **options)
    if args.appearance_minutes > 0:
        print("training small_cnn on seed 003's appearance labels ...", flush=True)
        results["appearance_labels"] = run_model("small_cnn", data, args.out / "appearance", args.appearance_minutes * scale,
                                                 "appearance", args.threads, doses, **options)
    if args.cubic36_minutes > 0:
        print("all 36 cubic space groups ...", flush=True)
        results["cubic36"] = run_cubic36(args.out, args.cubic36_minutes * scale, args.tilt, args.threads, args.quick,
                                         tuple(args.dose), args.labels, **options)
    _print_table(results, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def _print_table(results: dict, args: argparse.Namespace) -> None:
    rows = [(name, results[name]) for name in [*args.models, "appearance_labels"] if name in results]
    print(f"\nSpace groups {SEED003_GROUPS}, unseen test materials: {', '.join(rows[0][1]['test_materials'])}")
    print(f"zone axes (13, index <= 3) + random tilts <= {args.tilt} deg, Poisson noise; {args.threads} CPU threads")
    print(f"training materials: built-in + {args.random_per_group} pyxtal random crystals per group + {args.substitute} "
          f"element-substituted variants per material (training only); "
          f"labels: {args.labels}{' + look-alike head (within set: its sets)' if args.lookalike_head else ''}; input view: {args.view}; shell intensity jitter σ {args.shell_jitter}; intensity power {args.intensity_power}")
    head = (f"{'model':<22}{'single top-1':>13}{'within set':>12}{'fused-3 top-1':>15}{'seed003 mean':>14}"
            f"{'train min':>11}{'fused-3 mimic ok':>18}")
    print(head)
    print("-" * len(head))
    for name, r in rows:
        label = "small_cnn, appearance" if name == "appearance_labels" else name
        print(f"{label:<22}{r['single_top1']:>13.3f}{r['single_within_set']:>12.3f}{r['fused3_top1']:>15.3f}"
              f"{r['fused3_seed003_mean_top1']:>14.3f}{r['train_seconds'] / 60:>11.1f}{r['fused3_top1_apparent']:>18.3f}")
    reader = rows[0][1]["presence_reader"]
    print(f"{'physics, presence only':<22}{reader['single_top1']:>13.3f}{1.0:>12.3f}{reader['fused3_top1']:>15.3f}"
          "   (the prior over each pattern's look-alike set: what systematic absences alone tell)")
    print(f"test patterns at {args.dose[0]:.0e}-{args.dose[1]:.0e} electrons each (an SAED exposure); trained at "
          f"{args.train_dose[0]:.0e}-{args.train_dose[1]:.0e}")
    print("targets: fused-3 top-1 >= 0.98, within set >= 0.95, training < 30 min")
    print(f"\nthe same models at a nanobeam 4D-STEM dose, {args.low_dose[0]:.0e}-{args.low_dose[1]:.0e} electrons per pattern:")
    for name, r in rows:
        low = r["low_dose"]
        label = "small_cnn, appearance" if name == "appearance_labels" else name
        print(f"{label:<22}{low['single_top1']:>13.3f}{low['single_within_set']:>12.3f}{low['fused3_top1']:>15.3f}"
              f"{'':>25}{low['fused3_top1_apparent']:>18.3f}")
    mimics = rows[0][1]["pseudo_symmetric"]
    print("'mimic ok' also counts a group the material mimics (its extra absences below 1e-3 of the strongest |F|^2): "
          + (", ".join(f"{n} -> {g}" for n, g in mimics.items()) or "none among the test materials"))
    if "cubic36" in results:
        c = results["cubic36"]
        print(f"\nall 36 cubic groups (small_cnn, {c['n_test_materials']} unseen materials, {c['n_test_patterns']} patterns): "
              f"top-1 {c['top1']:.3f}, global-ambiguity-class top-1 {c['ambiguity_class_top1']:.3f}, "
              f"trained {c['train_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
