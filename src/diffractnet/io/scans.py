"""4D-STEM scans: lazy, chunked reading of the community's formats; atomic and resumable writing.

A scan is one diffraction pattern per probe position: a dask array (ny, nx, H, W) = (scan rows, scan
columns, detector rows, detector columns) plus calibration: reciprocal pixel size [Å⁻¹/px], beam
voltage [kV], scan step [nm].

Read: ``.npy`` (+ ``<stem>.json`` sidecar), ``.zarr`` (this module's layout, or a bare 3-/4-D zarr
array), and through HyperSpy/RosettaSciIO ``.hspy .zspy .mib .blo .dm3 .dm4 .emd .h5 .hdf5`` (an
``.h5`` that is not a HyperSpy file is read as its one 3-/4-D dataset). Write: ``.zarr``, ``.npy`` (+
sidecar), ``.hspy``/``.zspy`` (signal axes in nm⁻¹ = 10 × Å⁻¹, offsets centred, as pyxem expects).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import dask.array as da
import numpy as np
import zarr

from diffractnet.errors import DataError

MIN_PATTERN_PX = 16
CALIBRATION_RTOL = 0.01
CHUNK_TARGET_BYTES = 16 * 2**20
ZARR_FORMAT = "diffractnet-scan/1"
SIDECAR_FORMAT = "diffractnet-scan-sidecar/1"
HSPY_SIGNAL_UNITS = "nm^-1"
CALIBRATION_KEYS = ("reciprocal_px_invA", "voltage_kV", "scan_step_nm")
HYPERSPY_SUFFIXES = (".hspy", ".zspy", ".mib", ".blo", ".dm3", ".dm4", ".emd", ".h5", ".hdf5")
READ_SUFFIXES = (".npy", ".zarr", *HYPERSPY_SUFFIXES)
WRITE_SUFFIXES = (".zarr", ".npy", ".hspy", ".zspy")
# unit string (lower case, without '$', '\', braces, blanks, leading 'k_') → factor to Å⁻¹
_RECIPROCAL_UNITS = {**dict.fromkeys(("1/nm", "nm^-1", "nm-1", "nm**-1", "nm⁻¹"), 0.1),
                     **dict.fromkeys(("1/a", "a^-1", "a-1", "a**-1", "a⁻¹", "aa^-1", "1/angstrom",
                                      "angstrom^-1", "å^-1", "1/å", "å⁻¹"), 1.0)}
_ANGLE_UNITS = {"mrad": 1e-3, "rad": 1.0}
_LENGTH_UNITS_NM = {"nm": 1.0, "µm": 1e3, "μm": 1e3, "um": 1e3, "a": 0.1, "å": 0.1, "angstrom": 0.1,
                    "pm": 1e-3}


@dataclass
class Scan:
    """A lazy 4D-STEM scan: ``data`` (ny, nx, H, W) dask array, calibration (``None`` = unknown)."""

    data: da.Array
    reciprocal_px_invA: float | None = None
    voltage_kV: float | None = None
    scan_step_nm: float | None = None
    path: Path | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def scan_shape(self) -> tuple[int, int]:
        """(ny, nx): scan rows and columns."""
        return int(self.data.shape[0]), int(self.data.shape[1])

    @property
    def pattern_shape(self) -> tuple[int, int]:
        """(H, W): detector rows and columns [px]."""
        return int(self.data.shape[2]), int(self.data.shape[3])

    def rows(self, y0: int, y1: int) -> np.ndarray:
        """Scan rows ``y0 ≤ y < y1`` as a float32 (y1-y0, nx, H, W) array, read now and checked for
        NaN/inf; ``DataError`` names the rows if they cannot be read or hold non-finite pixels."""
        ny = self.scan_shape[0]
        name = f"scan '{self.path}'" if self.path else "scan"
        if not 0 <= y0 < y1 <= ny:
            raise DataError(f"{name}: rows {y0}:{y1} are outside the scan's rows 0:{ny}; ask for rows within it")
        where = f"{name} rows {y0}-{y1 - 1}"
        try:
            block = np.asarray(self.data[y0:y1].compute())
        except Exception as exc:
            raise DataError(f"{where} could not be read ({_first_line(exc)}); the file is damaged or "
                            "truncated: re-export or re-copy it") from None
        check_finite_block(block, where, first_row=y0)
        return block.astype(np.float32, copy=False)

    def iter_row_blocks(self, rows_per_block: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(y0, y1, rows(y0, y1))`` over the whole scan, ``rows_per_block`` rows at a time
        (default: the data's own chunk height, so each block reads whole chunks)."""
        step = int(rows_per_block or self.data.chunks[0][0])
        if step < 1:
            raise DataError(f"rows_per_block must be at least 1, got {rows_per_block}")
        for y0, y1 in _row_ranges(self.scan_shape[0], step):
            yield y0, y1, self.rows(y0, y1)


def check_finite_block(block: np.ndarray, where: str, first_row: int = 0) -> None:
    """Raise ``DataError`` if a block of patterns holds NaN or infinite pixels. ``where`` names the
    block (file and rows); ``first_row`` is the scan row of ``block[0]`` for the message."""
    if block.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(block)
    if not bad.any():
        return
    first = ""
    if block.ndim == 4:
        row, col = np.argwhere(bad.any(axis=(2, 3)))[0]
        first = f" (first in the pattern at scan row {first_row + int(row)}, column {int(col)})"
    raise DataError(f"{where}: {int(bad.sum())} pixels are NaN or infinite{first}; replace or mask them "
                    "(e.g. numpy.nan_to_num) before indexing")


def open_scan(path: str | Path, *, reciprocal_px_invA: float | None = None, voltage_kV: float | None = None,
              scan_step_nm: float | None = None, chunk_rows: int | None = None,
              scan_shape: tuple[int, int] | None = None) -> Scan:
    """Open a scan lazily (nothing is read but headers and metadata).

    Calibration comes from the file where it has one: reciprocal pixel size [Å⁻¹/px] (from signal
    axes in Å⁻¹, nm⁻¹, or mrad with a known voltage), voltage [kV], scan step [nm]. An argument
    overrides a missing value and must agree with the file's within 1 %. ``chunk_rows`` rechunks to
    that many scan rows per chunk; ``scan_shape`` (ny, nx) reshapes a flat stack of ny·nx patterns
    (e.g. a .mib without its .hdr). A stack (n, H, W) without ``scan_shape`` is a 1-row scan.
    ``DataError`` for a missing, unknown, unreadable or ill-shaped file, or mismatched calibration.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"scan file '{path}' does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix not in READ_SUFFIXES:
        raise DataError(f"scan file '{path}' has unknown format '{suffix}'; use one of {', '.join(READ_SUFFIXES)}")
    reader = {".npy": _read_npy, ".zarr": _read_zarr}.get(suffix, _read_hyperspy)
    raw, file_calibration, metadata = reader(path)
    data = _as_scan_array(raw, f"scan file '{path}'", scan_shape)
    given = {"reciprocal_px_invA": reciprocal_px_invA, "voltage_kV": voltage_kV, "scan_step_nm": scan_step_nm}
    calibration, metadata["calibration_source"] = _calibrate(given, file_calibration, path)
    if chunk_rows is not None:
        data = data.rechunk({0: max(1, int(chunk_rows)), 1: -1, 2: -1, 3: -1})
    return Scan(data=data, path=path, metadata=metadata, **calibration)


def _calibrate(given: dict, from_file: dict, path: Path) -> tuple[dict, dict]:
    """Resolved calibration and where each value came from ('argument', 'file' or None). A file
    calibrated in mrad (``detector_px_mrad``) converts to Å⁻¹ with the resolved voltage."""
    voltage = _resolve_calibration("voltage_kV", given["voltage_kV"], from_file.get("voltage_kV"), path)
    file_px, mrad = from_file.get("reciprocal_px_invA"), from_file.get("detector_px_mrad")
    if file_px is None and mrad is not None and voltage is not None:
        from diffractnet.physics.wavelength import electron_wavelength_A

        file_px = mrad * 1e-3 / electron_wavelength_A(voltage)  # small angle: k = θ / λ
    file_values = {**from_file, "reciprocal_px_invA": file_px}
    calibration = {"voltage_kV": voltage, **{key: _resolve_calibration(key, given[key], file_values.get(key), path)
                                             for key in ("reciprocal_px_invA", "scan_step_nm")}}
    sources = {key: "argument" if given[key] is not None else ("file" if calibration[key] is not None else None)
               for key in CALIBRATION_KEYS}
    return calibration, sources


def write_scan(path: str | Path, data: np.ndarray | da.Array, *, reciprocal_px_invA: float | None,
               voltage_kV: float | None = None, scan_step_nm: float | None = None, attrs: dict | None = None,
               chunk_rows: int | None = None) -> Path:
    """Write a (ny, nx, H, W) scan (numpy or dask, streamed by row blocks) atomically to ``.zarr``,
    ``.npy`` (+ ``<stem>.json`` sidecar with calibration and ``attrs``) or ``.hspy``/``.zspy`` (signal
    axes in nm⁻¹, navigation axes in nm, beam energy in keV). Calibration: reciprocal pixel size
    [Å⁻¹/px], voltage [kV], scan step [nm]; ``None`` = unknown. ``chunk_rows``: scan rows per zarr
    chunk (default: about 16 MiB). Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise DataError(f"cannot write scan '{path}': unknown format '{suffix}'; "
                        f"use one of {', '.join(WRITE_SUFFIXES)}")
    array = _as_scan_array(data, f"scan data for '{path}'")
    calibration = _checked_calibration(reciprocal_px_invA, voltage_kV, scan_step_nm)
    rows = int(chunk_rows or _default_rows(array.shape, array.dtype))
    writer = {".zarr": _write_zarr, ".npy": _write_npy}.get(suffix, _write_hyperspy)
    writer(path, array, calibration, dict(attrs or {}), rows)
    return path


class ScanWriter:
    """Incremental, resumable writing of a scan to ``.zarr``, by whole chunks of scan rows.

    Data go to ``<path>.partial``; each chunk's completion flag is written after its data, so a
    killed job reopened with the same shape resumes (``todo_rows``), and ``finish`` renames the
    complete store to ``path``. The final path never holds a partial scan.
    """

    def __init__(self, path: str | Path, scan_shape: tuple[int, int], pattern_shape: tuple[int, int], *,
                 reciprocal_px_invA: float | None = None, voltage_kV: float | None = None,
                 scan_step_nm: float | None = None, attrs: dict | None = None, rows_per_chunk: int | None = None,
                 dtype: str | np.dtype = "float32", overwrite: bool = False) -> None:
        self.path = Path(path)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        if self.path.suffix.lower() != ".zarr":
            raise DataError(f"ScanWriter writes .zarr stores, got '{self.path}'; name the output '<name>.zarr'")
        if self.path.exists() and not overwrite:
            raise DataError(f"scan '{self.path}' already exists; remove it or pass overwrite=True")
        self.shape = (*map(int, scan_shape), *map(int, pattern_shape))
        self.dtype = np.dtype(dtype)
        _check_shape(self.shape, self.dtype, f"ScanWriter for '{self.path}'")
        calibration = _checked_calibration(reciprocal_px_invA, voltage_kV, scan_step_nm)
        if self.partial_path.exists():
            self._group = _open_partial(self.partial_path, self.shape, self.dtype, rows_per_chunk, calibration)
        else:
            rows = int(rows_per_chunk or _default_rows(self.shape, self.dtype))
            tmp = _temp_beside(self.partial_path)
            try:
                _create_store(tmp, self.shape, self.dtype, rows, calibration, dict(attrs or {}))
                os.replace(tmp, self.partial_path)
            finally:
                _remove(tmp)
            self._group: zarr.Group | None = zarr.open_group(str(self.partial_path), mode="r+")
        self.rows_per_chunk = int(self._group["data"].chunks[0])

    def write_rows(self, y0: int, block: np.ndarray) -> None:
        """Write scan rows ``y0 ≤ y < y0 + len(block)``; the block must cover whole chunks (``y0`` a
        multiple of ``rows_per_chunk``, ending on a chunk boundary or the last row) and be finite."""
        block = np.asarray(block)
        ny, rows = self.shape[0], self.rows_per_chunk
        y1 = y0 + (len(block) if block.ndim else 0)
        where = f"rows {y0}-{y1 - 1} for '{self.partial_path}'"
        if block.shape[1:] != self.shape[1:] or y1 <= y0:
            raise DataError(f"{where}: block of shape {block.shape} does not hold rows of shape {self.shape[1:]}")
        if y0 < 0 or y0 % rows or y1 > ny or (y1 % rows and y1 != ny):
            raise DataError(f"{where}: blocks must cover whole chunks of {rows} rows within 0:{ny}")
        check_finite_block(block, where, first_row=y0)
        _write_block(self._open_group(), y0, block)

    def done_rows(self) -> list[tuple[int, int]]:
        """Completed chunks as (y0, y1) scan-row ranges, in order."""
        return self._chunk_ranges(done=True)

    def todo_rows(self) -> list[tuple[int, int]]:
        """Chunks still to write as (y0, y1) scan-row ranges, in order."""
        return self._chunk_ranges(done=False)

    def finish(self) -> Path:
        """Rename the complete store to its final path (atomic); ``DataError`` if rows are missing."""
        todo = self.todo_rows()
        if todo:
            listed = ", ".join(f"{a}-{b - 1}" for a, b in todo[:5]) + (" ..." if len(todo) > 5 else "")
            raise DataError(f"scan '{self.partial_path}' is incomplete: rows {listed} not written; write them first")
        _replace_dir(self.partial_path, self.path)
        self._group = None
        return self.path

    def _open_group(self) -> zarr.Group:
        if self._group is None:
            raise DataError(f"scan '{self.path}' is finished; read it with open_scan")
        return self._group

    def _chunk_ranges(self, done: bool) -> list[tuple[int, int]]:
        flags = self._open_group()["rows_done"][:].astype(bool)
        ranges = _row_ranges(self.shape[0], self.rows_per_chunk)
        return [r for r, flag in zip(ranges, flags) if flag == done]


# ---------------------------------------------------------------- validation and calibration


def _as_scan_array(raw: Any, where: str, scan_shape: tuple[int, int] | None = None) -> da.Array:
    """Any array-like → validated dask (ny, nx, H, W); a stack (n, H, W) → 1 row or ``scan_shape``."""
    dtype, shape = np.dtype(raw.dtype), tuple(raw.shape)
    if len(shape) not in (3, 4):
        raise DataError(f"{where}: expected a scan (ny, nx, H, W) or a stack (n, H, W), got shape {shape}")
    data = raw if isinstance(raw, da.Array) else da.from_array(raw, chunks=(_default_rows(shape, dtype), *shape[1:]))
    if scan_shape is not None:
        ny, nx = map(int, scan_shape)
        if ny * nx != math.prod(shape[:-2]):
            raise DataError(f"{where}: scan_shape {ny}x{nx} does not hold its {math.prod(shape[:-2])} patterns")
        data = data.reshape(ny, nx, *shape[-2:])
    elif len(shape) == 3:
        data = data[None]
    _check_shape(data.shape, dtype, where)
    return data


def _check_shape(shape: tuple[int, ...], dtype: np.dtype, where: str) -> None:
    """``DataError`` unless (ny, nx, H, W) is non-empty with square patterns ≥ 16 px of numbers."""
    if dtype.kind not in "uif":
        raise DataError(f"{where}: pixels must be integers or floats, got dtype {dtype}")
    if len(shape) != 4 or min(shape[:2]) < 1:
        raise DataError(f"{where}: expected a non-empty scan (ny, nx, H, W), got shape {tuple(shape)}")
    height, width = shape[2:]
    if height != width:
        raise DataError(f"{where}: patterns of {height}x{width} px are not square; crop them to a square first")
    if height < MIN_PATTERN_PX:
        raise DataError(f"{where}: patterns of {height}x{width} px are smaller than {MIN_PATTERN_PX} px")


def _checked_calibration(reciprocal_px_invA: float | None, voltage_kV: float | None,
                         scan_step_nm: float | None) -> dict[str, float | None]:
    """The three calibration values as floats, each positive and finite or ``None``."""
    values = dict(zip(CALIBRATION_KEYS, (reciprocal_px_invA, voltage_kV, scan_step_nm)))
    for key, value in values.items():
        if value is not None and _positive_or_none(value) is None:
            raise DataError(f"calibration {key}={value!r} must be a positive number (or None when unknown)")
    return {key: None if value is None else float(value) for key, value in values.items()}


def _resolve_calibration(key: str, given: float | None, from_file: float | None, path: Path) -> float | None:
    """The argument if given (checked against the file's value within 1 %), else the file's value."""
    if given is None:
        return from_file
    value = _checked_calibration(**{k: given if k == key else None for k in CALIBRATION_KEYS})[key]
    if from_file is not None and abs(value - from_file) > CALIBRATION_RTOL * from_file:
        raise DataError(f"scan file '{path}': {key}={value:g} disagrees with the file's {from_file:g} by "
                        f"{abs(value / from_file - 1):.1%}; drop the argument to use the file's value, or fix the file")
    return value


def _positive_or_none(value: Any) -> float | None:
    """``value`` as a float if it is a positive finite number, else ``None`` (files write 0 for unknown)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _unit_key(units: Any) -> str:
    """Normalise a unit string: '$\\AA^{-1}$' → 'aa^-1', '1 / nm' → '1/nm', 'k_nm^-1' → 'nm^-1'."""
    text = str(units or "").lower()
    for junk in ("$", "\\", "{", "}", " "):
        text = text.replace(junk, "")
    return text.removeprefix("k_")


def _detector_px(scale: Any, units: Any) -> tuple[float | None, float | None]:
    """A detector axis's pixel size as (Å⁻¹, mrad); at most one is known, both ``None`` if neither."""
    value, key = _positive_or_none(abs(float(scale or 0))), _unit_key(units)
    if value is None:
        return None, None
    if key in _RECIPROCAL_UNITS:
        return value * _RECIPROCAL_UNITS[key], None
    if key in _ANGLE_UNITS:
        return None, value * _ANGLE_UNITS[key] * 1e3
    return None, None


# ---------------------------------------------------------------- readers


def _read_npy(path: Path) -> tuple[Any, dict, dict]:
    """Memory-mapped .npy plus the calibration of its ``<stem>.json`` sidecar, if there is one."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise DataError(f"scan file '{path}' is not a readable .npy array ({_first_line(exc)}); it may be "
                        "truncated: rewrite it") from None
    metadata: dict[str, Any] = {"format": "npy"}
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return array, {}, metadata
    try:
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"sidecar '{sidecar}' of scan '{path}' is not valid JSON ({_first_line(exc)}); "
                        "fix or delete it") from None
    if not isinstance(info, dict) or info.get("format") != SIDECAR_FORMAT:
        return array, {}, metadata
    if list(info.get("shape", array.shape)) != list(array.shape):
        raise DataError(f"sidecar '{sidecar}' describes shape {tuple(info['shape'])} but '{path}' holds "
                        f"{array.shape}; the pair is out of sync: rewrite it with write_scan")
    metadata["attrs"] = info.get("attrs", {})
    return array, {key: _positive_or_none(info.get(key)) for key in CALIBRATION_KEYS}, metadata


def _read_zarr(path: Path) -> tuple[Any, dict, dict]:
    """This module's zarr layout (group with 'data', 'rows_done', calibration attrs) or a bare array."""
    try:
        node = zarr.open(str(path), mode="r")
        array = node if isinstance(node, zarr.Array) else node["data"]
        attrs = dict(node.attrs)
        complete = not isinstance(node, zarr.Group) or "rows_done" not in node or bool(np.all(node["rows_done"][:]))
    except Exception as exc:
        raise DataError(f"scan store '{path}' is not a readable zarr scan ({_first_line(exc)}); it may be "
                        "corrupt or incomplete: rewrite it") from None
    if not complete:
        raise DataError(f"scan store '{path}' is incomplete (some chunks were never written); rewrite it")
    metadata = {"format": "zarr", "attrs": attrs.get("attrs", {})}
    calibration = {key: _positive_or_none(attrs.get(key)) for key in CALIBRATION_KEYS}
    return da.from_zarr(array), calibration, metadata


def _read_hyperspy(path: Path) -> tuple[Any, dict, dict]:
    """Any RosettaSciIO format through ``hyperspy.api.load(lazy=True)``; calibration from its axes."""
    suffix = path.suffix.lower()
    kwargs: dict[str, Any] = {"lazy": True}
    if suffix in (".h5", ".hdf5"):
        if not _is_hyperspy_h5(path):
            return _read_plain_h5(path)
        kwargs["reader"] = "HSPY"
    import hyperspy.api as hs

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = hs.load(str(path), **kwargs)
    except Exception as exc:
        raise DataError(f"scan file '{path}' could not be read as {suffix} ({_first_line(exc)}); it may be "
                        "truncated or corrupt: re-export it") from None
    signal = _pick_signal(loaded, path)
    metadata = {"format": suffix.lstrip("."), "title": str(signal.metadata.get_item("General.title", "")),
                "attrs": signal.original_metadata.as_dictionary().get("diffractnet", {})}
    return signal.data, _hyperspy_calibration(signal, path, metadata), metadata


def _pick_signal(loaded: Any, path: Path) -> Any:
    """The largest 3-/4-D signal of what ``hs.load`` returned (a file may hold several)."""
    signals = [s for s in (loaded if isinstance(loaded, list) else [loaded]) if s.data.ndim in (3, 4)]
    if not signals:
        shapes = [tuple(s.data.shape) for s in (loaded if isinstance(loaded, list) else [loaded])]
        raise DataError(f"scan file '{path}' holds no scan (ny, nx, H, W) or stack (n, H, W): shapes {shapes}")
    return max(signals, key=lambda s: math.prod(s.data.shape))


def _hyperspy_calibration(signal: Any, path: Path, metadata: dict) -> dict[str, float | None]:
    """Calibration from a HyperSpy signal's axes (numpy order) and beam energy [keV]."""
    manager = signal.axes_manager
    axes = sorted([*manager.navigation_axes, *manager.signal_axes], key=lambda ax: ax.index_in_array)
    voltage = _positive_or_none(signal.metadata.get_item("Acquisition_instrument.TEM.beam_energy")
                                or signal.metadata.get_item("Acquisition_instrument.SEM.beam_energy"))
    metadata["axes_units"] = [str(ax.units) for ax in axes]
    pixels = [_detector_px(getattr(ax, "scale", None), ax.units) for ax in axes[-2:]]
    found = {}
    for kind, label in ((0, "Å⁻¹"), (1, "mrad")):
        known = [px[kind] for px in pixels if px[kind] is not None]
        if len(known) == 2 and abs(known[0] - known[1]) > CALIBRATION_RTOL * known[1]:
            raise DataError(f"scan file '{path}': detector pixels are {known[0]:g} x {known[1]:g} {label} (rows x "
                            "columns), not square; correct the distortion first")
        found[kind] = known[-1] if known else None
    steps = [_scan_step_nm(ax) for ax in axes[:-2]]
    if len(steps) == 2 and None not in steps and abs(steps[0] - steps[1]) > CALIBRATION_RTOL * steps[1]:
        metadata["scan_step_rows_nm"] = steps[0]
    return {"reciprocal_px_invA": found[0], "detector_px_mrad": found[1], "voltage_kV": voltage,
            "scan_step_nm": steps[-1] if steps else None}


def _scan_step_nm(axis: Any) -> float | None:
    """A navigation axis's step in nm, or ``None`` if its units are not a length."""
    factor = _LENGTH_UNITS_NM.get(_unit_key(axis.units))
    step = _positive_or_none(abs(float(getattr(axis, "scale", 0) or 0)))
    return None if factor is None or step is None else step * factor


def _is_hyperspy_h5(path: Path) -> bool:
    """Whether an HDF5 file was written by HyperSpy (root attribute file_format = 'HyperSpy')."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs.get("file_format", "")) == "HyperSpy"
    except Exception as exc:
        raise DataError(f"scan file '{path}' is not a readable HDF5 file ({_first_line(exc)}); re-export it") from None


def _read_plain_h5(path: Path) -> tuple[Any, dict, dict]:
    """A non-HyperSpy HDF5 file holding exactly one numeric 3-/4-D dataset (no calibration)."""
    import h5py

    handle = h5py.File(path, "r")
    found: list[str] = []
    handle.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset)
                      and obj.ndim in (3, 4) and obj.dtype.kind in "uif" else None)
    if len(found) != 1:
        handle.close()
        raise DataError(f"scan file '{path}' holds {len(found)} 3-/4-D datasets {found[:5]}, not one; "
                        "read the one you want with h5py and save it with write_scan")
    return handle[found[0]], {}, {"format": "h5", "dataset": found[0]}


# ---------------------------------------------------------------- writers


def _write_zarr(path: Path, array: da.Array, calibration: dict, attrs: dict, rows: int) -> None:
    """Stream ``array`` into a fresh store beside ``path``, then move it into place."""
    tmp = _temp_beside(path)
    try:
        group = _create_store(tmp, array.shape, array.dtype, rows, calibration, attrs)
        for y0, y1 in _row_ranges(array.shape[0], rows):
            block = np.asarray(array[y0:y1].compute())
            check_finite_block(block, f"rows {y0}-{y1 - 1} for '{path}'", first_row=y0)
            _write_block(group, y0, block)
        _replace_dir(tmp, path)
    finally:
        _remove(tmp)


def _write_npy(path: Path, array: da.Array, calibration: dict, attrs: dict, rows: int) -> None:
    """Stream ``array`` into a temporary .npy (memory-mapped), write the sidecar, rename both."""
    tmp, sidecar_tmp = _temp_beside(path), _temp_beside(path.with_suffix(".json"))
    try:
        target = np.lib.format.open_memmap(tmp, mode="w+", dtype=array.dtype, shape=array.shape)
        for y0, y1 in _row_ranges(array.shape[0], rows):
            target[y0:y1] = np.asarray(array[y0:y1].compute())
            check_finite_block(target[y0:y1], f"rows {y0}-{y1 - 1} for '{path}'", first_row=y0)
        target.flush()
        del target
        info = {"format": SIDECAR_FORMAT, **calibration, "shape": list(array.shape), "dtype": str(array.dtype),
                "attrs": attrs}
        sidecar_tmp.write_text(json.dumps(info, indent=1), encoding="utf-8")
        os.replace(sidecar_tmp, path.with_suffix(".json"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        sidecar_tmp.unlink(missing_ok=True)


def _write_hyperspy(path: Path, array: da.Array, calibration: dict, attrs: dict, rows: int) -> None:
    """Save as a lazy HyperSpy ``Signal2D`` (signal type electron_diffraction) with calibrated axes."""
    import hyperspy.api as hs

    tmp = _temp_beside(path).with_suffix(path.suffix.lower())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            signal = hs.signals.Signal2D(array).as_lazy()
            signal.set_signal_type("electron_diffraction")
            _calibrate_hyperspy_axes(signal, calibration)
            if calibration["voltage_kV"] is not None:
                signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", calibration["voltage_kV"])
            signal.original_metadata.add_dictionary({"diffractnet": attrs})
            signal.save(str(tmp), overwrite=True, show_progressbar=False, chunks=(rows, *array.shape[1:]))
        _replace_dir(tmp, path)
    finally:
        _remove(tmp)


def _calibrate_hyperspy_axes(signal: Any, calibration: dict) -> None:
    """Navigation axes x, y in nm; signal axes kx, ky in nm⁻¹ with the pattern centre at 0."""
    step, pixel = calibration["scan_step_nm"], calibration["reciprocal_px_invA"]
    for axis, name in zip(signal.axes_manager.navigation_axes, ("x", "y")):
        axis.name = name
        if step is not None:
            axis.scale, axis.units = step, "nm"
    for axis, name in zip(signal.axes_manager.signal_axes, ("kx", "ky")):
        axis.name = name
        if pixel is not None:
            scale = pixel * 10.0  # Å⁻¹ → nm⁻¹
            axis.scale, axis.units, axis.offset = scale, HSPY_SIGNAL_UNITS, -scale * (axis.size / 2)


# ---------------------------------------------------------------- zarr store and files


def _create_store(where: Path, shape: tuple[int, ...], dtype: np.dtype, rows: int, calibration: dict,
                  attrs: dict) -> zarr.Group:
    """A new zarr v2 group: 'data' chunked (rows, nx, H, W), 'rows_done' one flag per chunk, attrs."""
    group = zarr.open_group(str(where), mode="w")
    fill = np.nan if np.dtype(dtype).kind == "f" else 0  # an unwritten float chunk reads as NaN, caught
    group.create_dataset("data", shape=shape, chunks=(rows, *shape[1:]), dtype=dtype, fill_value=fill)
    group.create_dataset("rows_done", shape=(math.ceil(shape[0] / rows),), chunks=(1,), dtype="u1", fill_value=0)
    group.attrs.update({"format": ZARR_FORMAT, **calibration, "attrs": attrs,
                        "axes": ["scan_row", "scan_col", "detector_row", "detector_col"],
                        "units": {"reciprocal_px_invA": "1/angstrom per px", "voltage_kV": "kV", "scan_step_nm": "nm"}})
    return group


def _open_partial(path: Path, shape: tuple[int, ...], dtype: np.dtype, rows: int | None,
                  calibration: dict) -> zarr.Group:
    """Reopen a ``.partial`` store to resume; ``DataError`` if it was started differently."""
    try:
        group = zarr.open_group(str(path), mode="r+")
        data, stored, _ = group["data"], dict(group.attrs), group["rows_done"]
    except Exception as exc:
        raise DataError(f"partial scan '{path}' cannot be resumed ({_first_line(exc)}); "
                        "delete it and start again") from None
    started = {"shape": tuple(data.shape), "dtype": str(data.dtype), **{k: stored.get(k) for k in CALIBRATION_KEYS}}
    wanted = {"shape": tuple(shape), "dtype": str(dtype), **calibration}
    if rows is not None and int(rows) != data.chunks[0]:
        started["rows_per_chunk"], wanted["rows_per_chunk"] = data.chunks[0], int(rows)
    differ = {k: (started[k], wanted[k]) for k in wanted if started[k] != wanted[k]}
    if differ:
        raise DataError(f"partial scan '{path}' was started with other settings (started, now): {differ}; "
                        "resume with the same ones or delete it")
    return group


def _write_block(group: zarr.Group, y0: int, block: np.ndarray) -> None:
    """Write rows then mark their chunks done (flags after data: a kill in between redoes the chunk)."""
    data = group["data"]
    rows = data.chunks[0]
    data[y0:y0 + len(block)] = block
    group["rows_done"][y0 // rows:math.ceil((y0 + len(block)) / rows)] = 1


def _replace_dir(source: Path, target: Path) -> None:
    """Move ``source`` (file or directory) to ``target``; an old ``target`` is first renamed aside."""
    aside = None
    if target.exists() or target.is_symlink():
        aside = _temp_beside(target)
        os.replace(target, aside)
    os.replace(source, target)
    if aside is not None:
        _remove(aside)


def _remove(path: Path) -> None:
    """Delete a file or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _temp_beside(path: Path) -> Path:
    """A fresh hidden name in ``path``'s folder (same filesystem, so renames are atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _row_ranges(n_rows: int, step: int) -> list[tuple[int, int]]:
    """[(0, step), (step, 2 step), ..., (.., n_rows)]."""
    return [(y0, min(y0 + step, n_rows)) for y0 in range(0, n_rows, step)]


def _default_rows(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Leading-axis chunk length giving chunks of about ``CHUNK_TARGET_BYTES``."""
    per_row = math.prod(shape[1:]) * np.dtype(dtype).itemsize
    return max(1, min(int(shape[0]) or 1, CHUNK_TARGET_BYTES // max(per_row, 1)))


def _first_line(exc: BaseException) -> str:
    """An exception's first message line, short enough for a one-line error."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]
