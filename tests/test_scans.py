"""4D-STEM scan I/O: round trips, community formats, calibration, bad inputs, resumable writing."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from diffractnet.errors import DataError
from diffractnet.io.scan_writer import ScanWriter
from diffractnet.io.scans import check_finite_block, open_scan, write_scan

CAL = {"reciprocal_px_invA": 0.02, "voltage_kV": 200.0, "scan_step_nm": 3.0}


def _scan(ny: int = 5, nx: int = 3, side: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((ny, nx, side, side), dtype=np.float32)


def _hyperspy_file(path: Path, data: np.ndarray, signal_scale: float, signal_units: str,
                   nav_scale: float = 2.0, beam_energy_keV: float | None = 300.0) -> Path:
    import hyperspy.api as hs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signal = hs.signals.Signal2D(data)
        for axis in signal.axes_manager.signal_axes:
            axis.scale, axis.units = signal_scale, signal_units
        for axis in signal.axes_manager.navigation_axes:
            axis.scale, axis.units = nav_scale, "nm"
        if beam_energy_keV is not None:
            signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", beam_energy_keV)
        signal.save(str(path), overwrite=True, show_progressbar=False)
    return path


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".zarr", ".npy", ".hspy", ".zspy"])
def test_round_trip_keeps_data_calibration_and_is_lazy(tmp_path, suffix):
    data = _scan()
    path = write_scan(tmp_path / f"scan{suffix}", da.from_array(data, chunks=(2, 3, 16, 16)), **CAL,
                      attrs={"sample": "Al"}, chunk_rows=2)
    scan = open_scan(path)
    assert isinstance(scan.data, da.Array)
    assert scan.scan_shape == (5, 3) and scan.pattern_shape == (16, 16)
    np.testing.assert_array_equal(scan.rows(0, 5), data)
    assert [(y0, y1) for y0, y1, _ in scan.iter_row_blocks(2)] == [(0, 2), (2, 4), (4, 5)]
    for key, value in CAL.items():
        assert getattr(scan, key) == pytest.approx(value, rel=1e-9)
    assert scan.metadata["attrs"]["sample"] == "Al"
    assert scan.metadata["calibration_source"]["reciprocal_px_invA"] == "file"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left
    if suffix == ".npy":
        assert (tmp_path / "scan.json").is_file()
    if suffix != ".npy":
        assert scan.data.chunks[0] == (2, 2, 1)  # chunk_rows is the stored chunk height


def test_hspy_is_written_in_inverse_nm_with_centred_offsets(tmp_path):
    import hyperspy.api as hs

    path = write_scan(tmp_path / "scan.hspy", _scan(), **CAL)
    signal = hs.load(str(path), lazy=True)
    kx = signal.axes_manager.signal_axes[0]
    assert (kx.units, kx.scale, kx.offset) == ("nm^-1", pytest.approx(0.2), pytest.approx(-1.6))
    assert signal.axes_manager.navigation_axes[0].units == "nm"
    assert signal.metadata.Acquisition_instrument.TEM.beam_energy == 200.0


def test_rewrite_replaces_the_old_scan(tmp_path):
    path = tmp_path / "scan.zarr"
    write_scan(path, _scan(seed=1), **CAL)
    write_scan(path, _scan(ny=2, seed=2), **CAL)
    np.testing.assert_array_equal(open_scan(path).rows(0, 2), _scan(ny=2, seed=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.zarr"]


def test_stack_is_one_row_or_reshaped(tmp_path):
    stack = _scan(ny=1, nx=6)[0]
    np.save(tmp_path / "stack.npy", stack)
    assert open_scan(tmp_path / "stack.npy").scan_shape == (1, 6)
    scan = open_scan(tmp_path / "stack.npy", scan_shape=(2, 3), chunk_rows=1)
    np.testing.assert_array_equal(scan.rows(1, 2)[0], stack[3:])
    with pytest.raises(DataError, match="scan_shape 4x4"):
        open_scan(tmp_path / "stack.npy", scan_shape=(4, 4))


# ---------------------------------------------------------------- community formats and calibration


@pytest.mark.parametrize("scale, units, expected_invA", [
    (0.25, "1/nm", 0.025), (0.25, "nm^-1", 0.025), (0.03, r"$\AA^{-1}$", 0.03), (0.03, "$A^{-1}$", 0.03),
    (0.5, "mrad", 0.5e-3 / 0.019687), (1.0, "px", None)])
def test_hyperspy_signal_calibration_becomes_inverse_angstrom(tmp_path, scale, units, expected_invA):
    path = _hyperspy_file(tmp_path / "scan.hspy", _scan(ny=2, nx=2), scale, units)
    scan = open_scan(path)
    assert scan.voltage_kV == 300.0 and scan.scan_step_nm == 2.0
    if expected_invA is None:
        assert scan.reciprocal_px_invA is None
    else:
        assert scan.reciprocal_px_invA == pytest.approx(expected_invA, rel=1e-4)


def test_blockfile_round_trip(tmp_path):
    data = (_scan(ny=3, nx=4) * 255).astype(np.uint8)
    path = _hyperspy_file(tmp_path / "scan.blo", data, 1.0, "", nav_scale=2.0)
    scan = open_scan(path, reciprocal_px_invA=0.02)  # .blo keeps no reciprocal calibration
    np.testing.assert_array_equal(scan.rows(0, 3), data)
    assert scan.scan_step_nm == 2.0 and scan.reciprocal_px_invA == 0.02
    assert scan.voltage_kV is None  # rsciio writes beam energy 0 into .blo: read as unknown


def _write_mib(path: Path, frames: np.ndarray, frames_per_line: int) -> None:
    """A Merlin .mib (single chip, U16, 384-byte headers) and its .hdr, as the detector writes them."""
    height, width = frames.shape[1:]
    with open(path, "wb") as f:
        for i, frame in enumerate(frames, start=1):
            fields = ["MQ1", f"{i:06d}", "00384", "01", f"{width:04d}", f"{height:04d}", "U16", "   1x1", "01",
                      "2024-01-01 00:00:00.000000", "0.001000", *["0"] * 30,
                      "2024-01-01T00:00:00.000000000Z", "1000000ns", "12", ""]
            f.write(",".join(fields).ljust(384).encode())
            f.write(frame.astype(">u2").tobytes())
    path.with_suffix(".hdr").write_text(
        f"HDR,\t\nFrames in Acquisition (Number):\t{len(frames)}\n"
        f"Frames per Trigger (Number):\t{frames_per_line}\nEnd\t\n")


def test_merlin_mib_reads_as_scan(tmp_path):
    data = (_scan(ny=3, nx=4) * 1000).astype(np.uint16)
    # rsciio flips detector rows on reading (Merlin stores them bottom-up): write them flipped
    _write_mib(tmp_path / "scan.mib", np.flip(data, axis=2).reshape(12, 16, 16), frames_per_line=4)
    scan = open_scan(tmp_path / "scan.mib", reciprocal_px_invA=0.02, voltage_kV=200)
    assert isinstance(scan.data, da.Array) and scan.scan_shape == (3, 4)
    np.testing.assert_array_equal(scan.rows(0, 3), data)


# ---------------------------------------------------------------- bad input


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_scan(tmp_path / "nope.zarr")
    (tmp_path / "scan.xyz").write_bytes(b"0")
    with pytest.raises(DataError, match="unknown format '.xyz'"):
        open_scan(tmp_path / "scan.xyz")
    with pytest.raises(DataError, match="unknown format"):
        write_scan(tmp_path / "scan.tif", _scan(), **CAL)


def test_truncated_npy(tmp_path):
    path = tmp_path / "scan.npy"
    np.save(path, _scan())
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DataError, match=r"scan\.npy.*truncated"):
        open_scan(path)


def test_corrupt_zarr_metadata_and_chunk(tmp_path):
    path = write_scan(tmp_path / "scan.zarr", _scan(), **CAL, chunk_rows=2)
    (path / "data" / "1.0.0.0").write_bytes(b"not blosc")
    scan = open_scan(path)
    scan.rows(0, 2)
    with pytest.raises(DataError, match=r"scan\.zarr' rows 2-3 could not be read"):
        scan.rows(2, 4)
    (path / "data" / ".zarray").write_text("{garbage")
    with pytest.raises(DataError, match="not a readable zarr scan"):
        open_scan(path)


def test_unreadable_hspy(tmp_path):
    (tmp_path / "scan.hspy").write_bytes(b"\x89HDF\r\n" + b"\0" * 100)
    with pytest.raises(DataError, match=r"scan\.hspy' could not be read"):
        open_scan(tmp_path / "scan.hspy")


@pytest.mark.parametrize("array, message", [
    (np.zeros((16, 16), np.float32), "expected a scan"),
    (np.zeros((1, 2, 3, 16, 16), np.float32), "expected a scan"),
    (np.zeros((2, 2, 16, 20), np.float32), "not square"),
    (np.zeros((2, 2, 8, 8), np.float32), "smaller than 16 px"),
    (np.zeros((2, 2, 16, 16), np.complex64), "integers or floats"),
])
def test_ill_shaped_scans(tmp_path, array, message):
    np.save(tmp_path / "scan.npy", array)
    with pytest.raises(DataError, match=message):
        open_scan(tmp_path / "scan.npy")
    with pytest.raises(DataError, match=message):
        write_scan(tmp_path / "out.zarr", array, reciprocal_px_invA=0.02)


def test_nan_is_reported_when_its_block_is_read(tmp_path):
    data = _scan(ny=6)
    data[3, 1, 5, 5] = np.nan
    np.save(tmp_path / "scan.npy", data)
    scan = open_scan(tmp_path / "scan.npy", chunk_rows=2)  # opening reads nothing
    blocks = scan.iter_row_blocks()
    assert next(blocks)[:2] == (0, 2)
    with pytest.raises(DataError, match=r"rows 2-3: 1 pixels are NaN.*scan row 3, column 1"):
        next(blocks)
    with pytest.raises(DataError, match="NaN"):
        write_scan(tmp_path / "out.zarr", data, reciprocal_px_invA=0.02)
    with pytest.raises(DataError, match="my block"):
        check_finite_block(np.array([np.inf]), "my block")


def test_mismatched_calibration(tmp_path):
    path = write_scan(tmp_path / "scan.zarr", _scan(), **CAL)
    assert open_scan(path, reciprocal_px_invA=0.0201).reciprocal_px_invA == 0.0201  # within 1 %
    with pytest.raises(DataError, match=r"reciprocal_px_invA=0.03 disagrees with the file's 0.02 by 50\.0%"):
        open_scan(path, reciprocal_px_invA=0.03)
    with pytest.raises(DataError, match="voltage_kV=300 disagrees"):
        open_scan(path, voltage_kV=300)
    with pytest.raises(DataError, match="must be a positive number"):
        open_scan(path, scan_step_nm=-1.0)
    with pytest.raises(DataError, match="must be a positive number"):
        write_scan(tmp_path / "b.npy", _scan(), reciprocal_px_invA=0.0)


def test_npy_sidecar_out_of_sync(tmp_path):
    path = write_scan(tmp_path / "scan.npy", _scan(), **CAL)
    np.save(path, _scan(ny=2))
    with pytest.raises(DataError, match="out of sync"):
        open_scan(path)


# ---------------------------------------------------------------- resumable writing

_KILLED_WRITER = """
import os, signal, sys
import numpy as np
from diffractnet.io.scan_writer import ScanWriter
data = np.load(sys.argv[2])
writer = ScanWriter(sys.argv[1], (7, 3), (16, 16), reciprocal_px_invA=0.02, scan_step_nm=3.0, rows_per_chunk=2)
writer.write_rows(0, data[0:2])
writer.write_rows(4, data[4:6])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_scan_writer_resumes_after_kill(tmp_path):
    data = _scan(ny=7)
    np.save(tmp_path / "full.npy", data)
    final = tmp_path / "out.zarr"
    run = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(final), str(tmp_path / "full.npy")],
                         capture_output=True, timeout=120)
    assert run.returncode == -9, run.stderr.decode()[-2000:]
    assert not final.exists() and (tmp_path / "out.zarr.partial").is_dir()

    with pytest.raises(DataError, match="other settings"):
        ScanWriter(final, (8, 3), (16, 16), reciprocal_px_invA=0.02, scan_step_nm=3.0)
    writer = ScanWriter(final, (7, 3), (16, 16), reciprocal_px_invA=0.02, scan_step_nm=3.0)
    assert writer.rows_per_chunk == 2
    assert writer.done_rows() == [(0, 2), (4, 6)] and writer.todo_rows() == [(2, 4), (6, 7)]
    with pytest.raises(DataError, match="incomplete: rows 2-3, 6-6"):
        writer.finish()
    with pytest.raises(DataError, match="whole chunks"):
        writer.write_rows(3, data[3:5])
    for y0, y1 in writer.todo_rows():
        writer.write_rows(y0, data[y0:y1])
    assert not final.exists()
    assert writer.finish() == final
    assert not (tmp_path / "out.zarr.partial").exists()
    with pytest.raises(DataError, match="finished"):
        writer.write_rows(0, data[0:2])
    scan = open_scan(final)
    np.testing.assert_array_equal(scan.rows(0, 7), data)
    assert (scan.reciprocal_px_invA, scan.scan_step_nm, scan.voltage_kV) == (0.02, 3.0, None)
    with pytest.raises(DataError, match="already exists"):
        ScanWriter(final, (7, 3), (16, 16))


def test_chunk_written_but_not_flagged_is_redone(tmp_path):
    import zarr

    writer = ScanWriter(tmp_path / "out.zarr", (4, 2), (16, 16), rows_per_chunk=2, dtype="uint16")
    zarr.open_group(str(writer.partial_path), mode="r+")["data"][0:2] = 7  # killed before the flag
    assert ScanWriter(tmp_path / "out.zarr", (4, 2), (16, 16), dtype="uint16").done_rows() == []
    assert os.path.isdir(writer.partial_path)


def test_emd_and_h5_files(tmp_path):
    import h5py
    import hyperspy.api as hs

    data = _scan(ny=2, nx=3)
    hspy = write_scan(tmp_path / "scan.hspy", data, **CAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hs.load(str(hspy)).save(str(tmp_path / "scan.emd"))  # NCEM EMD
    emd = open_scan(tmp_path / "scan.emd")
    np.testing.assert_array_equal(emd.rows(0, 2), data)
    assert (emd.reciprocal_px_invA, emd.scan_step_nm) == (pytest.approx(0.02), pytest.approx(3.0))
    (tmp_path / "hyperspy.h5").write_bytes(hspy.read_bytes())  # a HyperSpy file named .h5
    assert open_scan(tmp_path / "hyperspy.h5").reciprocal_px_invA == pytest.approx(0.02)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["entry/patterns"], f["entry/dose"] = data, np.ones(3)
    plain = open_scan(tmp_path / "plain.h5", reciprocal_px_invA=0.02)
    assert plain.metadata["dataset"] == "entry/patterns"
    np.testing.assert_array_equal(plain.rows(0, 2), data)
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"], f["b"] = data, data
    with pytest.raises(DataError, match="holds 2 3-/4-D datasets"):
        open_scan(tmp_path / "two.h5")
