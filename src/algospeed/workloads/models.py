"""The embedded workloads' models: small, but with the parts methods act on (residual blocks,
batch norm, strided convolutions, pooling that accepts any input size)."""

from __future__ import annotations

import math

import torch
from torch import nn


class Mnist1dCNN(nn.Module):
    """A 1D CNN for mnist1d; adaptive pooling lets it take shorter signals (progressive resizing)."""

    def __init__(self, channels: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, 2 * channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(2 * channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(5),
        )
        self.head = nn.Linear(10 * channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class ResidualBlock(nn.Module):
    """conv-bn-relu-conv-bn plus a shortcut: `residual` and `shortcut` are separate so that methods
    such as stochastic depth can drop the residual branch."""

    def __init__(self, inputs: int, outputs: int, stride: int = 1) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(),
            nn.Conv2d(outputs, outputs, 3, padding=1, bias=False),
            nn.BatchNorm2d(outputs),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs)
            )
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.shortcut(x) + self.residual(x))


class SmallResNet(nn.Module):
    """A small residual CNN for 28x28 digits: stem, three stages of residual blocks, global pooling.

    Each stage has `blocks_per_stage` blocks: the first changes width and stride, the others keep the
    shape (what progressive growing adds and removes)."""

    def __init__(self, width: int = 16, classes: int = 10, in_channels: int = 1, blocks_per_stage: int = 1) -> None:
        super().__init__()
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be at least 1, got {blocks_per_stage}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        blocks = []
        for inputs, outputs, stride in ((width, width, 1), (width, 2 * width, 2), (2 * width, 4 * width, 2)):
            blocks.append(ResidualBlock(inputs, outputs, stride=stride))
            blocks.extend(ResidualBlock(outputs, outputs) for _ in range(blocks_per_stage - 1))
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.blocks(self.stem(x))).flatten(1))


class SmallCNN(nn.Module):
    """A two-layer CNN for 8x8 digits."""

    def __init__(self, width: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(8 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class MLP(nn.Module):
    """Flatten, one hidden layer: a model for inputs of any shape."""

    def __init__(self, shape: tuple[int, ...], hidden: int, classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(shape), hidden), nn.ReLU(), nn.Linear(hidden, classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
