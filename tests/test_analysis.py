"""Analysis: metrics against hand-computed numbers, plots, the HTML report, and Grad-CAM over the zoo."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from diffractnet.analysis import (
    FigureRef,
    Section,
    Table,
    classification_metrics,
    find_target_layer,
    gradcam_heatmaps,
    plot_confusion,
    plot_per_material,
    plot_reliability,
    save_overlay,
    write_report,
)
from diffractnet.errors import DataError, DiffractNetError

# Six samples, three classes (labels 10, 20, 30); no confidence sits on a 1/15 bin edge.
LABELS = [10, 20, 30]
Y_TRUE = np.array([10, 10, 20, 20, 30, 30])
PROBS = np.array([
    [0.70, 0.20, 0.10],  # pred 10 ✓  conf 0.70
    [0.20, 0.50, 0.30],  # pred 20 ✗  conf 0.50, true class ranked last
    [0.10, 0.65, 0.25],  # pred 20 ✓  conf 0.65
    [0.45, 0.35, 0.20],  # pred 10 ✗  conf 0.45, true class second
    [0.15, 0.30, 0.55],  # pred 30 ✓  conf 0.55
    [0.25, 0.45, 0.30],  # pred 20 ✗  conf 0.45, true class second
])
MATERIAL = np.array(["W", "Al", "NaCl", "Cu", "W", "Al"])
MATERIAL_BY_SAMPLE = np.array(["Al", "Al", "NaCl", "Cu", "W", "W"])
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def toy_metrics() -> dict:
    return classification_metrics(Y_TRUE, PROBS, LABELS, material=MATERIAL_BY_SAMPLE, top_k=(1, 2, 3, 5))


# --- metrics -------------------------------------------------------------------------------------------

def test_top_k_and_counts(toy_metrics):
    assert toy_metrics["n"] == 6
    assert toy_metrics["accuracy"] == pytest.approx(3 / 6)
    assert toy_metrics["top_k_accuracy"] == pytest.approx({"top_1": 3 / 6, "top_2": 5 / 6, "top_3": 1.0,
                                                          "top_5": 1.0})


def test_per_class_precision_recall_and_macro(toy_metrics):
    rows = {r["label"]: r for r in toy_metrics["per_class"]}
    # predicted 10 twice (1 right), 20 three times (1 right), 30 once (right); every class has 1 of 2 recalled
    assert [rows[k]["precision"] for k in LABELS] == pytest.approx([1 / 2, 1 / 3, 1.0])
    assert [rows[k]["recall"] for k in LABELS] == pytest.approx([1 / 2, 1 / 2, 1 / 2])
    assert [rows[k]["f1"] for k in LABELS] == pytest.approx([1 / 2, 2 / 5, 2 / 3])
    assert [rows[k]["support"] for k in LABELS] == [2, 2, 2]
    assert toy_metrics["macro"] == pytest.approx({"precision": 11 / 18, "recall": 0.5,
                                                 "f1": (1 / 2 + 2 / 5 + 2 / 3) / 3, "n_classes": 3})


def test_confusion_rows_true_columns_predicted(toy_metrics):
    assert toy_metrics["confusion"] == {"labels": LABELS, "matrix": [[1, 1, 0], [1, 1, 0], [0, 1, 1]]}


def test_per_material_accuracy_count_and_class(toy_metrics):
    got = [(r["material"], r["true_label"], r["n"], r["accuracy"]) for r in toy_metrics["per_material"]]
    assert got == [("Al", 10, 2, 0.5), ("Cu", 20, 1, 0.0), ("NaCl", 20, 1, 1.0), ("W", 30, 2, 0.5)]
    cu = toy_metrics["per_material"][1]
    assert cu["true_labels"] == [20] and cu["most_common_prediction"] == 10


def test_ece_by_hand(toy_metrics):
    cal = toy_metrics["calibration"]
    # bins (b/15, (b+1)/15]: 0.45 ×2 → 6, 0.50 → 7, 0.55 → 8, 0.65 → 9, 0.70 → 10
    assert cal["n_bins"] == 15 and len(cal["bin_edges"]) == 16
    assert cal["bin_count"] == [0] * 6 + [2, 1, 1, 1, 1] + [0] * 4
    assert cal["bin_confidence"][6] == pytest.approx(0.45) and cal["bin_accuracy"][6] == 0.0
    assert cal["bin_accuracy"][0] is None
    assert cal["ece"] == pytest.approx((0.3 + 0.5 + 0.35 + 2 * 0.45 + 0.45) / 6)


def test_ece_zero_when_calibrated_and_gap_when_overconfident():
    # 10 samples at confidence 0.7 with 7 right, 10 at 0.9 with 9 right: perfectly calibrated
    conf = np.r_[np.full(10, 0.7), np.full(10, 0.9)]
    probs = np.stack([conf, 1 - conf], axis=1)
    y_true = np.r_[np.zeros(7), np.ones(3), np.zeros(9), np.ones(1)].astype(int)
    assert classification_metrics(y_true, probs, [0, 1])["calibration"]["ece"] == pytest.approx(0.0, abs=1e-12)
    # confidence 0.9 but only half right: ECE = |0.5 - 0.9|
    probs = np.tile([0.9, 0.1], (10, 1))
    y_true = np.r_[np.zeros(5), np.ones(5)].astype(int)
    assert classification_metrics(y_true, probs, [0, 1])["calibration"]["ece"] == pytest.approx(0.4)


def test_metrics_are_plain_json_and_material_is_optional(toy_metrics):
    text = json.dumps(toy_metrics, allow_nan=False)
    assert json.loads(text) == toy_metrics
    no_material = classification_metrics(Y_TRUE, PROBS, LABELS)
    assert no_material["per_material"] == [] and no_material["accuracy"] == 0.5
    ints = classification_metrics(Y_TRUE, PROBS, LABELS, material=np.array([3, 3, 1, 1, 2, 2]))
    assert [r["material"] for r in ints["per_material"]] == [1, 2, 3]


BAD_INPUTS = [
    (dict(probs=PROBS[:, :2]), r"probs must have shape \(N, 3\)"),
    (dict(y_true=Y_TRUE[:5]), r"y_true must have shape \(6,\)"),
    (dict(y_true=np.array([10, 10, 20, 20, 30, 40])), r"labels not in class_labels: \[40\]"),
    (dict(probs=np.where(np.eye(6, 3, dtype=bool), np.nan, PROBS)), "NaN"),
    (dict(probs=PROBS * 2), "rows must sum to 1"),
    (dict(class_labels=[10, 20, 20]), "distinct"),
    (dict(material=MATERIAL[:4]), r"material must have shape \(6,\)"),
    (dict(material=np.array([1.0, 2, 3, 4, 5, np.nan])), "material must hold str or int"),
    (dict(top_k=(0, 1)), "top_k"),
    (dict(y_true=np.array([], dtype=int), probs=np.zeros((0, 3))), "empty"),
]


@pytest.mark.parametrize("change, message", BAD_INPUTS)
def test_bad_inputs_raise_one_line_data_error(change, message):
    args = dict(y_true=Y_TRUE, probs=PROBS, class_labels=LABELS, material=MATERIAL, top_k=(1, 3))
    args.update(change)
    with pytest.raises(DataError, match=message) as err:
        classification_metrics(**args)
    assert "\n" not in str(err.value)


# --- plots ---------------------------------------------------------------------------------------------

def _assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 2000
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no temp files left


def test_plots_write_pngs_and_leave_no_open_figures(toy_metrics, tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    for plot, name in [(plot_confusion, "confusion.png"), (plot_per_material, "materials.png"),
                       (plot_reliability, "reliability.png")]:
        out = plot(toy_metrics, tmp_path / "figs" / name)
        assert out == tmp_path / "figs" / name
        _assert_png(out)
    assert plt.get_fignums() == before


def test_plots_scale_to_many_classes(tmp_path):
    rng = np.random.default_rng(0)
    labels = list(range(1, 61))
    probs = rng.dirichlet(np.ones(60), size=300)
    material = np.array([f"m{i % 45}" for i in range(300)])
    y_true = np.array([labels[(i % 45) % 60] for i in range(300)])
    metrics = classification_metrics(y_true, probs, labels, material=material)
    _assert_png(plot_confusion(metrics, tmp_path / "c.png"))
    _assert_png(plot_per_material(metrics, tmp_path / "m.png"))


def test_per_material_plot_needs_materials(tmp_path):
    with pytest.raises(DataError, match="material="):
        plot_per_material(classification_metrics(Y_TRUE, PROBS, LABELS), tmp_path / "m.png")
    with pytest.raises(DataError, match="classification_metrics"):
        plot_confusion({"n": 3}, tmp_path / "c.png")


# --- report --------------------------------------------------------------------------------------------

class _Collect(HTMLParser):
    """Collects img src, href and text of a page."""

    def __init__(self):
        super().__init__()
        self.srcs, self.hrefs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs["src"])
        if "href" in attrs:
            self.hrefs.append(attrs["href"])

    def handle_data(self, data):
        self.text.append(data)


def test_report_has_headings_escaped_tables_and_relative_figures(toy_metrics, tmp_path):
    plot_confusion(toy_metrics, tmp_path / "confusion.png")
    (tmp_path / "figs").mkdir()
    plot_reliability(toy_metrics, tmp_path / "figs" / "reliability.png")
    sections = [
        Section("Overview", paragraphs=["Top-1 accuracy is 50 % & rising <really>."],
                tables=[Table("Per class", toy_metrics["per_class"]),
                        ("Tricky cells", [{"name": "<b>bold</b>", "value": 1.23456789}, {"other": None}])],
                figures=[FigureRef("Confusion matrix", "confusion.png")]),
        Section("Calibration", figures=[("Reliability <diagram>", tmp_path / "figs" / "reliability.png")]),
    ]
    path = write_report(tmp_path, "Space groups <test>", sections)
    assert path == tmp_path / "report.html"
    page = path.read_text(encoding="utf-8")
    assert "<h2>Overview</h2>" in page and "<h2>Calibration</h2>" in page
    assert "<h1>Space groups &lt;test&gt;</h1>" in page
    assert "<td>&lt;b&gt;bold&lt;/b&gt;</td>" in page and "<b>bold</b>" not in page
    assert "50 % &amp; rising &lt;really&gt;." in page
    assert '<td class="num">1.235</td>' in page and "<th>precision</th>" in page
    parsed = _Collect()
    parsed.feed(page)
    assert parsed.srcs == ["confusion.png", "figs/reliability.png"]
    assert all((tmp_path / src).is_file() for src in parsed.srcs)
    assert all(h.startswith("#") for h in parsed.hrefs)  # self-contained: no external links
    assert "<script" not in page and "stylesheet" not in page
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_report_rejects_missing_or_outside_figures(tmp_path):
    with pytest.raises(DataError, match="not found"):
        write_report(tmp_path, "t", [Section("s", figures=[("missing", "nope.png")])])
    outside = tmp_path / "outside.png"
    outside.write_bytes(PNG_MAGIC)
    (tmp_path / "report").mkdir()
    with pytest.raises(DataError, match="outside the report folder"):
        write_report(tmp_path / "report", "t", [Section("s", figures=[("x", "../outside.png")])])
    with pytest.raises(DataError, match="does not exist"):
        write_report(tmp_path / "absent", "t", [])


# --- Grad-CAM ------------------------------------------------------------------------------------------

def small_cnn(in_chans: int = 1, num_classes: int = 5) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chans, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))


# model kind → (timm name or None, expected target layer, channels-last)
ZOO = {
    "small_cnn": (None, "7", False),
    "resnet18": ("resnet18", "layer4", False),
    "resnet50": ("resnet50", "layer4", False),
    "densenet121": ("densenet121", "features", False),
    "legacy_xception": ("legacy_xception", "act4", False),
    "xception41": ("xception41", "act", False),
    "swin_tiny": ("swin_tiny_patch4_window7_224", "norm", True),
}


def _zoo_model(kind: str) -> nn.Module:
    import timm

    torch.manual_seed(0)
    name = ZOO[kind][0]
    if name is None:
        return small_cnn()
    extra = {"img_size": 64} if name.startswith("swin") else {}
    model = timm.create_model(name, pretrained=False, in_chans=1, num_classes=5, **extra)
    # Random weights with BatchNorm's initial running stats shrink the signal ~1e4-fold by the last
    # layer (every image then looks alike); fit the running stats to one batch, as training would.
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one batch sets the stats
    with torch.no_grad():
        model.train()(torch.randn(8, 1, 64, 64, generator=torch.Generator().manual_seed(2)))
    return model


@pytest.mark.parametrize("kind", list(ZOO))
def test_gradcam_over_the_zoo(kind):
    model = _zoo_model(kind).train()
    images = torch.randn(5, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    layer = find_target_layer(model, images)
    assert (layer.name, layer.channels_last) == ZOO[kind][1:]
    heatmaps = gradcam_heatmaps(model, images, target_classes=[0, 1, 2, 3, 4])
    assert heatmaps.shape == (5, 64, 64) and heatmaps.dtype == np.float32
    assert np.isfinite(heatmaps).all() and heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0
    assert heatmaps.max() > 0.5  # some class has a real map (a map is 0 where nothing supports its class)
    assert model.training and all(m.training for m in model.modules())  # train/eval state given back
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind


def test_gradcam_keeps_shape_order_frozen_weights_and_existing_grads():
    model = small_cnn()
    for p in model.parameters():
        p.requires_grad_(False)
    heatmaps = gradcam_heatmaps(model.eval(), torch.randn(3, 1, 48, 64), batch_size=2)
    assert heatmaps.shape == (3, 48, 64) and heatmaps.max() > 0
    model = small_cnn()
    with torch.inference_mode():  # a caller's no-grad context does not stop Grad-CAM
        assert gradcam_heatmaps(model, torch.randn(2, 1, 16, 16)).max() > 0
    model(torch.randn(2, 1, 16, 16)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    gradcam_heatmaps(model, torch.randn(2, 1, 16, 16))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))


def test_gradcam_errors():
    model = small_cnn()
    with pytest.raises(DataError, match=r"\(B, C, H, W\)"):
        gradcam_heatmaps(model, torch.randn(1, 64, 64))
    with pytest.raises(DataError, match="NaN"):
        gradcam_heatmaps(model, torch.full((1, 1, 16, 16), float("nan")))
    with pytest.raises(DataError, match=r"column indices in \[0, 5\)"):
        gradcam_heatmaps(model, torch.randn(2, 1, 16, 16), target_classes=[0, 5])
    with pytest.raises(DataError, match="one per image"):
        gradcam_heatmaps(model, torch.randn(2, 1, 16, 16), target_classes=[0])
    with pytest.raises(DiffractNetError, match="last usable: .*7"):
        gradcam_heatmaps(model, torch.randn(2, 1, 16, 16), layer="10")
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(256, 16), nn.ReLU(), nn.Linear(16, 5))
    with pytest.raises(DiffractNetError, match="no layer of Sequential") as err:
        find_target_layer(mlp, torch.randn(2, 1, 16, 16))
    assert "\n" not in str(err.value)


def test_gradcam_explicit_layer():
    heatmaps = gradcam_heatmaps(small_cnn(), torch.randn(2, 1, 32, 32), layer="2")
    assert heatmaps.shape == (2, 32, 32)


class AddXCoordinate(nn.Module):
    """Appends an x-coordinate channel in [-1, 1] (CoordConv), so conv features can know left from right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        xs = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device).expand(b, 1, h, w)
        return torch.cat([x, xs], dim=1)


def _blob_images(n: int, gen: torch.Generator, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, 1, size, size)`` noisy images with one Gaussian blob; label 0 = blob on the left half, 1 = right."""
    side = torch.randint(0, 2, (n,), generator=gen)
    cx = torch.rand(n, generator=gen) * (size / 2 - 8) + 4 + side * size / 2
    cy = torch.rand(n, generator=gen) * (size - 8) + 4
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blob = torch.exp(-((xx - cx[:, None, None]) ** 2 + (yy - cy[:, None, None]) ** 2) / (2 * 2.0**2))
    return (blob + 0.1 * torch.randn(n, size, size, generator=gen))[:, None].float(), side


def test_gradcam_points_at_the_blob_a_trained_cnn_looks_at():
    # Global pooling makes Grad-CAM the class activation map; the coordinate channel lets features be
    # side-specific. (With Flatten + Linear instead, a net may answer "right" from the *empty* left half.)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(AddXCoordinate(), small_cnn(in_chans=2, num_classes=2))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(120):
        images, side = _blob_images(32, gen)
        loss = nn.functional.cross_entropy(model(images), side)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    images, side = _blob_images(32, gen)
    model.eval()
    assert (model(images).argmax(1) == side).float().mean() > 0.9
    heatmaps = gradcam_heatmaps(model, images, target_classes=side.tolist())
    right_fraction = heatmaps[:, :, 16:].sum(axis=(1, 2)) / heatmaps.sum(axis=(1, 2))
    on_blob_half = np.where(side.numpy() == 1, right_fraction, 1 - right_fraction)
    assert on_blob_half.mean() > 0.65
    assert np.mean(on_blob_half > 0.5) >= 0.9
    peak_column = heatmaps.reshape(len(heatmaps), -1).argmax(axis=1) % 32
    assert np.mean((peak_column >= 16) == side.numpy().astype(bool)) >= 0.95


def test_save_overlay(tmp_path):
    image = np.random.default_rng(0).random((40, 40))
    heatmap = np.zeros((40, 40))
    heatmap[10:20, 10:20] = 1.0
    _assert_png(save_overlay(image, heatmap, tmp_path / "overlay.png", title="NbC <225>"))
    with pytest.raises(DataError, match="same"):
        save_overlay(image, heatmap[:20], tmp_path / "bad.png")
    with pytest.raises(DataError, match="NaN"):
        save_overlay(np.full((4, 4), np.nan), np.zeros((4, 4)), tmp_path / "bad.png")
