"""The ``diffractnet`` command line: a thin layer over the library.

Every expected failure prints one line ``diffractnet: error: ...`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffractnet.errors import DiffractNetError


def _structures(args: argparse.Namespace) -> int:
    from diffractnet.structures.library import get_material, library_entries

    if args.action == "list":
        rows = [e for e in library_entries() if args.space_group is None or int(e["space_group"]) == args.space_group]
        if args.json:
            from diffractnet.structures.symmetry import crystal_system, space_group_symbol

            print(json.dumps([{"name": e["name"], "formula": e.get("formula", ""), "space_group": int(e["space_group"]),
                               "space_group_symbol": space_group_symbol(int(e["space_group"])),
                               "crystal_system": crystal_system(int(e["space_group"]))} for e in rows], indent=1))
        else:
            from diffractnet.structures.symmetry import space_group_symbol

            print(f"{'name':<14} {'formula':<12} {'space group':<16}")
            for e in rows:
                sg = int(e["space_group"])
                print(f"{e['name']:<14} {e.get('formula', ''):<12} {sg:>3} {space_group_symbol(sg):<12}")
            print(f"{len(rows)} materials")
        return 0
    if not args.name:
        raise DiffractNetError("structures show needs a material name or a CIF path")
    if args.name.lower().endswith(".cif"):
        from diffractnet.structures.cif import load_cif

        crystal = load_cif(args.name)
    else:
        crystal = get_material(args.name)
    info = crystal.summary()
    if args.json:
        info["sites"] = [{"element": s.element, "frac": list(s.frac), "occupancy": s.occupancy, "b_iso_A2": s.b_iso_a2}
                         for s in crystal.sites]
        print(json.dumps(info, indent=1))
    else:
        for key, value in info.items():
            print(f"{key:<20} {value}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from diffractnet.data.config import load_config
    from diffractnet.data.generate import generate_dataset

    config = load_config(args.config)
    if args.output:
        config = config.model_copy(update={"output_dir": Path(args.output)})
    card = generate_dataset(config, workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
    print(f"dataset card: {card}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from diffractnet._config import read_yaml
    from diffractnet.train import load_train_config, train

    if read_yaml(args.config, "train config").get("task") == "orientation":
        return _train_orientation(args)
    config = load_train_config(args.config)
    updates = {}
    if args.output:
        updates["output_dir"] = Path(args.output)
    if args.dataset:
        updates["dataset"] = Path(args.dataset)
    if updates:
        config = config.model_copy(update=updates)
    path = train(config, progress=not args.quiet)
    print(f"model: {path}")
    return 0


def _train_orientation(args: argparse.Namespace) -> int:
    from diffractnet.train.orientation import load_orientation_config, train_orientation

    config = load_orientation_config(args.config)
    if args.output:
        config = config.model_copy(update={"output_dir": Path(args.output)})
    print(f"model: {train_orientation(config, progress=not args.quiet)}")
    return 0


def _scan(args: argparse.Namespace) -> int:
    from diffractnet.data.polycrystal import PolycrystalSpec, generate_polycrystal, load_polycrystal_spec

    spec = load_polycrystal_spec(args.config) if args.config else PolycrystalSpec()
    path = generate_polycrystal(spec, args.out, progress=not args.quiet)
    print(f"scan: {path} (truth beside it)")
    return 0


def _map(args: argparse.Namespace) -> int:
    from diffractnet.tasks.orientation_map import run_map

    summary = run_map(args.scan, args.model, args.out, template=args.template, refine=not args.no_refine,
                      template_resolution_deg=args.template_resolution, reciprocal_px_invA=args.px,
                      voltage_kV=args.kv, progress=not args.quiet, smooth_radius_px=args.smooth_radius,
                      region_vote=args.region_vote, average_neighbours=args.average_neighbours)
    print(json.dumps({k: v for k, v in summary.items()}, indent=1, default=float))
    print(f"maps: {Path(args.out) / 'maps.png'}")
    return 0


def _study(args: argparse.Namespace) -> int:
    from diffractnet.train.study import run_study

    result = run_study(args.config, args.out, trials=args.trials, minutes_per_trial=args.minutes,
                       progress=not args.quiet)
    print(f"best trial: {result['best_params']} (median error {result['best_value']:.2f} deg); table: {result['table']}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from diffractnet.tasks.spacegroup_report import evaluate

    summary = evaluate(args.model, args.dataset, Path(args.out), split=args.split, coverage=args.coverage,
                       dose_e=args.dose)
    ws, fz = summary["within_set"], summary["fused3"]
    print(f"{summary['split']} materials: {', '.join(summary['test_materials'])}")
    print(f"single-pattern top-1 {summary['single_top1']:.3f} | within ambiguity set {ws['within_set']:.3f} | "
          f"3-pattern fused top-1 {fz['fused_top1']:.3f} (seed 003 mean {fz['ensemble_mean_top1']:.3f}) | "
          f"ECE {summary['ece']:.3f}")
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from diffractnet.models import load_model
    from diffractnet.tasks.spacegroup_predict import images_for_model, predict_patterns

    model, meta = load_model(args.model, task="spacegroup")
    result = predict_patterns(model, meta, images_for_model(args.images, meta, args.px), coverage=args.coverage)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for path, row in zip(args.images, result["per_pattern"]):
        top = ", ".join(f"{sg}: {p:.2f}" for sg, p in row["top"])
        print(f"{path}: {top} | cannot tell apart: {row['set']}")
    fused = result["fused"]
    print(f"fused ({len(args.images)} pattern(s)): " + ", ".join(f"{sg}: {p:.3f}" for sg, p in fused["top"]))
    print(f"answer: space group {fused['top'][0][0]}; indistinguishable by these patterns: {fused['set']}; "
          f"by any kinematic pattern: {fused['global_class']}; "
          f"crystal system {max(fused['coarse']['crystal_system'], key=fused['coarse']['crystal_system'].get)}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from diffractnet.analysis.gradcam import gradcam_heatmaps, save_overlay
    from diffractnet.models import load_model
    from diffractnet.tasks.spacegroup_predict import images_for_model

    model, meta = load_model(args.model, task="spacegroup")
    images = images_for_model([args.image], meta, args.px)
    target = None if args.target is None else [_column(meta, args.target)]
    if target is None and meta.get("lookalike_head"):  # the top group, not the look-alike head's top output
        from diffractnet.tasks.spacegroup import class_probabilities

        target = [int(class_probabilities(model, meta, images)[0].argmax())]
    heat = gradcam_heatmaps(model, images, target)
    out = save_overlay(images[0, 0].numpy(), heat[0], Path(args.out), title=f"Grad-CAM: {Path(args.image).name}")
    print(f"wrote {out}")
    return 0


def _column(meta: dict, space_group: int) -> int:
    from diffractnet.train.labels import outputs_space_groups

    if not outputs_space_groups(meta):
        raise DiffractNetError("--target needs a model trained on space-group labels")
    if space_group not in meta["class_labels"]:
        raise DiffractNetError(f"space group {space_group} is not one of the model's classes {meta['class_labels']}")
    return meta["class_labels"].index(space_group)


def _pattern(args: argparse.Namespace) -> int:
    from diffractnet.demo import save_pattern_png

    path = save_pattern_png(args.material, tuple(args.zone), Path(args.out), image_size_px=args.size,
                            voltage_kV=args.voltage, reciprocal_px_invA=args.px)
    print(f"wrote {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from diffractnet.demo import run_demo

    run_demo(Path(args.out), workers=args.workers)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffractnet", description="Deep learning for electron diffraction patterns.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("structures", help="list or show built-in materials and CIF files")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("name", nargs="?", help="material name or CIF path (for show)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--space-group", type=int, default=None, help="list only this space group")
    p.set_defaults(func=_structures)

    p = sub.add_parser("simulate", help="write a sparse-spot dataset from a YAML config")
    p.add_argument("config")
    p.add_argument("--output", default=None, help="override the config's output_dir")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scheduler", default="processes", help="processes, threads, synchronous or a tcp:// address")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_simulate)

    p = sub.add_parser("train", help="train a space-group classifier, or an orientation model (YAML with "
                                     "'task: orientation'), from a YAML config (re-run to resume)")
    p.add_argument("config")
    p.add_argument("--dataset", default=None, help="override the config's dataset folder")
    p.add_argument("--output", default=None, help="override the config's output_dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("scan", help="write a synthetic polycrystal 4D-STEM scan (.zarr) and its true orientation map")
    p.add_argument("config", nargs="?", default=None, help="polycrystal YAML (default: 64x64 LiNiO2)")
    p.add_argument("--out", default="scan.zarr")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_scan)

    p = sub.add_parser("map", help="orientation map of a 4D-STEM scan (.zarr/.npy/.hspy/.mib/.blo/.dm4/.emd/.h5)")
    p.add_argument("scan")
    p.add_argument("--model", required=True, help="orientation model.safetensors")
    p.add_argument("--out", default="runs/map")
    p.add_argument("--template", action="store_true", help="also run pyxem template matching, side by side")
    p.add_argument("--template-resolution", type=float, default=1.0, help="template grid spacing [deg]")
    p.add_argument("--no-refine", action="store_true", help="network answer only, no refinement against the pattern")
    p.add_argument("--smooth-radius", type=int, default=2,
                   help="grain-aware smoothing window half-width [scan px] (0: each pattern's own answer)")
    p.add_argument("--average-neighbours", action="store_true",
                   help="index each pattern averaged with its 4 scan neighbours (low-dose scans; see index.pattern_averaging)")
    p.add_argument("--region-vote", action="store_true",
                   help="re-decide each grain-like region from the pooled evidence of its pixels (slower; see index.regions)")
    p.add_argument("--px", type=float, default=None, help="reciprocal pixel size [1/Å per px] if the file lacks it")
    p.add_argument("--kv", type=float, default=None, help="voltage [kV] if the file lacks it")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_map)

    p = sub.add_parser("study", help="Optuna hyperparameter study of orientation training (seed 000)")
    p.add_argument("config", help="orientation training YAML (the base of every trial)")
    p.add_argument("--out", default="runs/study")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--minutes", type=float, default=2.0, help="training minutes per trial")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_study)

    p = sub.add_parser("evaluate", help="evaluate a model on a dataset split of unseen materials (HTML report)")
    p.add_argument("model", help="model.safetensors written by `diffractnet train`")
    p.add_argument("dataset", help="dataset folder (with card.json)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", default="runs/evaluate")
    p.add_argument("--coverage", type=float, default=0.9, help="probability the indistinguishable set must reach")
    p.add_argument("--dose", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="electrons per test pattern, drawn log-uniformly (default 1e5 1e6, an SAED exposure; "
                        "5e3 2e4 is a nanobeam 4D-STEM pattern's)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="space group of one crystal from one or several pattern images")
    p.add_argument("model")
    p.add_argument("images", nargs="+", help="PNG/TIFF/JPEG/.npy patterns of the same crystal")
    p.add_argument("--px", type=float, default=None, help="reciprocal pixel size of the images [1/Å per px]")
    p.add_argument("--coverage", type=float, default=0.9)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_predict)

    p = sub.add_parser("explain", help="Grad-CAM overlay of what the model looked at")
    p.add_argument("model")
    p.add_argument("image")
    p.add_argument("--target", type=int, default=None, help="space group to explain (default: the top one)")
    p.add_argument("--px", type=float, default=None, help="reciprocal pixel size of the image [1/Å per px]")
    p.add_argument("--out", default="gradcam.png")
    p.set_defaults(func=_explain)

    p = sub.add_parser("pattern", help="render one zone-axis pattern of a built-in material to PNG")
    p.add_argument("material")
    p.add_argument("--zone", type=int, nargs=3, default=[0, 0, 1], metavar=("U", "V", "W"))
    p.add_argument("--out", default="pattern.png")
    p.add_argument("--size", type=int, default=256, help="image side [px]")
    p.add_argument("--voltage", type=float, default=200.0, help="accelerating voltage [kV]")
    p.add_argument("--px", type=float, default=0.012, help="reciprocal pixel size [1/Å per px]")
    p.set_defaults(func=_pattern)

    p = sub.add_parser("demo", help="the main job on embedded defaults, written under --out")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diffractnet`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DiffractNetError as exc:
        print(f"diffractnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diffractnet: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
