"""A small CNN baseline: four conv blocks, global average pooling, a linear head. Any input size."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv(k)-BN-ReLU ×2 + max-pool, four times (widths ``width``·(1, 2, 4, 8)), then GAP → dropout → linear.

    ``in_chans`` input channels; ``num_classes`` outputs; ``kernel_size`` of every conv (odd).
    ``head``: ``"gap"`` (global average pooling: any input size, position-blind, right for classes) or
    ``"flatten"`` (the 1/8-size feature map flattened into a hidden layer of ``hidden`` units: keeps
    where spots are, right for orientation regression; needs ``image_size``).
    ``convs_per_stage`` convs per stage; ``strided``: every stage (the first too) starts with a stride-2
    conv instead of ending with max-pooling — the light variant (~4 M multiply-adds at 64 px, width 16,
    one conv per stage) for scanning hundreds of thousands of patterns on a CPU; its feature map is 1/16.
    """

    def __init__(self, in_chans: int = 1, num_classes: int = 10, width: int = 16, kernel_size: int = 3,
                 dropout: float = 0.2, head: str = "gap", image_size: int | None = None, hidden: int = 256,
                 convs_per_stage: int = 2, strided: bool = False) -> None:
        super().__init__()
        pad = kernel_size // 2
        layers: list[nn.Module] = []
        channels = in_chans
        for i in range(4):
            out = width * 2**i
            for j in range(convs_per_stage):
                stride = 2 if strided and j == 0 else 1
                layers += [nn.Conv2d(channels if j == 0 else out, out, kernel_size, stride=stride, padding=pad,
                                     bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if i < 3 and not strided:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        if head == "gap":
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                      nn.Linear(channels, num_classes))
        elif head == "flatten" and image_size and image_size % (16 if strided else 8) == 0:
            cells = (image_size // (16 if strided else 8)) ** 2
            self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * cells, hidden),
                                      nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
        else:
            raise ValueError(f"head must be 'gap', or 'flatten' with an image size divisible by 8 (16 if strided) (got {head!r}, "
                             f"image_size={image_size})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) → (B, num_classes)."""
        return self.head(self.features(x))
