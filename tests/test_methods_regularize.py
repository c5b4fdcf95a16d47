"""Label smoothing, SAM and gradient clipping: each one's effect, plain function, exact resume and bad settings."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from algospeed.core.batch import Batch
from algospeed.core.callback import Callback
from algospeed.core.trainer import Trainer
from algospeed.errors import UsageError
from algospeed.methods.optimization.gradient_clipping import adaptive_clip_grad_, clip_gradients, unitwise_norm
from algospeed.methods.optimization.label_smoothing import smooth_labels
from algospeed.methods.optimization.sam import sharpness_aware_gradients
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.run_spec import RunSpec, build_trainer
from method_harness import assert_resumes_exactly


class Probe(Callback):
    """Runs the given functions at the named events (`after_loss=fn`, ...)."""

    def __init__(self, **handlers: Callable[[Any], None]) -> None:
        for event, handler in handlers.items():
            setattr(self, f"on_{event}", handler)


def digits_trainer(methods: str, budget: str, *callbacks: Callback, **spec: Any) -> Trainer:
    return build_trainer(
        RunSpec(workload="digits", budget=budget, methods=methods, device="cpu", **spec), callbacks=callbacks
    )


# ----------------------------------------------------------------------------------- label smoothing
def test_label_smoothing_trains_against_the_smoothed_distribution() -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    original: list[torch.Tensor] = []
    probe = Probe(
        after_dataloader=lambda s: original.append(s.batch.targets.clone()),
        after_loss=lambda s: seen.append(
            (s.outputs.detach().clone(), s.batch.targets.clone(), s.loss.detach().clone())
        ),
    )
    digits_trainer("label_smoothing:smoothing=0.2", "3ba", probe).fit()
    assert len(seen) == 3
    for targets, (outputs, smoothed, loss) in zip(original, seen, strict=True):
        assert not torch.is_floating_point(targets) and smoothed.shape == outputs.shape
        torch.testing.assert_close(smoothed.sum(dim=1), torch.ones(len(targets)))
        # torch's own label smoothing is an independent reference for the same objective
        torch.testing.assert_close(loss, F.cross_entropy(outputs, targets, label_smoothing=0.2))
        assert not torch.allclose(loss, F.cross_entropy(outputs, targets))


def test_smooth_labels_takes_indices_or_probabilities_and_commutes_with_mixing() -> None:
    indices = torch.tensor([0, 2, 1])
    expected = torch.full((3, 3), 0.1 / 3) + 0.9 * F.one_hot(indices, 3).float()
    torch.testing.assert_close(smooth_labels(indices, 3, 0.1), expected)

    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5]])
    out = smooth_labels(soft, 3, 0.3)
    torch.testing.assert_close(out, 0.7 * soft + 0.1)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2))

    one_hot = F.one_hot(indices, 3).float()
    mixed = 0.6 * one_hot + 0.4 * one_hot.flip(0)  # MixUp-style soft targets
    torch.testing.assert_close(smooth_labels(mixed, 3, 0.1), 0.6 * expected + 0.4 * expected.flip(0))

    method = build_method(MethodSpec(name="label_smoothing", settings={"smoothing": "0.3"}))
    state = SimpleNamespace(batch=Batch(torch.zeros(2, 5), soft), outputs=torch.zeros(2, 3))
    method.on_before_loss(state)
    torch.testing.assert_close(state.batch.targets, 0.7 * soft + 0.1)


def test_label_smoothing_resumes_exactly(tmp_path: Path) -> None:
    assert_resumes_exactly("label_smoothing", tmp_path, budget="24ba")


@pytest.mark.parametrize("value", ["1.0", "-0.1"])
def test_label_smoothing_rejects_a_smoothing_outside_0_1(value: str) -> None:
    with pytest.raises(UsageError, match=r"method 'label_smoothing': smoothing must be in \[0, 1\)"):
        build_method(MethodSpec(name="label_smoothing", settings={"smoothing": value}))


# ----------------------------------------------------------------------------------------------- SAM
def test_sam_steps_cost_twice_the_flops_and_only_sam_steps_do() -> None:
    plain = digits_trainer("", "4ba")
    plain.fit()
    sam = digits_trainer("sam:interval=2", "4ba")
    sam.fit()
    (plain_key,) = plain.state.flops.cache
    by_tag = {key[2]: flops for key, flops in sam.state.flops.cache.items()}
    assert set(by_tag) == {"sam", ""}
    assert by_tag[""] == plain.state.flops.cache[plain_key]
    assert by_tag["sam"] == pytest.approx(2 * by_tag[""], rel=0.02)
    assert sam.state.clock.flops == pytest.approx(2 * by_tag["sam"] + 2 * by_tag[""])
    assert sam.state.clock.flops == pytest.approx(1.5 * plain.state.clock.flops, rel=0.02)


def test_sam_uses_the_gradient_at_the_perturbed_point() -> None:
    rho = 0.5
    record: dict[str, Any] = {}

    def before_forward(state: Any) -> None:
        record["model"] = copy.deepcopy(state.model)
        record["batch"] = state.batch

    def before_step(state: Any) -> None:
        record["weights"] = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        record["grads"] = [p.grad.clone() for p in state.model.parameters()]

    trainer = digits_trainer(
        f"sam:rho={rho}", "1ba", Probe(before_forward=before_forward, before_optimizer_step=before_step)
    )
    trainer.fit()
    # by hand, on a copy of the model as it was before the step
    model, inputs, targets = record["model"], record["batch"].inputs, record["batch"].targets
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    F.cross_entropy(model(inputs), targets).backward()
    once = {k: v.detach().clone() for k, v in model.state_dict().items()}  # running stats after one pass
    grads = [p.grad.clone() for p in model.parameters()]
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads, strict=True):
            p.add_(rho * g / norm)
            p.grad = None
    F.cross_entropy(model(inputs), targets).backward()
    for used, at_perturbed in zip(record["grads"], [p.grad for p in model.parameters()], strict=True):
        torch.testing.assert_close(used, at_perturbed)
    assert any(not torch.allclose(u, g) for u, g in zip(record["grads"], grads, strict=True))
    # the weights were restored exactly, and batch norm counted the batch once
    for key, value in record["weights"].items():
        reference = start[key] if key in dict(model.named_parameters()) else once[key]
        assert torch.equal(value, reference), key


def test_sharpness_aware_gradients_on_least_squares() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    model = nn.Linear(3, 1, bias=False)
    w = model.weight.detach().clone()

    def gradient(weight: torch.Tensor) -> torch.Tensor:  # of mean((x w^T - y)^2), by hand
        return 2 * ((x @ weight.T - y).T @ x) / len(x)

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out - target) ** 2).mean()

    loss_fn(model(x), y).backward()
    torch.testing.assert_close(model.weight.grad, gradient(w))
    g = gradient(w)
    loss = sharpness_aware_gradients(model, loss_fn, x, y, rho=0.1)
    perturbed = w + 0.1 * g / g.norm()
    torch.testing.assert_close(model.weight.grad, gradient(perturbed))
    torch.testing.assert_close(loss, loss_fn(x @ perturbed.T, y))
    assert torch.equal(model.weight.detach(), w)


def test_sam_resumes_exactly(tmp_path: Path) -> None:
    assert_resumes_exactly("sam:interval=2", tmp_path, budget="24ba")


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"rho": "0"}, "rho must be positive"), ({"interval": "0"}, "interval must be at least 1")],
)
def test_sam_rejects_bad_settings(settings: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=f"method 'sam': {message}"):
        build_method(MethodSpec(name="sam", settings=settings))


# --------------------------------------------------------------------------------- gradient clipping
def clipping(mode: str, threshold: float) -> Any:
    return build_method(MethodSpec(name="gradient_clipping", settings={"mode": mode, "threshold": str(threshold)}))


def test_norm_clipping_rescales_to_the_threshold_and_keeps_small_gradients() -> None:
    model = nn.Linear(3, 2)
    model.weight.grad = torch.tensor([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    model.bias.grad = torch.tensor([0.0, 0.0])  # global norm 5
    clipping("norm", 2.0).on_before_optimizer_step(SimpleNamespace(model=model))
    total = torch.linalg.vector_norm(torch.cat([model.weight.grad.flatten(), model.bias.grad]))
    assert total <= 2.0 + 1e-5
    torch.testing.assert_close(model.weight.grad, torch.tensor([[1.2, 0.0, 0.0], [0.0, 1.6, 0.0]]), atol=1e-5, rtol=0)

    small = torch.tensor([[0.3, 0.0, 0.0], [0.0, 0.4, 0.0]])
    model.weight.grad = small.clone()
    clipping("norm", 2.0).on_before_optimizer_step(SimpleNamespace(model=model))
    assert torch.equal(model.weight.grad, small)


def test_value_clipping_clamps_each_entry() -> None:
    model = nn.Linear(3, 2)
    model.weight.grad = torch.tensor([[3.0, -0.2, -7.0], [0.5, 1.5, -1.0]])
    model.bias.grad = torch.tensor([-2.0, 0.9])
    clipping("value", 1.0).on_before_optimizer_step(SimpleNamespace(model=model))
    assert torch.equal(model.weight.grad, torch.tensor([[1.0, -0.2, -1.0], [0.5, 1.0, -1.0]]))
    assert torch.equal(model.bias.grad, torch.tensor([-1.0, 0.9]))


def test_adaptive_clipping_clips_each_unit_relative_to_its_weight_norm() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.Flatten(), nn.Linear(2, 2))
    conv, linear = model[0], model[2]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 2.0], [0.0, 0.0]]]]))
        linear.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 1.0]]))  # row norms 5 and 1
        linear.bias.copy_(torch.tensor([0.0, 0.0]))  # norm 0 -> eps
    conv.weight.grad = torch.tensor([[[[0.0, 0.5], [0.0, 0.0]]], [[[0.0, 0.01], [0.0, 0.0]]]])
    conv.bias.grad = None
    linear.weight.grad = torch.tensor([[0.3, 0.4], [0.06, 0.08]])  # row norms 0.5 and 0.1
    linear.bias.grad = torch.tensor([0.0, 1.0])
    clipping("adaptive", 0.2).on_before_optimizer_step(SimpleNamespace(model=model))
    # conv channel 0: |G| 0.5 > 0.2 * 1 -> scaled to 0.2; channel 1: |G| 0.01 <= 0.2 * 2 -> unchanged
    torch.testing.assert_close(conv.weight.grad[0], torch.tensor([[[0.0, 0.2], [0.0, 0.0]]]))
    assert torch.equal(conv.weight.grad[1], torch.tensor([[[0.0, 0.01], [0.0, 0.0]]]))
    # linear row 0: |G| 0.5 <= 0.2 * 5 -> unchanged; row 1: |G| 0.1 <= 0.2 * 1 -> unchanged
    assert torch.equal(linear.weight.grad, torch.tensor([[0.3, 0.4], [0.06, 0.08]]))
    # the bias is one unit with weight norm 0, clamped to eps = 1e-3: |G| 1 -> 0.2 * 1e-3
    torch.testing.assert_close(linear.bias.grad.norm(), torch.tensor(0.2e-3))
    norms = unitwise_norm(conv.weight.grad) / unitwise_norm(conv.weight).clamp(min=1e-3)
    assert norms.max() <= 0.2 + 1e-6

    # a row whose gradient is large relative to its own (small) weight norm is the one clipped
    linear.weight.grad = torch.tensor([[0.3, 0.4], [0.6, 0.8]])  # row norms 0.5 and 1.0
    adaptive_clip_grad_(linear.parameters(), clipping=0.2)
    torch.testing.assert_close(linear.weight.grad, torch.tensor([[0.3, 0.4], [0.12, 0.16]]))


def test_norm_clipping_bounds_the_gradient_the_optimizer_sees() -> None:
    raw: list[float] = []
    seen: list[float] = []

    def norm(state: Any) -> float:
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in state.model.parameters()])).item()

    probe = Probe(after_backward=lambda s: raw.append(norm(s)), before_optimizer_step=lambda s: seen.append(norm(s)))
    digits_trainer("gradient_clipping:mode=norm:threshold=0.05", "4ba", probe).fit()
    assert len(raw) == len(seen) == 4
    assert max(raw) > 0.05  # clipping had something to do
    assert max(seen) <= 0.05 * (1 + 1e-4)
    for before, after in zip(raw, seen, strict=True):
        assert after == pytest.approx(min(before, 0.05), rel=1e-4)


def test_clip_gradients_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="mode must be one of norm, value, adaptive"):
        clip_gradients(nn.Linear(2, 2).parameters(), "median")


def test_gradient_clipping_resumes_exactly(tmp_path: Path) -> None:
    assert_resumes_exactly("gradient_clipping:mode=adaptive:threshold=0.05", tmp_path, budget="24ba")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "median"}, "mode must be one of norm, value, adaptive; got 'median'"),
        ({"threshold": "0"}, "threshold must be positive, got 0.0"),
        ({"mode": "value", "threshold": "-1"}, "threshold must be positive, got -1.0"),
    ],
)
def test_gradient_clipping_rejects_bad_settings(settings: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=f"method 'gradient_clipping': {message}"):
        build_method(MethodSpec(name="gradient_clipping", settings=settings))
