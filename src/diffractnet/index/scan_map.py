"""Orientation maps of whole scans: stream row blocks through the model (and the refiner), resumably.

The scan is read block by block of scan rows (``io.scans.Scan.iter_row_blocks``: lazy, NaN checked
per block), each block is preprocessed and run through the network in batches; optionally each
answer is refined against its own pattern (``index.refine``). Results of every finished block are
written atomically to ``<work_dir>/rows_<y0>_<y1>.npz``, so a killed job re-run with the same
``work_dir`` recomputes only the missing blocks. Memory stays bounded by one block. Once every
block is done the map is smoothed grain-aware (``index.smoothing``: neighbours within a few degrees
vote and are averaged, outliers take their grain's orientation); the per-pattern answers are kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffractnet.errors import DataError


@dataclass
class OrientationMap:
    """Per probe position: ``quaternions`` (ny, nx, 4) (lab → crystal), ``confidence`` (ny, nx) in (0, 1]
    (beam-direction head: the network's probability on its candidate classes; regression head: from
    its own error estimate), ``predicted_error_deg`` (regression head; NaN otherwise), ``correlation``
    (refinement score, NaN without refinement); ``per_pattern_quaternions`` each pattern's own answer
    (before the region vote and the map smoothing), ``support`` (ny, nx) the fraction of the smoothing window that agreed (1
    without smoothing); ``seconds`` of compute for the scan, ``patterns_per_s``; ``crystal``."""

    quaternions: np.ndarray
    confidence: np.ndarray
    predicted_error_deg: np.ndarray
    correlation: np.ndarray
    seconds: float
    per_pattern_quaternions: np.ndarray | None = None
    support: np.ndarray | None = None
    crystal: object = None
    info: dict = field(default_factory=dict)

    @property
    def patterns_per_s(self) -> float:
        return self.quaternions.shape[0] * self.quaternions.shape[1] / max(self.seconds, 1e-9)


class OrientationIndexer:
    """A trained orientation model (``model.safetensors``) ready to index patterns of its material."""

    def __init__(self, model_path: str | Path, *, refine: bool = True, device: str = "cpu",
                 batch_size: int = 256, candidates: int = 2) -> None:
        from diffractnet.data.polycrystal import resolve_crystal
        from diffractnet.data.scan_physics import ScanPhysics
        from diffractnet.models.checkpoint import load_model

        from diffractnet.models.inference import for_inference

        model, self.meta = load_model(model_path, task="orientation", device=device)
        self.model = for_inference(model)  # BatchNorms folded, channels-last: same outputs, ~2x faster
        self.model_path = Path(model_path)
        self.device, self.batch_size = torch.device(device), int(batch_size)
        self.crystal = resolve_crystal(self.meta["material"])
        self.physics = ScanPhysics(**self.meta["physics"])
        self.input_size = int(self.meta["image_size"])
        self.clamp = self.meta.get("output_clamp")
        self.refine, self.candidates = refine, int(candidates)
        self.head = self.meta.get("head", "regression")
        self._refiner = None
        self._bank = None

    def check_scan(self, pattern_shape: tuple[int, int], reciprocal_px_invA: float | None, where: str,
                   precession_deg: float | None = None) -> None:
        """``DataError`` if the scan's detector, or its precession angle [deg] where the file records one,
        does not match what the model was trained for."""
        h, w = pattern_shape
        if h != w or h % self.input_size:
            raise DataError(f"{where}: patterns of {h}x{w} px cannot be binned to the model's {self.input_size} px; "
                            f"use square patterns whose side is a multiple of {self.input_size}")
        trained = self._px(h)
        if reciprocal_px_invA is not None and abs(reciprocal_px_invA / trained - 1) > 0.02:
            raise DataError(f"{where}: calibration {reciprocal_px_invA:.5g} Å⁻¹/px differs from the model's "
                            f"{trained:.5g} Å⁻¹/px at {h} px; rebin the scan or train for this camera length")
        model_deg = float(self.physics.precession_deg)
        if precession_deg is not None and abs(precession_deg - model_deg) > 0.05:
            raise DataError(f"{where}: recorded with {precession_deg:g}° precession but the model was trained on "
                            f"{model_deg:g}°; train a model with physics.precession_deg: {precession_deg:g}")

    def _px(self, size_px: int, reciprocal_px_invA: float | None = None) -> float:
        """The detector's reciprocal pixel size [Å⁻¹/px]: as given, or the model's binned to ``size_px``."""
        return reciprocal_px_invA or self.physics.reciprocal_px_invA * self.physics.image_size_px / size_px

    def _refiner_for(self, size_px: int, px_invA: float):
        from diffractnet.index.refine import Refiner

        key = (size_px, round(px_invA, 8))
        if self._refiner is None or self._refiner[0] != key:
            self._refiner = (key, Refiner(self.crystal, self.physics.voltage_kV, px_invA, size_px,
                                          self.refine_settings()))
        return self._refiner[1]

    def refine_settings(self):
        """The ``RefineSettings`` this indexer refines with (matched to the model's scan physics)."""
        from diffractnet.index.refine import RefineSettings

        return RefineSettings.for_physics(self.physics)

    def prepare(self, size_px: int, px_invA: float | None = None) -> float:
        """Build the class templates and the refiner for this detector now; returns the seconds it took
        (reported as set-up, like a template library, not as indexing time)."""
        started = time.perf_counter()
        px = self._px(size_px, px_invA)
        if self.head == "beam_direction":
            self._bank_for(size_px, px)[0].prepare()
        if self.refine:
            self._refiner_for(size_px, px)
        return time.perf_counter() - started

    def _grid(self, size_px: int, px_invA: float):
        """The polar grid (and band-pass widths) of this model at this detector."""
        from diffractnet.index.polar import PolarGrid

        return PolarGrid.for_model(self.physics, self.input_size, size_px, px_invA)

    def _bank_for(self, size_px: int, px_invA: float):
        """Beam-direction classes and templates for this detector (built once per calibration)."""
        from diffractnet.index.beam_directions import BeamDirectionBank
        from diffractnet.index.polar import PolarFeatures

        key = (size_px, round(px_invA, 8))
        if self._bank is None or self._bank[0] != key:
            physics = self.physics.model_copy(update={"image_size_px": size_px, "reciprocal_px_invA": px_invA})
            grid = self._grid(size_px, px_invA)
            bank = BeamDirectionBank(self.crystal, self.meta["bin_deg"], physics, grid)
            if len(bank) != self.meta["num_outputs"]:
                raise DataError(f"model has {self.meta['num_outputs']} beam-direction classes but this orix gives "
                                f"{len(bank)} at {self.meta['bin_deg']} deg; use the orix version it was trained with")
            self._bank = (key, bank, PolarFeatures(grid, px_invA))
        return self._bank[1], self._bank[2]

    def _beam_direction(self, batch: torch.Tensor, px: float, band_passed: torch.Tensor, keep: int = 8):
        """Network → top candidate classes → in-plane angle by FFT correlation → (best rotation, confidence,
        the ``keep`` most probable classes (B, keep) and their log-probabilities)."""
        bank, features = self._bank_for(batch.shape[-1], px)
        polar = features.polar(batch, band_passed)
        from diffractnet.index.polar import invariant_features

        spectrum = torch.fft.rfft(polar, dim=-1)  # shared by the network's input and the in-plane step
        logits = self.model(invariant_features(polar, features.grid.harmonics, spectrum).to(self.device)).float().cpu()
        if self.clamp:
            logits = logits.clamp(-self.clamp, self.clamp)
        top = logits.topk(min(self.candidates, logits.shape[-1]), dim=-1)
        rotations, scores = bank.inplane(polar, top.indices, spectrum=spectrum)
        best = scores.argmax(dim=-1)
        prob = torch.softmax(logits, -1).gather(1, top.indices).sum(-1)  # mass on the candidates
        listed = torch.log_softmax(logits, -1).topk(min(keep, logits.shape[-1]), dim=-1)
        return rotations[torch.arange(len(batch)), best], prob, listed.indices, listed.values

    @torch.no_grad()
    def index(self, patterns: np.ndarray | torch.Tensor, reciprocal_px_invA: float | None = None) -> dict[str, np.ndarray]:
        """(N, H, W) patterns → dict of ``quaternions`` (N, 4), ``predicted_error_deg``, ``confidence``,
        ``correlation`` (N,); with a beam-direction head also ``top_classes`` (N, 8) and ``top_logprob``
        (N, 8), the network's most probable classes (the evidence ``index.regions`` pools per grain)."""
        from diffractnet.data.scan_physics import preprocess_for_model
        from diffractnet.index.polar import band_pass
        from diffractnet.tasks.orientation import confidence_from_error, decode_outputs, matrices_to_quaternions

        images = torch.as_tensor(np.asarray(patterns, dtype=np.float32))
        px = self._px(images.shape[-1], reciprocal_px_invA)
        rots, errs, corrs, confs, tops, logps = [], [], [], [], [], []
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            grid = self._grid(batch.shape[-1], px)
            bp = band_pass(batch, grid.smooth_px, grid.background_px)  # shared by the polar view and the refiner
            if self.head == "beam_direction":  # confidence: the network's probability on its candidates
                rot, conf, top, logp = self._beam_direction(batch, px, bp)
                tops.append(top), logps.append(logp)
                err = torch.full((len(batch),), float("nan"))
            else:
                out = self.model(preprocess_for_model(batch, self.input_size).to(self.device)).float().cpu()
                if self.clamp:
                    out = out.clamp(-self.clamp, self.clamp)
                rot, err = decode_outputs(out)
                conf = confidence_from_error(err)
            corr = torch.full((len(batch),), float("nan"))
            if self.refine:
                rot, corr = self._refiner_for(images.shape[-1], px).refine(batch, rot, bp)
            rots.append(rot), errs.append(err), corrs.append(corr), confs.append(conf)
        out = {"quaternions": matrices_to_quaternions(torch.cat(rots)), "predicted_error_deg": torch.cat(errs).numpy(),
               "confidence": torch.cat(confs).numpy(), "correlation": torch.cat(corrs).numpy()}
        if tops:
            out["top_classes"], out["top_logprob"] = torch.cat(tops).numpy(), torch.cat(logps).numpy()
        return out

    @torch.no_grad()
    def refine_candidates(self, patterns: np.ndarray, classes: np.ndarray, reciprocal_px_invA: float | None = None,
                          peaks: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Patterns (P, H, W) and candidate classes (P, C) → each candidate turned in-plane (along ±b, at its
        ``peaks`` best turns) and refined: (rotations (P, M, 3, 3), refined correlations (P, M)), M = 2C·peaks,
        on the scale of ``index``'s."""
        images = torch.as_tensor(np.asarray(patterns, dtype=np.float32))
        size = images.shape[-1]
        px = self._px(size, reciprocal_px_invA)
        bank, features = self._bank_for(size, px)
        grid = self._grid(size, px)
        from diffractnet.index.polar import band_pass

        bp = band_pass(images, grid.smooth_px, grid.background_px)
        starts, _ = bank.inplane(features.polar(images, bp), torch.as_tensor(classes, dtype=torch.long), peaks)
        m = starts.shape[1]
        rot, score = self._refiner_for(size, px).refine(images.repeat_interleave(m, 0), starts.reshape(-1, 3, 3),
                                                        bp.repeat_interleave(m, 0))
        return rot.reshape(len(images), m, 3, 3), score.reshape(len(images), m)

    @torch.no_grad()
    def refine_from(self, patterns: np.ndarray, starts: torch.Tensor, try_beam_flip: bool | None = None,
                    reciprocal_px_invA: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Patterns (P, H, W) refined from ``starts`` (P, 3, 3): (rotations (P, 3, 3), correlations (P,))."""
        images = torch.as_tensor(np.asarray(patterns, dtype=np.float32))
        size = images.shape[-1]
        px = self._px(size, reciprocal_px_invA)
        return self._refiner_for(size, px).refine(images, starts, try_beam_flip=try_beam_flip)


def map_scan(scan, indexer: OrientationIndexer, *, work_dir: str | Path | None = None, rows_per_block: int | None = None,
             progress: bool = True, smooth_radius_px: int = 2, smooth_max_deg: float = 2.0,
             region_vote: bool = False, average_neighbours: bool = False) -> OrientationMap:
    """Index every pattern of ``scan`` (``io.scans.Scan``) → ``OrientationMap``; resumable via ``work_dir``.

    ``smooth_radius_px`` window half-width of the grain-aware map smoothing (0: none, the per-pattern
    answers as they are), ``smooth_max_deg`` the misorientation up to which neighbours count as one grain;
    ``region_vote`` (beam-direction models with refinement): re-decide each region's orientation from
    the evidence of all its pixels (``index.regions.revote_regions``) before smoothing;
    ``average_neighbours`` indexes each pattern averaged with its 4 scan neighbours
    (``index.pattern_averaging``: for low-dose scans)."""
    from tqdm.auto import tqdm

    where = f"scan '{scan.path}'" if scan.path else "scan"
    indexer.check_scan(scan.pattern_shape, scan.reciprocal_px_invA, where, scan.precession_deg)
    ny, nx = scan.scan_shape
    work = Path(work_dir) if work_dir is not None else None
    if work is not None:
        _claim_work_dir(work, indexer, scan, average_neighbours)
    rows = rows_per_block or max(1, 2048 // nx)
    setup_seconds = indexer.prepare(scan.pattern_shape[0], scan.reciprocal_px_invA)
    fields: dict[str, np.ndarray] = {}
    seconds = 0.0
    bar = tqdm(total=ny * nx, desc="orientation map", unit="pattern", disable=not progress)
    for y0 in range(0, ny, rows):
        y1 = min(ny, y0 + rows)
        done = None if work is None else _load_block(work / f"rows_{y0}_{y1}.npz")
        if done is None:
            if average_neighbours:  # reading is not timed, the averaging is
                from diffractnet.index import pattern_averaging

                rows_read, first = pattern_averaging.rows_with_halo(scan, y0, y1)
                started = time.perf_counter()
                block = pattern_averaging.average_neighbours(rows_read, first, y1 - y0)
                del rows_read
            else:
                block = scan.rows(y0, y1)
                started = time.perf_counter()
            result = indexer.index(block.reshape(-1, *block.shape[-2:]), scan.reciprocal_px_invA)
            elapsed = time.perf_counter() - started
            done = {k: v.reshape(y1 - y0, nx, *v.shape[1:]) for k, v in result.items()}
            done["seconds"] = np.array(elapsed)
            if work is not None:
                _save_block(work / f"rows_{y0}_{y1}.npz", done)
        seconds += float(done.pop("seconds"))
        for key, value in done.items():
            if key not in fields:
                fields[key] = np.zeros((ny, nx, *value.shape[2:]), dtype=value.dtype)
            fields[key][y0:y1] = value
        bar.update((y1 - y0) * nx)
    bar.close()
    votes, per_pattern = None, fields["quaternions"].copy()
    if region_vote and indexer.refine and "top_classes" in fields:
        from diffractnet.index.regions import revote_regions

        started = time.perf_counter()
        votes = revote_regions(scan, indexer, fields, max_deg=smooth_max_deg, rows_per_block=rows)
        seconds += time.perf_counter() - started
    for key in ("top_classes", "top_logprob"):
        fields.pop(key, None)
    support = np.ones((ny, nx))
    if smooth_radius_px > 0:
        from diffractnet.index.smoothing import smooth_orientation_map

        started = time.perf_counter()
        smoothed, support = smooth_orientation_map(fields["quaternions"], indexer.crystal, radius_px=smooth_radius_px,
                                                   max_deg=smooth_max_deg)
        seconds += time.perf_counter() - started
        fields["quaternions"] = smoothed
    return OrientationMap(**fields, seconds=seconds, per_pattern_quaternions=per_pattern, support=support,
                          crystal=indexer.crystal,
                          info={"refined": indexer.refine, "model": indexer.meta.get("arch"),
                                "setup_seconds": setup_seconds, "smooth_radius_px": smooth_radius_px,
                                "smooth_max_deg": smooth_max_deg, "region_vote": votes,
                                "average_neighbours": average_neighbours})


def _claim_work_dir(work: Path, indexer: OrientationIndexer, scan, average_neighbours: bool = False) -> None:
    """Block results are reused only for the same model file, settings and scan; otherwise they are cleared."""
    import dataclasses
    import hashlib
    import json

    work.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(Path(indexer.model_path).read_bytes()).hexdigest()
    settings = dataclasses.asdict(indexer.refine_settings()) if indexer.refine else None
    key = {"blocks_version": 4, "model_sha256": digest, "refine": settings, "candidates": indexer.candidates,
           "average_neighbours": bool(average_neighbours), "scan": str(scan.path),
           "scan_shape": list(scan.scan_shape), "pattern_shape": list(scan.pattern_shape)}
    key = json.loads(json.dumps(key))  # as it reads back (tuples become lists)
    stamp = work / "blocks.json"
    try:
        same = json.loads(stamp.read_text()) == key
    except (OSError, ValueError):
        same = False
    if not same:
        for old in work.glob("rows_*.npz"):
            old.unlink()
        tmp = stamp.with_name(".blocks.json.tmp")
        tmp.write_text(json.dumps(key))
        tmp.replace(stamp)


def _save_block(path: Path, arrays: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_block(path: Path) -> dict | None:
    """A finished block's results, or None when absent or unreadable (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError):
        return None
