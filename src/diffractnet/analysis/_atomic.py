"""Atomic file writes for the analysis outputs: write a temporary file beside the target, then rename."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _temp_beside(path: Path) -> Path:
    """A fresh temporary name in ``path``'s folder (so ``os.replace`` never crosses filesystems).

    Unique per process and call; the file is created by the writer with the usual umask permissions
    (unlike ``tempfile.mkstemp``, whose 0600 mode would survive the rename).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def new_figure(width_in: float, height_in: float) -> Figure:
    """A matplotlib Figure drawn by the Agg canvas, outside pyplot (no global backend or figure state)."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure_atomic(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` to ``path`` atomically (format from the suffix, PNG when none), then release it."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    tmp = _temp_beside(path)
    try:
        fig.savefig(tmp, format=fmt, dpi=dpi)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        fig.clear()
    return path
