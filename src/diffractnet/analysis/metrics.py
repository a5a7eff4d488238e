"""Classification metrics from predicted probabilities: top-k, per class, per material, confusion, calibration.

Everything returned is plain Python (lists, floats, ints, str, None), so it goes straight into JSON,
the HTML report and the plots in :mod:`diffractnet.analysis.plots`.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from diffractnet.errors import DataError

N_CALIBRATION_BINS = 15
ROW_SUM_ATOL = 1e-3


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, class_labels: Sequence[int],
                           material: np.ndarray | None = None,
                           top_k: Sequence[int] = (1, 3, 5)) -> dict:
    """Score predicted class probabilities against true labels.

    Parameters
    ----------
    y_true
        ``(N,)`` true labels, each one of ``class_labels`` (e.g. space-group numbers, not column indices).
    probs
        ``(N, C)`` predicted probabilities; each row sums to 1; column ``j`` is class ``class_labels[j]``.
    class_labels
        The ``C`` distinct integer labels of the columns of ``probs``.
    material
        Optional ``(N,)`` material of each sample (str or int), for per-material accuracy.
    top_k
        The k of the top-k accuracies; k larger than C counts every sample as a hit.

    Returns
    -------
    dict
        ``n``; ``class_labels``; ``accuracy`` (top-1); ``top_k_accuracy`` (``{"top_1": ..., ...}``);
        ``per_class`` (list of ``{label, precision, recall, f1, support}``, scikit-learn,
        ``zero_division=0``); ``macro`` (``{precision, recall, f1, n_classes}``, unweighted means over
        the classes present in ``y_true``); ``per_material`` (list of ``{material, true_label,
        true_labels, n, accuracy, most_common_prediction}`` sorted by material, empty without
        ``material``; ``true_label`` is the material's most common true label); ``confusion``
        (``{labels, matrix}``, rows true, columns predicted, counts); ``calibration`` (expected
        calibration error over 15 equal-width confidence bins, with per-bin ``bin_confidence``,
        ``bin_accuracy`` (None for empty bins) and ``bin_count``). Accuracies are fractions in [0, 1].
    """
    labels = _check_class_labels(class_labels)
    probs = _check_probs(probs, len(labels))
    true_idx = _label_indices(y_true, labels, len(probs))
    ks = _check_top_k(top_k)
    materials = _check_material(material, len(probs))

    order = np.argsort(-probs, axis=1, kind="stable")  # (N, C), ties go to the lower column, like argmax
    pred_idx = order[:, 0]
    correct = pred_idx == true_idx
    top_k_accuracy = {f"top_{k}": float(np.mean(np.any(order[:, :k] == true_idx[:, None], axis=1)))
                      for k in ks}
    per_class, macro = _per_class(true_idx, pred_idx, labels)
    return {
        "n": int(len(probs)),
        "class_labels": labels,
        "accuracy": float(np.mean(correct)),
        "top_k_accuracy": top_k_accuracy,
        "per_class": per_class,
        "macro": macro,
        "per_material": _per_material(materials, true_idx, pred_idx, labels) if materials is not None else [],
        "confusion": {"labels": labels,
                      "matrix": confusion_matrix(true_idx, pred_idx, labels=range(len(labels))).tolist()},
        "calibration": calibration(probs[np.arange(len(probs)), pred_idx], correct),
    }


def calibration(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_CALIBRATION_BINS) -> dict:
    """Expected calibration error of top-1 predictions over ``n_bins`` equal-width confidence bins.

    ``confidence`` is the ``(N,)`` probability of the predicted class and ``correct`` the ``(N,)``
    booleans saying whether it was right. Bin ``b`` holds confidences in ``(b/n_bins, (b+1)/n_bins]``
    (a confidence of exactly 0 goes to the first bin). ECE = Σ_b (n_b / N) |accuracy_b − confidence_b|.

    Returns ``{ece, n_bins, bin_edges, bin_confidence, bin_accuracy, bin_count}``; the per-bin mean
    confidence and accuracy are None for empty bins.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_idx = np.searchsorted(edges[1:-1], confidence, side="left")  # (N,) right-closed bins
    count = np.bincount(bin_idx, minlength=n_bins)
    conf_sum = np.bincount(bin_idx, weights=confidence, minlength=n_bins)
    hit_sum = np.bincount(bin_idx, weights=correct.astype(np.float64), minlength=n_bins)
    filled = count > 0
    ece = float(np.sum(np.abs(hit_sum[filled] - conf_sum[filled])) / max(len(confidence), 1))
    return {
        "ece": ece,
        "n_bins": int(n_bins),
        "bin_edges": edges.tolist(),
        "bin_confidence": [float(s / c) if c else None for s, c in zip(conf_sum, count)],
        "bin_accuracy": [float(s / c) if c else None for s, c in zip(hit_sum, count)],
        "bin_count": count.astype(int).tolist(),
    }


def _per_class(true_idx: np.ndarray, pred_idx: np.ndarray, labels: list[int]) -> tuple[list[dict], dict]:
    """Per-class precision/recall/F1/support and their macro means over the classes present."""
    precision, recall, f1, support = precision_recall_fscore_support(
        true_idx, pred_idx, labels=range(len(labels)), zero_division=0)
    rows = [{"label": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)]
    present = support > 0
    macro = {"precision": float(np.mean(precision[present])), "recall": float(np.mean(recall[present])),
             "f1": float(np.mean(f1[present])), "n_classes": int(np.sum(present))}
    return rows, macro


def _per_material(materials: np.ndarray, true_idx: np.ndarray, pred_idx: np.ndarray,
                  labels: list[int]) -> list[dict]:
    """Accuracy, count and true class of each material, sorted by material."""
    rows = []
    for name in np.unique(materials):
        mask = materials == name
        true_counts = Counter(labels[i] for i in true_idx[mask])
        pred_counts = Counter(labels[i] for i in pred_idx[mask])
        rows.append({
            "material": _plain(name),
            "true_label": min(true_counts, key=lambda lab: (-true_counts[lab], lab)),
            "true_labels": sorted(true_counts),
            "n": int(mask.sum()),
            "accuracy": float(np.mean(true_idx[mask] == pred_idx[mask])),
            "most_common_prediction": min(pred_counts, key=lambda lab: (-pred_counts[lab], lab)),
        })
    return rows


def _plain(value) -> str | int:
    """A numpy scalar as a plain str or int (JSON-ready)."""
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def _check_class_labels(class_labels: Sequence[int]) -> list[int]:
    """Class labels as a list of distinct Python ints."""
    arr = np.asarray(class_labels)
    if arr.ndim != 1 or len(arr) == 0:
        raise DataError(f"class_labels must be a non-empty 1-D list of ints, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise DataError(f"class_labels must be integers, got dtype {arr.dtype}")
    if len(np.unique(arr)) != len(arr):
        dupes = sorted({int(v) for v in arr if np.sum(arr == v) > 1})
        raise DataError(f"class_labels must be distinct, repeated: {dupes}")
    return [int(v) for v in arr]


def _check_probs(probs: np.ndarray, n_classes: int) -> np.ndarray:
    """``(N, C)`` finite, non-negative probabilities whose rows sum to 1, as float64."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise DataError(f"probs must have shape (N, {n_classes}) to match class_labels, got {probs.shape}")
    if probs.shape[0] == 0:
        raise DataError("probs is empty (N = 0): nothing to score")
    if probs.dtype.kind not in "fiu":
        raise DataError(f"probs must be numeric, got dtype {probs.dtype}")
    probs = probs.astype(np.float64)
    bad_rows = np.flatnonzero(~np.isfinite(probs).all(axis=1))
    if len(bad_rows):
        raise DataError(f"probs has NaN or inf in {len(bad_rows)} rows (first: row {bad_rows[0]})")
    if (probs < 0).any():
        raise DataError(f"probs has negative values (min {probs.min():.3g}); pass softmax outputs")
    off = np.flatnonzero(np.abs(probs.sum(axis=1) - 1.0) > ROW_SUM_ATOL)
    if len(off):
        raise DataError(f"probs rows must sum to 1: {len(off)} rows do not (row {off[0]} sums to "
                        f"{probs[off[0]].sum():.4g}); pass softmax outputs, not logits")
    return probs


def _label_indices(y_true: np.ndarray, labels: list[int], n: int) -> np.ndarray:
    """``(N,)`` column index of each true label; every label must be one of ``labels``."""
    y = np.asarray(y_true)
    if y.shape != (n,):
        raise DataError(f"y_true must have shape ({n},) to match probs, got {y.shape}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DataError("y_true has NaN or inf; labels must be integers")
        if not np.all(y == np.round(y)):
            raise DataError("y_true has non-integer values; labels must be integers")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise DataError(f"y_true must hold integer labels, got dtype {y.dtype}")
    lookup = {label: i for i, label in enumerate(labels)}
    unknown = sorted({int(v) for v in np.unique(y)} - set(lookup))
    if unknown:
        raise DataError(f"y_true has labels not in class_labels: {unknown[:10]}"
                        f"{' ...' if len(unknown) > 10 else ''}")
    return np.array([lookup[int(v)] for v in y], dtype=np.int64)


def _check_top_k(top_k: Sequence[int]) -> list[int]:
    """The distinct positive k values, ascending."""
    ks = list(top_k)
    if not ks or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise DataError(f"top_k must be a non-empty list of positive integers, got {tuple(ks)}")
    return sorted({int(k) for k in ks})


def _check_material(material: np.ndarray | None, n: int) -> np.ndarray | None:
    """``(N,)`` material names or ids (str or int), or None."""
    if material is None:
        return None
    arr = np.asarray(material)
    if arr.shape != (n,):
        raise DataError(f"material must have shape ({n},) to match probs, got {arr.shape}")
    if arr.dtype.kind == "O":
        if not all(isinstance(v, (str, int, np.integer, np.str_)) for v in arr):
            raise DataError("material must hold str or int values only (found None or another type)")
        arr = arr.astype(str) if any(isinstance(v, (str, np.str_)) for v in arr) else arr.astype(np.int64)
    elif arr.dtype.kind not in "iuUS":
        raise DataError(f"material must hold str or int values, got dtype {arr.dtype}")
    if arr.dtype.kind == "S":
        arr = arr.astype(str)
    return arr
