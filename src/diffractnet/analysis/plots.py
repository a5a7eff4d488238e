"""Figures of classification metrics: confusion matrix, per-material accuracy bars, reliability diagram.

Each function takes the dict from :func:`diffractnet.analysis.metrics.classification_metrics`, writes one
image atomically (PNG unless the suffix says otherwise) and returns its path. Figures are drawn by the
Agg canvas outside pyplot, so nothing here touches the process-wide backend or leaves figures open.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.patches import Patch

from diffractnet.analysis._atomic import new_figure, save_figure_atomic
from diffractnet.errors import DataError

MAX_ANNOTATED_CLASSES = 25
MAX_ANNOTATED_BARS = 40
LEGEND_ROWS = 16


def plot_confusion(metrics: dict, path: str | Path, normalize: bool = True) -> Path:
    """Confusion matrix (rows true class, columns predicted class) as an image.

    Colour is the fraction of each true class (row-normalised) when ``normalize``, otherwise the count;
    cells carry their counts while there are at most 25 classes.
    """
    confusion = _require(metrics, "confusion")
    labels = list(confusion["labels"])
    counts = np.asarray(confusion["matrix"], dtype=float)  # (C, C)
    if counts.shape != (len(labels), len(labels)):
        raise DataError(f"confusion matrix shape {counts.shape} does not match {len(labels)} labels")
    row_sum = counts.sum(axis=1, keepdims=True)
    shown = np.divide(counts, row_sum, out=np.zeros_like(counts), where=row_sum > 0) if normalize else counts

    side = float(np.clip(0.35 * len(labels) + 2.5, 4.0, 14.0))
    fig = new_figure(side + 1.2, side)
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(float(counts.max()), 1.0)
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=vmax)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of true class" if normalize else "count")
    ticks = np.arange(len(labels))
    step = max(1, len(labels) // 40)  # at most ~40 tick labels
    ax.set_xticks(ticks[::step], [str(v) for v in labels[::step]], rotation=90)
    ax.set_yticks(ticks[::step], [str(v) for v in labels[::step]])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix (N = {int(counts.sum())})")
    if len(labels) <= MAX_ANNOTATED_CLASSES:
        for (i, j), count in np.ndenumerate(counts):
            if count:
                ax.text(j, i, f"{int(count)}", ha="center", va="center", fontsize=8,
                        color="white" if shown[i, j] > 0.55 * vmax else "black")
    return save_figure_atomic(fig, path)


def plot_per_material(metrics: dict, path: str | Path, class_name: str = "space group") -> Path:
    """One bar per material: top-1 accuracy [%], coloured by the material's true class.

    Bars are sorted by true class, then material name; a dashed line marks chance (100 / C %), as in
    Kaufmann et al. 2020 (Fig. 2). ``class_name`` names the classes in the legend.
    """
    rows = _require(metrics, "per_material")
    if not rows:
        raise DataError("metrics has no per-material results: call classification_metrics with material=")
    rows = sorted(rows, key=lambda r: (r["true_label"], str(r["material"])))
    classes = sorted({r["true_label"] for r in rows})
    colour_of = dict(zip(classes, _class_colours(len(classes))))
    accuracy_pct = [100.0 * r["accuracy"] for r in rows]

    fig = new_figure(float(np.clip(0.3 * len(rows) + 3.5, 6.0, 24.0)), 5.0)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    ax.bar(x, accuracy_pct, color=[colour_of[r["true_label"]] for r in rows], edgecolor="black", linewidth=0.5)
    ax.set_xticks(x, [str(r["material"]) for r in rows], rotation=60 if len(rows) > 8 else 0,
                  ha="right" if len(rows) > 8 else "center")
    if len(rows) <= MAX_ANNOTATED_BARS:
        for xi, acc in zip(x, accuracy_pct):
            ax.text(xi, acc + 1.0, f"{acc:.0f}", ha="center", va="bottom", fontsize=7)
    n_classes = len(metrics.get("class_labels") or classes)
    handles = [Patch(facecolor=colour_of[c], edgecolor="black", label=f"{class_name} {c}") for c in classes]
    chance = ax.axhline(100.0 / n_classes, color="black", linestyle="--", linewidth=1,
                        label=f"chance (1/{n_classes})")
    n_legend_cols = -(-(len(handles) + 1) // LEGEND_ROWS)  # ceil: columns of at most LEGEND_ROWS entries
    ax.legend(handles=[*handles, chance], fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0),
              ncols=n_legend_cols)
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy [%]")
    ax.set_xlabel("material")
    ax.set_title("Accuracy per material")
    return save_figure_atomic(fig, path)


def plot_reliability(metrics: dict, path: str | Path) -> Path:
    """Reliability diagram: accuracy against confidence per bin, with the ECE, above a count histogram."""
    cal = _require(metrics, "calibration")
    edges = np.asarray(cal["bin_edges"], dtype=float)
    centres = 0.5 * (edges[:-1] + edges[1:])
    width = np.diff(edges)
    filled = np.array([c is not None for c in cal["bin_confidence"]])
    accuracy = np.array([a if a is not None else 0.0 for a in cal["bin_accuracy"]])
    confidence = np.array([c if c is not None else 0.0 for c in cal["bin_confidence"]])

    fig = new_figure(5.0, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.bar(centres[filled], accuracy[filled], width=width[filled], color="tab:blue", edgecolor="black",
            linewidth=0.5, label="accuracy")
    top.bar(centres[filled], confidence[filled] - accuracy[filled], bottom=accuracy[filled],
            width=width[filled], color="tab:red", alpha=0.3, hatch="//", edgecolor="tab:red",
            linewidth=0.5, label="gap to confidence")
    top.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"Reliability (ECE = {cal['ece']:.3f}, {cal['n_bins']} bins)")
    top.legend(fontsize=8, loc="upper left")
    bottom.bar(centres, cal["bin_count"], width=width, color="gray", edgecolor="black", linewidth=0.5)
    bottom.set_xlabel("confidence (probability of the predicted class)")
    bottom.set_ylabel("count")
    return save_figure_atomic(fig, path)


def _class_colours(n: int) -> list:
    """``n`` distinguishable colours: tab10 / tab20 while they last, then evenly spaced on turbo."""
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](v) for v in np.linspace(0.05, 0.95, n)]


def _require(metrics: dict, key: str):
    """``metrics[key]``, or a DataError saying the dict is not from classification_metrics."""
    if not isinstance(metrics, dict) or key not in metrics:
        raise DataError(f"metrics has no '{key}' entry: pass the dict returned by classification_metrics")
    return metrics[key]
