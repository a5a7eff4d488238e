"""Readers and writers of the scan file formats behind ``io.scans.open_scan`` / ``write_scan``.

Our own ``.zarr`` layout and ``.npy`` (+ ``.json`` sidecar); HyperSpy/RosettaSciIO files (``.hspy``,
``.zspy``, ``.mib``, ``.blo``, ``.dm3``/``.dm4``, ``.emd``, ``.h5``) with their axis calibrations in
Å⁻¹, nm⁻¹ or mrad; a plain HDF5 file holding one 3-/4-D dataset. Each reader returns (raw array,
calibration from the file, metadata); each writer is atomic (temp + rename).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from diffractnet.errors import DataError
from diffractnet.io.scans import (
    CALIBRATION_KEYS,
    check_finite_block,
    CALIBRATION_RTOL,
    HSPY_SIGNAL_UNITS,
    SIDECAR_FORMAT,
    _create_store,
    _first_line,
    _positive_or_none,
    _remove,
    _replace_dir,
    _row_ranges,
    _temp_beside,
    _write_block,
)

# unit string (lower case, without '$', '\', braces, blanks, leading 'k_') → factor to Å⁻¹
_RECIPROCAL_UNITS = {**dict.fromkeys(("1/nm", "nm^-1", "nm-1", "nm**-1", "nm⁻¹"), 0.1),
                     **dict.fromkeys(("1/a", "a^-1", "a-1", "a**-1", "a⁻¹", "aa^-1", "1/angstrom",
                                      "angstrom^-1", "å^-1", "1/å", "å⁻¹"), 1.0)}
_ANGLE_UNITS = {"mrad": 1e-3, "rad": 1.0}
_LENGTH_UNITS_NM = {"nm": 1.0, "µm": 1e3, "μm": 1e3, "um": 1e3, "a": 0.1, "å": 0.1, "angstrom": 0.1,
                    "pm": 1e-3}


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
