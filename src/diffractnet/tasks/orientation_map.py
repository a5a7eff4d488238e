"""The orientation-mapping job: scan → our map (and the template-matching map) → figures, files, figures of merit.

``run_map`` writes into ``out_dir``: ``ours.npz`` (quaternions, confidence, predicted error,
refinement correlation), ``ours.ang`` and ``ours.h5`` (MTEX / orix), ``template.npz`` when the
template-matching baseline ran, ``maps.png`` (IPF maps side by side with grain boundaries, the
misorientation-to-truth maps when the truth is known, and the IPF colour key) and ``summary.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diffractnet.analysis._atomic import write_text_atomic


def _save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def template_map(scan, crystal, *, resolution_deg: float = 1.0, frac_keep: float = 1.0, progress: bool = True,
                 precession_deg: float | None = None):
    """pyxem template matching of a whole ``scan`` (``io.scans.Scan``) → ``index.template.TemplateResult``.
    ``precession_deg`` the templates' precession angle (None: the one the scan records, else 0)."""
    from diffractnet.errors import DataError
    from diffractnet.index.template import build_template_library, match_scan

    if scan.reciprocal_px_invA is None or scan.voltage_kV is None:
        raise DataError(f"scan '{scan.path}' has no calibration; give the reciprocal pixel size and voltage")
    if precession_deg is None:
        precession_deg = scan.precession_deg or 0.0
    library = build_template_library(crystal, scan.voltage_kV, scan.reciprocal_px_invA, scan.pattern_shape[0],
                                     resolution_deg=resolution_deg, precession_deg=precession_deg)
    return match_scan(scan.data, library, frac_keep=frac_keep, progress=progress)


def error_stats(quaternions: np.ndarray, truth: np.ndarray, crystal) -> dict:
    """Misorientation to truth: raw, and with a 180° turn about the beam counted as right."""
    from diffractnet.analysis.misorientation import misorientation_deg, misorientation_stats

    raw = misorientation_deg(quaternions, truth, crystal)
    flip = misorientation_deg(quaternions, truth, crystal, beam_flip_equal=True)
    return {"raw": misorientation_stats(raw), "beam_flip_equal": misorientation_stats(flip), "map_deg": raw}


def run_map(scan_path: str | Path, model_path: str | Path, out_dir: str | Path, *, template: bool = True,
            template_resolution_deg: float = 1.0, refine: bool = True, truth: str | Path | None = "auto",
            reciprocal_px_invA: float | None = None, voltage_kV: float | None = None, progress: bool = True,
            smooth_radius_px: int = 2, region_vote: bool = False, average_neighbours: bool = False) -> dict:
    """Map ``scan_path`` with the orientation model ``model_path`` (and pyxem template matching when
    ``template``); ``truth`` a ``.truth.npz`` (``"auto"``: beside a synthetic scan if present);
    ``smooth_radius_px`` the grain-aware smoothing window of our map (0: per-pattern answers);
    ``region_vote`` re-decides each region from its pooled evidence first (``index.regions``);
    ``average_neighbours`` indexes neighbour-averaged patterns (``index.pattern_averaging``). Returns the summary."""
    from diffractnet.analysis.orientation_maps import MapPanel, crystal_map, plot_orientation_maps, save_ang, save_orix_hdf5
    from diffractnet.data.polycrystal import load_truth, truth_path
    from diffractnet.index.scan_map import OrientationIndexer, map_scan
    from diffractnet.io.scans import open_scan

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scan = open_scan(scan_path, reciprocal_px_invA=reciprocal_px_invA, voltage_kV=voltage_kV)
    indexer = OrientationIndexer(model_path, refine=refine)
    ours = map_scan(scan, indexer, work_dir=out / "blocks", progress=progress, smooth_radius_px=smooth_radius_px,
                    region_vote=region_vote, average_neighbours=average_neighbours)
    crystal = indexer.crystal
    _save_npz(out / "ours.npz", quaternions=ours.quaternions, confidence=ours.confidence,
              predicted_error_deg=ours.predicted_error_deg, correlation=ours.correlation,
              per_pattern_quaternions=ours.per_pattern_quaternions, support=ours.support)
    step = scan.scan_step_nm or 1.0
    cmap = crystal_map(ours.quaternions, crystal, confidence=ours.confidence, step_nm=step)
    save_ang(out / "ours.ang", cmap)
    save_orix_hdf5(out / "ours.h5", cmap)
    summary = {"scan": str(scan_path), "model": str(model_path), "material": crystal.name,
               "scan_shape": list(scan.scan_shape), "pattern_shape": list(scan.pattern_shape),
               "ours": {"seconds": ours.seconds, "patterns_per_s": ours.patterns_per_s, "refined": refine,
                        "smooth_radius_px": smooth_radius_px, "region_vote": ours.info["region_vote"],
                        "average_neighbours": average_neighbours}}
    panels = [MapPanel("diffractnet (IPF-z)", ours.quaternions)]
    tm = None
    if template:
        # the model's precession: check_scan has made sure a scan that records one agrees with it
        tm = template_map(scan, crystal, resolution_deg=template_resolution_deg, progress=progress,
                          precession_deg=indexer.physics.precession_deg)
        _save_npz(out / "template.npz", quaternions=tm.quaternions, correlation=tm.correlation)
        summary["template"] = {"seconds": tm.seconds, "patterns_per_s": tm.patterns_per_s,
                               "resolution_deg": template_resolution_deg, "frac_keep": tm.frac_keep}
        panels.append(MapPanel("pyxem template matching (IPF-z)", tm.quaternions))
    truth_file = truth_path(scan_path) if truth == "auto" else (Path(truth) if truth else None)
    if truth_file is not None and truth_file.is_file():
        q_true = load_truth(truth_file)["quaternions"]
        panels.insert(0, MapPanel("truth (IPF-z)", q_true))
        errors = error_stats(ours.quaternions, q_true, crystal)
        panels.append(MapPanel("diffractnet error [deg]", errors.pop("map_deg"), "misorientation [deg]", "magma", 0, 10))
        summary["ours"]["error"] = errors
        summary["ours"]["per_pattern_error"] = {k: v for k, v in error_stats(ours.per_pattern_quaternions, q_true,
                                                                             crystal).items() if k != "map_deg"}
        if tm is not None:
            terr = error_stats(tm.quaternions, q_true, crystal)
            panels.append(MapPanel("template matching error [deg]", terr.pop("map_deg"), "misorientation [deg]",
                                   "magma", 0, 10))
            summary["template"]["error"] = terr
    plot_orientation_maps(out / "maps.png", panels, crystal, step_nm=scan.scan_step_nm)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary
