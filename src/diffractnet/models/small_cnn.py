"""A small CNN baseline: four conv blocks, global average pooling, a linear head. Any input size."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv(k)-BN-ReLU ×2 + max-pool, four times (widths ``width``·(1, 2, 4, 8)), then GAP → dropout → linear.

    ``in_chans`` input channels; ``num_classes`` outputs; ``kernel_size`` of every conv (odd).
    """

    def __init__(self, in_chans: int = 1, num_classes: int = 10, width: int = 16, kernel_size: int = 3,
                 dropout: float = 0.2) -> None:
        super().__init__()
        pad = kernel_size // 2
        layers: list[nn.Module] = []
        channels = in_chans
        for i in range(4):
            out = width * 2**i
            layers += [nn.Conv2d(channels, out, kernel_size, padding=pad, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True), nn.Conv2d(out, out, kernel_size, padding=pad, bias=False),
                       nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) → (B, num_classes)."""
        return self.head(self.features(x))
