"""Grad-CAM heatmaps for any classifier of the zoo, with the target layer found automatically.

The heatmaps come from ``pytorch_grad_cam.GradCAM`` (Selvaraju et al. 2017, as used for EBSD space
groups by Kaufmann et al. 2020, Fig. 8). What this module adds: it finds the layer to explain by
running the model once, it handles timm's channels-last (Swin) feature maps, and it leaves the model
as it found it (train/eval state of every module, parameter gradients).
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from diffractnet.analysis._atomic import new_figure, save_figure_atomic
from diffractnet.errors import DataError, DiffractNetError


@dataclass(frozen=True)
class TargetLayer:
    """The layer Grad-CAM explains.

    ``name`` is its dotted name in ``model.named_modules()``; ``channels_last`` says its output is
    ``(B, H, W, C)`` (timm Swin stages and final norm) rather than ``(B, C, H, W)``.
    """

    name: str
    module: nn.Module
    channels_last: bool


def find_target_layer(model: nn.Module, images: torch.Tensor) -> TargetLayer:
    """The last module whose output is a 4-D feature map with more than one spatial position.

    The model runs once, in eval mode, on ``images[:1]`` (``(B, C, H, W)``); a module qualifies when its
    output is a 4-D tensor with H·W > 1 that the logits depend on (it receives a gradient), and the
    module runs exactly once per forward pass. "Last" is in order of finishing, so a container whose
    output is the final feature map (a ResNet stage, DenseNet's ``features``) wins over its children.
    The layout is channels-last when the model declares ``output_fmt == "NHWC"`` (timm Swin).
    Raises DiffractNetError when no module qualifies (e.g. a model without convolutional feature maps).
    """
    candidates, _ = _probe(model, _check_images(images))
    if not candidates:
        raise DiffractNetError(f"no layer of {type(model).__name__} outputs a 4-D feature map with "
                               "spatial size > 1 that the logits depend on; Grad-CAM needs one")
    return candidates[-1]


def gradcam_heatmaps(model: nn.Module, images: torch.Tensor, target_classes: Sequence[int] | None = None,
                     *, layer: str | None = None, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM heatmap of each image for its target class.

    Parameters
    ----------
    model
        A classifier mapping ``(B, C, H, W)`` images to ``(B, n_classes)`` logits.
    images
        ``(B, C, H, W)`` input batch, on the model's device, preprocessed as for prediction.
    target_classes
        Column index (not label) of the class to explain, one per image; None explains the predicted class.
    layer
        Dotted name of the layer to explain; None finds it with :func:`find_target_layer`.
    batch_size
        Images per Grad-CAM pass.

    Returns
    -------
    np.ndarray
        ``(B, H, W)`` float32 heatmaps, each rescaled by pytorch_grad_cam to [0, 1] (0 everywhere when
        no region supports the class), upsampled to the input size.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images = _check_images(images)
    if int(batch_size) < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    step = int(batch_size)
    candidates, n_outputs = _probe(model, images)
    target = _choose_layer(model, candidates, layer)
    classes = _check_targets(target_classes, len(images), n_outputs)
    reshape = _channels_last_to_first if target.channels_last else None
    params = list(model.parameters())
    saved_grads = [p.grad for p in params]  # GradCAM zeroes and refills them; give the caller theirs back
    maps = []
    with _eval_mode(model), _autograd_on():
        cam = _scale_free_gradcam()(model=model, target_layers=[target.module], reshape_transform=reshape)
        try:
            for start in range(0, len(images), step):
                chunk = images[start:start + step].detach().clone().requires_grad_(True)
                targets = None if classes is None else [ClassifierOutputTarget(c) for c in classes[start:start + step]]
                maps.append(cam(input_tensor=chunk, targets=targets))
        finally:
            cam.activations_and_grads.release()
            cam.outputs = None
            for p, grad in zip(params, saved_grads):
                p.grad = grad
    heatmaps = np.concatenate(maps, axis=0).astype(np.float32)  # (B, H, W)
    if heatmaps.shape != (len(images), *images.shape[2:]):
        raise DiffractNetError(f"Grad-CAM returned shape {heatmaps.shape}, expected "
                               f"{(len(images), *images.shape[2:])}")
    if not np.isfinite(heatmaps).all():
        raise DiffractNetError(f"Grad-CAM at layer '{target.name}' gave NaN or inf; check the model's outputs")
    return np.clip(heatmaps, 0.0, 1.0)


def save_overlay(image: np.ndarray, heatmap: np.ndarray, path: str | Path, title: str | None = None,
                 alpha: float = 0.45) -> Path:
    """Save a PNG of a pattern in gray with its heatmap overlaid (jet, ``alpha``) and a colour bar.

    ``image`` and ``heatmap`` are ``(H, W)`` arrays (``heatmap`` as from :func:`gradcam_heatmaps`); the
    image is shown min-max scaled. Written atomically; returns the path.
    """
    image = _as_2d(image, "image")
    heatmap = _as_2d(heatmap, "heatmap")
    if image.shape != heatmap.shape:
        raise DataError(f"image {image.shape} and heatmap {heatmap.shape} must have the same (H, W) shape")
    if not 0.0 <= alpha <= 1.0:
        raise DataError(f"alpha must be in [0, 1], got {alpha}")
    span = float(image.max() - image.min())
    gray = (image - image.min()) / span if span > 0 else np.zeros_like(image)
    fig = new_figure(5.0, 4.3)
    ax = fig.add_subplot()
    ax.imshow(gray, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    low, high = (0.0, 1.0) if heatmap.min() >= 0 and heatmap.max() <= 1 else (heatmap.min(), heatmap.max())
    overlay = ax.imshow(heatmap, cmap="jet", alpha=alpha, vmin=low, vmax=high, interpolation="bilinear")
    colour_bar = fig.colorbar(overlay, ax=ax, label="Grad-CAM importance")
    colour_bar.solids.set_alpha(1.0)  # an opaque scale, though the overlay itself is translucent
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return save_figure_atomic(fig, path)


def _scale_free_gradcam() -> type:
    """``GradCAM`` whose raw maps are divided by their peak before pytorch_grad_cam rescales them.

    pytorch_grad_cam min-max scales each map as ``(cam - min) / (max + 1e-7)``: an absolute epsilon, so
    a model with small activations (random weights, heavy normalisation) gets maps squashed towards 0.
    Dividing each raw map by its largest magnitude first changes nothing else.
    """
    from pytorch_grad_cam import GradCAM

    class ScaleFreeGradCAM(GradCAM):
        def get_cam_image(self, *args, **kwargs) -> np.ndarray:
            cam = super().get_cam_image(*args, **kwargs)  # (B, h, w) weighted activation sums
            peak = np.abs(cam).reshape(len(cam), -1).max(axis=1)
            return cam / np.where(peak > 0, peak, 1.0)[:, None, None]

    return ScaleFreeGradCAM


def _probe(model: nn.Module, images: torch.Tensor) -> tuple[list[TargetLayer], int]:
    """Run ``images[:1]`` through the model; return the qualifying layers (in finishing order) and n_outputs."""
    channels_last = getattr(model, "output_fmt", "NCHW") == "NHWC"
    names = {module: name for name, module in model.named_modules() if name}
    calls: Counter = Counter()
    seen: list[tuple[nn.Module, torch.Tensor]] = []

    def record(module: nn.Module, _inputs, output) -> None:
        calls[module] += 1
        if isinstance(output, torch.Tensor) and output.ndim == 4 and output.requires_grad:
            height, width = output.shape[1:3] if channels_last else output.shape[2:4]
            if height * width > 1:
                seen.append((module, output))

    handles = [module.register_forward_hook(record) for module in names]
    try:
        with _eval_mode(model), _autograd_on():
            logits = model(images[:1].detach().clone().requires_grad_(True))
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                raise DiffractNetError(f"Grad-CAM needs a classifier returning (B, n_classes) logits; "
                                       f"{type(model).__name__} returned {_describe(logits)}")
            grads = torch.autograd.grad(logits.sum(), [out for _, out in seen], allow_unused=True) if seen else []
    finally:
        for handle in handles:
            handle.remove()
    layers = [TargetLayer(names[module], module, channels_last)
              for (module, _), grad in zip(seen, grads) if grad is not None and calls[module] == 1]
    return layers, int(logits.shape[1])


def _choose_layer(model: nn.Module, candidates: list[TargetLayer], layer: str | None) -> TargetLayer:
    """The named candidate layer, or the last one when ``layer`` is None."""
    if layer is None:
        if not candidates:
            raise DiffractNetError(f"no layer of {type(model).__name__} outputs a 4-D feature map with "
                                   "spatial size > 1 that the logits depend on; Grad-CAM needs one")
        return candidates[-1]
    for candidate in candidates:
        if candidate.name == layer:
            return candidate
    options = ", ".join(c.name for c in candidates[-5:]) or "none"
    raise DiffractNetError(f"layer '{layer}' is not a usable Grad-CAM layer of {type(model).__name__} "
                           f"(needs a 4-D feature map the logits depend on); last usable: {options}")


def _check_images(images: torch.Tensor) -> torch.Tensor:
    """A non-empty, finite ``(B, C, H, W)`` float tensor."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        raise DataError(f"images must be a non-empty (B, C, H, W) torch tensor, got {_describe(images)}")
    if not images.is_floating_point():
        raise DataError(f"images must be floating point, got dtype {images.dtype}")
    if not torch.isfinite(images).all():
        raise DataError("images contain NaN or inf")
    return images


def _check_targets(target_classes: Sequence[int] | None, n_images: int, n_outputs: int) -> list[int] | None:
    """Target column indices, one per image, each in [0, n_outputs)."""
    if target_classes is None:
        return None
    classes = [int(c) for c in target_classes]
    if len(classes) != n_images:
        raise DataError(f"target_classes has {len(classes)} entries for {n_images} images; give one per image")
    bad = [c for c in classes if not 0 <= c < n_outputs]
    if bad:
        raise DataError(f"target_classes must be column indices in [0, {n_outputs}), got {bad[:5]}")
    return classes


def _channels_last_to_first(features: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) → (B, C, H, W), the layout pytorch_grad_cam expects."""
    return features.permute(0, 3, 1, 2)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode, then give every submodule back its own train/eval state."""
    states = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in states.items():
            module.training = training


@contextmanager
def _autograd_on() -> Iterator[None]:
    """Gradients on, even inside a caller's ``torch.no_grad()`` or ``torch.inference_mode()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def _as_2d(array: np.ndarray, what: str) -> np.ndarray:
    """A finite ``(H, W)`` float array."""
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2 or 0 in array.shape:
        raise DataError(f"{what} must be a non-empty (H, W) array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise DataError(f"{what} contains NaN or inf")
    return array


def _describe(value) -> str:
    """Type and shape of a value, for error messages."""
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else type(value).__name__
