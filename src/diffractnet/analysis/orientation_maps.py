"""Orientation maps of scans: orix ``CrystalMap``, neighbour misorientations, IPF colours, grain boundaries,
figures, files (the misorientation itself: ``analysis.misorientation``).

Conventions. Quaternions are (w, x, y, z) unit quaternions in orix's sense: the rotation R maps lab
(sample) coordinates to crystal coordinates, v_crystal = R v_lab; lab +z is the beam axis. A map is
(ny, nx, 4): row ``i`` is lab y = i · step, column ``j`` is lab x = j · step (the scan axes are taken
as the lab x and y axes, i.e. no scan rotation). Symmetry is the crystal's **Laue** group (diffraction
adds inversion), whose rotations are those of its proper subgroup (m-3m → 432, -3m → 32).

Files. ``save_ang`` writes EDAX TSL .ang through orix: Bunge Euler angles (radians, ZXZ) of the same
lab → crystal rotation, with x, y in the map's step unit (nm here; orix reads every .ang back as "um",
numbers unchanged). Euler frame and spatial frame coincide, so MTEX needs neither
``convertEuler2SpatialReferenceFrame`` nor ``convertSpatial2EulerReferenceFrame``; for trigonal and
hexagonal phases orix and MTEX both take X ∥ a. ``save_orix_hdf5`` keeps everything (phase with space
group, all properties, scan unit).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffractnet.analysis._atomic import _temp_beside, new_figure, save_figure_atomic
from diffractnet.analysis.misorientation import _unit_quaternions, misorientation_deg
from diffractnet.errors import DataError
from diffractnet.physics.orientations import laue_group
from diffractnet.structures.convert import crystal_to_orix_phase
from diffractnet.structures.crystal import Crystal

MASKED_GRAY = 0.6  # RGB level of masked / not-indexed pixels in every panel


# ----------------------------------------------------------------------------- validation


def _map_quaternions(q, where: str) -> np.ndarray:
    """``q`` as an (ny, nx, 4) map of unit quaternions, or a DataError."""
    q = np.asarray(q)
    if q.ndim != 3 or q.shape[-1] != 4 or q.shape[0] == 0 or q.shape[1] == 0:
        raise DataError(f"{where}: an orientation map must have shape (ny, nx, 4), got {q.shape}")
    return _unit_quaternions(q, where)


def _map_scalar(values, shape: tuple[int, int], where: str, finite: bool = False) -> np.ndarray:
    """``values`` as a float (ny, nx) array matching ``shape``, or a DataError."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != shape:
        raise DataError(f"{where}: shape {arr.shape} does not match the map's {shape}")
    if finite and not np.isfinite(arr).all():
        raise DataError(f"{where}: {int((~np.isfinite(arr)).sum())} value(s) are NaN or inf")
    return arr


def _map_mask(mask, shape: tuple[int, int], where: str = "mask") -> np.ndarray:
    """Boolean (ny, nx) mask, True where a pixel is valid (all True when ``mask`` is None)."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    arr = np.asarray(mask)
    if arr.shape != shape:
        raise DataError(f"{where}: shape {arr.shape} does not match the map's {shape}")
    return arr.astype(bool)


def neighbour_misorientations_deg(quaternions, crystal: Crystal) -> tuple[np.ndarray, np.ndarray]:
    """Misorientations [deg] to the right and lower neighbours: (ny, nx − 1) and (ny − 1, nx) arrays."""
    q = _map_quaternions(quaternions, "neighbour misorientations")
    return (misorientation_deg(q[:, :-1], q[:, 1:], crystal),
            misorientation_deg(q[:-1, :], q[1:, :], crystal))


def grain_boundaries(quaternions, crystal: Crystal, threshold_deg: float = 5.0, *, mask=None) -> np.ndarray:
    """Bool (ny, nx) map of pixels on a grain boundary.

    A pixel is on a boundary when its misorientation to its right or lower neighbour exceeds
    ``threshold_deg`` [deg]; both pixels of such a pair are marked, so a boundary is two pixels wide.
    Pairs with a masked pixel (``mask`` False) are never boundaries.
    """
    right, down = _boundary_edges(quaternions, crystal, threshold_deg, mask)
    on_boundary = np.zeros((right.shape[0], right.shape[1] + 1), dtype=bool)
    on_boundary[:, :-1] |= right
    on_boundary[:, 1:] |= right
    on_boundary[:-1, :] |= down
    on_boundary[1:, :] |= down
    return on_boundary


def _boundary_edges(quaternions, crystal, threshold_deg, mask) -> tuple[np.ndarray, np.ndarray]:
    """Bool edges between pixel pairs (right: (ny, nx−1), down: (ny−1, nx)) above ``threshold_deg``."""
    if not np.isfinite(threshold_deg) or threshold_deg <= 0:
        raise DataError(f"grain boundary threshold must be a positive angle in degrees, got {threshold_deg}")
    q = _map_quaternions(quaternions, "grain boundaries")
    valid = _map_mask(mask, q.shape[:2])
    right, down = neighbour_misorientations_deg(q, crystal)
    right = (right > threshold_deg) & valid[:, :-1] & valid[:, 1:]
    down = (down > threshold_deg) & valid[:-1, :] & valid[1:, :]
    return right, down


# ----------------------------------------------------------------------------- colours and maps


def _direction_vector(direction):
    """orix Vector3d of a lab direction: 'x', 'y', 'z' or three numbers."""
    from orix.vector import Vector3d

    named = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}
    if isinstance(direction, str):
        if direction.lower() not in named:
            raise DataError(f"IPF direction must be 'x', 'y', 'z' or a 3-vector, got '{direction}'")
        return Vector3d(named[direction.lower()])
    vec = np.asarray(direction, dtype=np.float64)
    if vec.shape != (3,) or not np.isfinite(vec).all() or not np.linalg.norm(vec):
        raise DataError(f"IPF direction must be 'x', 'y', 'z' or a non-zero 3-vector, got {direction!r}")
    return Vector3d(vec / np.linalg.norm(vec))


def ipf_rgb(quaternions, crystal: Crystal, direction="z") -> np.ndarray:
    """IPF colours, RGB in [0, 1], of the crystal direction along lab ``direction`` (default the beam).

    ``quaternions``: (..., 4), typically an (ny, nx, 4) map; returns (..., 3). Colours come from orix's
    ``IPFColorKeyTSL`` of the crystal's Laue group, so symmetry-equivalent orientations share a colour.
    """
    from orix.plot import IPFColorKeyTSL
    from orix.quaternion import Orientation

    q = _unit_quaternions(quaternions, "IPF colours")
    symmetry = laue_group(crystal)
    key = IPFColorKeyTSL(symmetry, direction=_direction_vector(direction))
    rgb = key.orientation2color(Orientation(q.reshape(-1, 4), symmetry=symmetry))
    return np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0).reshape(*q.shape[:-1], 3)


def crystal_map(quaternions, crystal: Crystal, *, confidence=None, step_nm: float = 1.0,
                extra_props: Mapping[str, np.ndarray] | None = None, mask=None):
    """orix ``CrystalMap`` of an (ny, nx, 4) orientation map of one phase.

    Points are row-major; x = column · ``step_nm`` and y = row · ``step_nm`` [nm] (scan unit "nm").
    The phase is ``crystal_to_orix_phase(crystal)`` (id 0). Properties: ``"confidence"`` (``confidence``
    (ny, nx), zeros when None) plus each (ny, nx) array of ``extra_props`` (e.g. ``"misorientation_deg"``).
    Pixels where ``mask`` is False are "not indexed" (phase id −1).
    """
    from orix.crystal_map import CrystalMap, PhaseList
    from orix.quaternion import Rotation

    q = _map_quaternions(quaternions, "crystal map")
    shape = q.shape[:2]
    if not np.isfinite(step_nm) or step_nm <= 0:
        raise DataError(f"crystal map: step_nm must be positive, got {step_nm}")
    conf = np.zeros(shape) if confidence is None else _map_scalar(confidence, shape, "crystal map confidence",
                                                                   finite=True)
    props = {"confidence": conf.ravel()}
    for name, values in (extra_props or {}).items():
        if name in props:
            raise DataError(f"crystal map: property '{name}' is given twice")
        props[str(name)] = _map_scalar(values, shape, f"crystal map property '{name}'").ravel()
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    phase_id = np.where(_map_mask(mask, shape, "crystal map mask"), 0, -1).ravel()
    return CrystalMap(Rotation(q.reshape(-1, 4)), phase_id=phase_id, x=cols.ravel() * float(step_nm),
                      y=rows.ravel() * float(step_nm), phase_list=PhaseList(crystal_to_orix_phase(crystal)),
                      prop=props, scan_unit="nm")


# ----------------------------------------------------------------------------- files


def _write_atomic(path: str | Path, writer) -> Path:
    """Run ``writer(temp_path)`` then rename the temporary file onto ``path``."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        writer(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_ang(path: str | Path, cmap) -> Path:
    """Write ``cmap`` as an EDAX TSL .ang file (orix's writer) atomically; returns the path.

    Euler angles are Bunge ZXZ [rad] of the lab → crystal rotation, 5 decimals (≈ 6e-4°). The
    ``"confidence"`` property becomes the CI column and every other property an extra named column;
    x, y keep their numbers (nm), though orix and MTEX read the unit as µm. Not-indexed pixels get
    Euler angles 4π and CI −1. The phase keeps only its proper point group (the TSL symmetry code).
    """
    from orix.io.plugins import ang

    extra = [name for name in cmap.prop.keys() if name != "confidence"]
    return _write_atomic(path, lambda tmp: ang.file_writer(
        tmp, cmap, confidence_index_prop="confidence" if "confidence" in cmap.prop.keys() else None,
        extra_prop=extra or None))


def save_orix_hdf5(path: str | Path, cmap) -> Path:
    """Write ``cmap`` as an orix HDF5 file (``orix.io.load`` reads it back whole) atomically."""
    from orix.io.plugins import orix_hdf5

    return _write_atomic(path, lambda tmp: orix_hdf5.file_writer(tmp, cmap))


# ----------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class MapPanel:
    """One panel of :func:`plot_orientation_maps`.

    ``data``: (ny, nx, 4) quaternions (IPF-coloured, grain boundaries in black) or (ny, nx) scalars
    (colour bar labelled ``label``, e.g. "misorientation to truth [deg]"; NaN drawn gray).
    """

    title: str
    data: np.ndarray
    label: str = ""
    cmap: str = "viridis"
    vmin: float | None = None
    vmax: float | None = None


def _as_panels(panels) -> list[MapPanel]:
    """Panels from MapPanel objects, (title, data) pairs or a {title: data} mapping."""
    items = panels.items() if isinstance(panels, Mapping) else panels
    out = []
    for item in items:
        if isinstance(item, MapPanel):
            out.append(item)
        elif isinstance(item, Sequence) and len(item) == 2:
            out.append(MapPanel(str(item[0]), item[1]))
        else:
            raise DataError(f"orientation map panel must be a MapPanel or (title, data), got {type(item).__name__}")
    if not out:
        raise DataError("orientation map figure needs at least one panel")
    return out


def plot_orientation_maps(path: str | Path, panels, crystal: Crystal, *, mask=None,
                          boundary_threshold_deg: float = 5.0, direction="z", step_nm: float | None = None,
                          dpi: int = 120) -> Path:
    """One PNG: the panels side by side, then the IPF colour key of the crystal's Laue group.

    ``panels``: MapPanel objects, (title, data) pairs or a {title: data} mapping, all of one (ny, nx)
    shape. ``mask`` (ny, nx), True where valid (e.g. ``confidence >= 0.5``): other pixels are gray in
    every panel and never on a boundary. ``direction``: lab direction of the IPF colours (default the
    beam). ``step_nm`` labels the axes in nm (pixels when None). Written atomically; returns the path.
    """
    import orix.plot  # noqa: F401  (registers the "ipf" projection)

    items = _as_panels(panels)
    shape = np.asarray(items[0].data).shape[:2]
    valid = _map_mask(mask, shape)
    fig = new_figure(3.4 * len(items) + 2.6, 3.6)
    grid = fig.add_gridspec(1, len(items) + 1, width_ratios=[1.0] * len(items) + [0.7])
    for index, panel in enumerate(items):
        ax = fig.add_subplot(grid[0, index])
        data = np.asarray(panel.data)
        if data.shape[:2] != shape:
            raise DataError(f"panel '{panel.title}': shape {data.shape} does not match the first panel's {shape}")
        if data.ndim == 3 and data.shape[-1] == 4:
            _draw_orientations(ax, data, crystal, valid, boundary_threshold_deg, direction)
        elif data.ndim == 2:
            _draw_scalar(fig, ax, panel, valid)
        else:
            raise DataError(f"panel '{panel.title}': data must be (ny, nx, 4) quaternions or (ny, nx) values, "
                            f"got {data.shape}")
        ax.set_title(panel.title, fontsize=10)
        _label_axes(ax, shape, step_nm)
    key_ax = fig.add_subplot(grid[0, -1], projection="ipf", symmetry=laue_group(crystal),
                             direction=_direction_vector(direction))
    key_ax.plot_ipf_color_key(show_title=False)
    key_ax.set_title(f"IPF-{direction if isinstance(direction, str) else 'v'} key ({laue_group(crystal).name})",
                     fontsize=9, pad=22)
    return save_figure_atomic(fig, path, dpi=dpi)


def _draw_orientations(ax, q, crystal, valid, threshold_deg, direction) -> None:
    """IPF-coloured map (masked pixels gray) with grain boundaries as black lines along pixel edges."""
    from matplotlib.collections import LineCollection

    q = _map_quaternions(q, "orientation panel")
    rgb = ipf_rgb(q, crystal, direction)
    rgb[~valid] = MASKED_GRAY
    ax.imshow(rgb, interpolation="nearest", origin="upper")
    right, down = _boundary_edges(q, crystal, threshold_deg, valid)
    rows, cols = np.nonzero(right)  # edge between (r, c) and (r, c + 1): vertical segment at x = c + 0.5
    segments = [[(c + 0.5, r - 0.5), (c + 0.5, r + 0.5)] for r, c in zip(rows, cols)]
    rows, cols = np.nonzero(down)  # edge between (r, c) and (r + 1, c): horizontal segment at y = r + 0.5
    segments += [[(c - 0.5, r + 0.5), (c + 0.5, r + 0.5)] for r, c in zip(rows, cols)]
    if segments:
        ax.add_collection(LineCollection(segments, colors="black", linewidths=1.2))


def _draw_scalar(fig, ax, panel: MapPanel, valid) -> None:
    """Scalar map with a colour bar; NaN and masked pixels gray."""
    from matplotlib import colormaps

    values = np.ma.masked_invalid(np.asarray(panel.data, dtype=np.float64))
    values = np.ma.masked_where(~valid, values)
    cmap = colormaps[panel.cmap].with_extremes(bad=(MASKED_GRAY,) * 3)
    image = ax.imshow(values, cmap=cmap, vmin=panel.vmin, vmax=panel.vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label=panel.label)


def _label_axes(ax, shape: tuple[int, int], step_nm: float | None) -> None:
    """Axis labels in pixels, or ticks in nm when ``step_nm`` is given."""
    if step_nm is None:
        ax.set_xlabel("x [px]")
        ax.set_ylabel("y [px]")
        return
    for n, setter in ((shape[1], ax.set_xticks), (shape[0], ax.set_yticks)):
        ticks = np.unique(np.linspace(0, n - 1, min(n, 5)).round().astype(int))
        setter(ticks, [f"{t * step_nm:g}" for t in ticks])
    ax.set_xlabel("x [nm]")
    ax.set_ylabel("y [nm]")
