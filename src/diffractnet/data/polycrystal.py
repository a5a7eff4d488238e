"""Synthetic 4D-STEM scans of a polycrystal, with their true orientation maps.

Voronoi grains (random or fibre-textured orientations), soft grain boundaries where the two grains'
patterns add with weights falling across ``boundary_width_px``, a smooth thickness field, per-spot
intensity perturbation and Poisson noise (``data.scan_physics``). The scan is written row-block by
row-block (``io.scan_writer.ScanWriter``: resumable, atomic) with the truth beside it in an ``.npz``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from diffractnet._config import StrictModel, read_yaml, validate
from diffractnet.data.scan_physics import ScanPhysics, add_shot_noise, synthesize_patterns
from diffractnet.errors import DataError


class Texture(StrictModel):
    """``random`` (uniform in the fundamental zone) or ``fiber``: crystal direction ``axis_uvw`` along the
    beam, within ``spread_deg``, any in-plane angle."""

    kind: Literal["random", "fiber"] = "random"
    axis_uvw: tuple[int, int, int] = (0, 0, 1)
    spread_deg: float = Field(10.0, ge=0, le=90)


class PolycrystalSpec(StrictModel):
    """A synthetic scan: ``material`` (library name or CIF path), ``scan_shape`` (rows, cols) of probe
    positions, ``n_grains``, ``texture``, ``boundary_width_px`` (probe positions over which two grains
    mix), ``thickness_wavelength_px`` (length of the smooth thickness variation; thickness spans the
    physics range), ``scan_step_nm``, ``physics`` and ``seed``."""

    material: str = "LiNiO2"
    scan_shape: tuple[int, int] = (64, 64)
    n_grains: int = Field(24, ge=1)
    texture: Texture = Texture()
    boundary_width_px: float = Field(1.5, ge=0)
    thickness_wavelength_px: float = Field(40.0, gt=0)
    scan_step_nm: float = Field(5.0, gt=0)
    physics: ScanPhysics = ScanPhysics()
    seed: int = 0


@dataclass
class GrainLayout:
    """Per probe position: the two nearest grains, the first's weight, and the thickness [Å]."""

    grain: np.ndarray  # (ny, nx, 2) int
    weight: np.ndarray  # (ny, nx) in [0.5, 1]: share of grain[..., 0]
    thickness_A: np.ndarray  # (ny, nx)
    grain_quaternions: np.ndarray  # (n_grains, 4)

    def truth_quaternions(self) -> np.ndarray:
        """(ny, nx, 4) orientation of the dominant grain at each position."""
        return self.grain_quaternions[self.grain[..., 0]]


def load_polycrystal_spec(path: str | Path) -> PolycrystalSpec:
    """Read a polycrystal YAML; one-line ``ConfigError`` on a bad field."""
    return validate(PolycrystalSpec, read_yaml(path, "polycrystal spec"), f"polycrystal spec '{path}'")


def resolve_crystal(material: str):
    """A library material name or a CIF file → ``Crystal``."""
    from diffractnet.structures.cif import load_cif
    from diffractnet.structures.library import get_material

    return load_cif(material) if str(material).lower().endswith(".cif") else get_material(material)


def grain_orientations(crystal, texture: Texture, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) grain orientations drawn as ``texture`` says."""
    from diffractnet.physics.orientations import sample_fundamental_zone, zone_axis_quaternion
    from diffractnet.physics.zone_axes import tilt_quaternions

    if texture.kind == "random":
        return sample_fundamental_zone(crystal, n, seed=int(rng.integers(2**31)))
    base = zone_axis_quaternion(crystal, texture.axis_uvw, rng.random(n) * 360.0)
    return tilt_quaternions(base, texture.spread_deg, rng)


def grain_layout(spec: PolycrystalSpec, crystal) -> GrainLayout:
    """Voronoi grains, boundary weights and the thickness field of ``spec`` (deterministic in its seed)."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(spec.seed)
    ny, nx = spec.scan_shape
    seeds = rng.random((spec.n_grains, 2)) * [ny, nx]
    yy, xx = np.mgrid[0:ny, 0:nx]
    points = np.stack([yy.ravel(), xx.ravel()], 1).astype(float)
    k = min(2, spec.n_grains)
    dist, idx = cKDTree(seeds).query(points, k=k)
    dist, idx = dist.reshape(ny, nx, k), idx.reshape(ny, nx, k)
    if k == 1:
        dist, idx = np.concatenate([dist, dist + 1e9], -1), np.concatenate([idx, idx], -1)
    # distance to the bisector of the two nearest seeds: (d2² − d1²) / (2 |s1 − s2|)
    sep = np.linalg.norm(seeds[idx[..., 0]] - seeds[idx[..., 1]], axis=-1).clip(min=1e-9)
    to_boundary = (dist[..., 1] ** 2 - dist[..., 0] ** 2) / (2 * sep)
    half = max(spec.boundary_width_px / 2, 1e-9)
    weight = 0.5 + 0.5 * np.clip(to_boundary / half, 0, 1)
    return GrainLayout(grain=idx, weight=weight, thickness_A=_thickness_field(spec, rng),
                       grain_quaternions=grain_orientations(crystal, spec.texture, spec.n_grains, rng))


def _thickness_field(spec: PolycrystalSpec, rng: np.random.Generator) -> np.ndarray:
    """Smooth random field spanning the physics thickness range (sum of a few random plane waves)."""
    ny, nx = spec.scan_shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    field = np.zeros((ny, nx))
    for _ in range(4):
        angle, phase = rng.random() * 2 * np.pi, rng.random() * 2 * np.pi
        k = 2 * np.pi / spec.thickness_wavelength_px
        field += np.cos(k * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    field = (field - field.min()) / max(field.max() - field.min(), 1e-12)
    lo, hi = spec.physics.thickness_A
    return lo + (hi - lo) * field


def render_rows(spec: PolycrystalSpec, crystal, layout: GrainLayout, y0: int, y1: int) -> np.ndarray:
    """(y1−y0, nx, H, W) float32 patterns of scan rows y0:y1 (noise seeded by the rows: reproducible)."""

    nx = spec.scan_shape[1]
    rows = slice(y0, y1)
    q1 = layout.grain_quaternions[layout.grain[rows, :, 0]].reshape(-1, 4)
    q2 = layout.grain_quaternions[layout.grain[rows, :, 1]].reshape(-1, 4)
    w = layout.weight[rows].reshape(-1)
    t = layout.thickness_A[rows].reshape(-1)
    gen = torch.Generator().manual_seed(spec.seed * 100003 + y0)
    physics = spec.physics
    clean = physics.model_copy(update={"dose_e": None})
    sim = physics.simulator()
    image = synthesize_patterns(crystal, q1, clean, thickness_A=t, generator=gen, simulator=sim) * torch.from_numpy(w)[:, None, None].float()
    mixed = w < 1
    if mixed.any():
        other = synthesize_patterns(crystal, q2[mixed], clean, thickness_A=t[mixed], generator=gen, simulator=sim)
        image[torch.from_numpy(mixed)] += other * torch.from_numpy(1 - w[mixed])[:, None, None].float()
    image = add_shot_noise(image, physics.dose_e, gen)
    return image.reshape(y1 - y0, nx, *image.shape[-2:]).numpy()


def truth_path(scan_path: str | Path) -> Path:
    """Where the ground truth of a synthetic scan lives: ``<scan>.truth.npz`` beside it."""
    scan_path = Path(scan_path)
    return scan_path.with_name(scan_path.name + ".truth.npz")


def generate_polycrystal(spec: PolycrystalSpec, path: str | Path, rows_per_block: int = 4,
                         progress: bool = False) -> Path:
    """Write the scan of ``spec`` to ``path`` (.zarr, resumable: finished row blocks are kept after a
    kill) and its truth (``quaternions``, ``grain``, ``weight``, ``thickness_A``) to ``truth_path(path)``."""
    from tqdm.auto import tqdm

    from diffractnet.analysis._atomic import _temp_beside
    from diffractnet.io.scan_writer import ScanWriter

    path = Path(path)
    if path.suffix != ".zarr":
        raise DataError(f"synthetic scans are written as .zarr, got '{path}'")
    crystal = resolve_crystal(spec.material)
    layout = grain_layout(spec, crystal)
    p = spec.physics
    _check_resumable(path, spec)
    writer = ScanWriter(path, tuple(spec.scan_shape), (p.image_size_px, p.image_size_px),
                        reciprocal_px_invA=p.reciprocal_px_invA, voltage_kV=p.voltage_kV, scan_step_nm=spec.scan_step_nm,
                        attrs={"diffractnet_polycrystal": json.loads(spec.model_dump_json())},
                        rows_per_chunk=rows_per_block, overwrite=False)
    for y0, y1 in tqdm(writer.todo_rows(), desc=f"scan {crystal.name}", disable=not progress, unit="block"):
        writer.write_rows(y0, render_rows(spec, crystal, layout, y0, y1))
    truth = truth_path(path)
    tmp = _temp_beside(truth).with_suffix(".npz")
    np.savez(tmp, quaternions=layout.truth_quaternions(), grain=layout.grain[..., 0], weight=layout.weight,
             thickness_A=layout.thickness_A, grain_quaternions=layout.grain_quaternions,
             material=np.array(spec.material), space_group=np.array(crystal.space_group_number))
    tmp.replace(truth)
    return writer.finish()


def _check_resumable(path: Path, spec: PolycrystalSpec) -> None:
    """``DataError`` if an unfinished scan at ``path`` was started from a different spec."""
    import zarr

    partial = path.with_name(path.name + ".partial")
    if not partial.exists():
        return
    try:
        stored = dict(zarr.open_group(str(partial), mode="r").attrs).get("attrs", {}).get("diffractnet_polycrystal")
    except Exception:  # unreadable: ScanWriter reports it in its own words
        return
    if stored is not None and stored != json.loads(spec.model_dump_json()):
        raise DataError(f"unfinished scan '{partial}' was started from another spec; remove it or use the same spec")


def load_truth(path: str | Path) -> dict[str, np.ndarray]:
    """The truth ``.npz`` of a synthetic scan (given the scan path or the truth file itself)."""
    path = Path(path)
    path = path if path.name.endswith(".truth.npz") else truth_path(path)
    if not path.is_file():
        raise DataError(f"no ground truth at '{path}'")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"ground truth '{path}' is damaged ({str(exc).splitlines()[0][:100]})") from None
