"""Shared fixtures: one thread per test process, a dataset cache inside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("ALGOSPEED_CACHE", str(REPO / ".pytest_cache" / "algospeed-data"))
torch.set_num_threads(1)


@pytest.fixture
def tiny_loader() -> object:
    """A small learnable classification problem held in memory."""
    from algospeed.core.data import InMemoryLoader

    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(96, 8, generator=generator)
    targets = (inputs[:, 0] > 0).long()
    return InMemoryLoader(inputs, targets, batch_size=16, seed=0)
