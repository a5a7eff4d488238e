"""Resumable writing of a scan to ``.zarr`` by whole chunks of scan rows (``ScanWriter``): what a long
simulation or conversion job writes, so that a killed job loses no finished chunk."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import zarr

from diffractnet.errors import DataError
from diffractnet.io.scans import (
    _check_shape,
    _checked_calibration,
    _default_rows,
    _temp_beside,
    _remove,
    _replace_dir,
    _row_ranges,
    _create_store,
    _open_partial,
    _write_block,
    check_finite_block,
)


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
