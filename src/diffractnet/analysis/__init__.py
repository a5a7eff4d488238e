"""Analysis of trained classifiers: metrics, figures, Grad-CAM heatmaps and a self-contained HTML report.

- :mod:`.metrics` — top-k, per-class, per-material, confusion and calibration numbers (JSON-ready dict)
- :mod:`.plots` — confusion matrix, per-material accuracy bars, reliability diagram (PNG)
- :mod:`.gradcam` — Grad-CAM heatmaps with the target layer found automatically; overlay images
- :mod:`.report` — ``report.html`` from sections of paragraphs, tables and figures
"""

from diffractnet.analysis.gradcam import TargetLayer, find_target_layer, gradcam_heatmaps, save_overlay
from diffractnet.analysis.metrics import calibration, classification_metrics
from diffractnet.analysis.plots import plot_confusion, plot_per_material, plot_reliability
from diffractnet.analysis.report import FigureRef, Section, Table, write_report

__all__ = [
    "FigureRef",
    "Section",
    "Table",
    "TargetLayer",
    "calibration",
    "classification_metrics",
    "find_target_layer",
    "gradcam_heatmaps",
    "plot_confusion",
    "plot_per_material",
    "plot_reliability",
    "save_overlay",
    "write_report",
]
