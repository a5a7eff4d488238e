"""4D-STEM scans: lazy, chunked reading of the community's formats; atomic writing (resumable writing: ``io.scan_writer``).

A scan is one diffraction pattern per probe position: a dask array (ny, nx, H, W) = (scan rows, scan
columns, detector rows, detector columns) plus calibration: reciprocal pixel size [Å⁻¹/px], beam
voltage [kV], scan step [nm].

Read: ``.npy`` (+ ``<stem>.json`` sidecar), ``.zarr`` (this module's layout, or a bare 3-/4-D zarr
array), and through HyperSpy/RosettaSciIO ``.hspy .zspy .mib .blo .dm3 .dm4 .emd .h5 .hdf5`` (an
``.h5`` that is not a HyperSpy file is read as its one 3-/4-D dataset). Write: ``.zarr``, ``.npy`` (+
sidecar), ``.hspy``/``.zspy`` (signal axes in nm⁻¹ = 10 × Å⁻¹, offsets centred, as pyxem expects).
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
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

    @property
    def precession_deg(self) -> float | None:
        """The precession angle [deg] the file records (synthetic scans: their physics), None if unknown."""
        try:
            value = self.metadata["attrs"]["diffractnet_polycrystal"]["physics"]["precession_deg"]
        except (KeyError, TypeError):
            return None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

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
    from diffractnet.io import scan_formats as formats

    reader = {".npy": formats._read_npy, ".zarr": formats._read_zarr}.get(suffix, formats._read_hyperspy)
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
    from diffractnet.io import scan_formats as formats

    writer = {".zarr": formats._write_zarr, ".npy": formats._write_npy}.get(suffix, formats._write_hyperspy)
    writer(path, array, calibration, dict(attrs or {}), rows)
    return path


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
