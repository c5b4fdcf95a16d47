"""The plain-function API in a hand-written loop, as a user with their own trainer would use it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import algospeed.functional as functional
from algospeed.workloads.models import SmallResNet


def test_a_hand_written_loop_composes_the_plain_functions() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = SmallResNet(width=8)
    functional.apply_blurpool(model)
    functional.apply_stochastic_depth(model, 0.2)
    average = functional.averaged_copy(model)
    optimizer = functional.lion(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)
    inputs, targets = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    losses, sizes = [], []
    for step in range(6):
        resized = functional.progressive_resize(inputs, step / 6, 0.5, 0.2, 4)
        sizes.append(resized.shape[-1])
        mixed, soft = functional.mixup_batch(resized, targets, 10, alpha=0.4, generator=generator)
        assert torch.allclose(soft.sum(dim=1), torch.ones(16))
        loss = F.cross_entropy(model(mixed), functional.smooth_labels(soft, 10, 0.1))
        loss.backward()
        functional.clip_gradients(model.parameters(), "norm", 1.0)
        optimizer.step()
        optimizer.zero_grad()
        functional.ema_update(average, model, 0.9)
        losses.append(loss.item())
    assert sizes[0] < sizes[-1] == 28 and all(torch.isfinite(torch.tensor(losses)))
    changed = [not torch.equal(a, b) for a, b in zip(average.parameters(), model.parameters(), strict=True)]
    assert any(changed)  # the average lags the model


def test_every_exported_name_resolves_to_a_documented_function() -> None:
    for name in functional.__all__:
        assert (getattr(functional, name).__doc__ or "").strip(), name
