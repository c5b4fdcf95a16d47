"""EMA and SWA: the averaged weights follow their formulas, evaluation uses them, exact resume, bad settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from algospeed.core.callback import Callback, check_composition
from algospeed.core.data import DatasetLoader
from algospeed.core.metrics import CROSS_ENTROPY, evaluate
from algospeed.core.trainer import Trainer
from algospeed.errors import UsageError
from algospeed.methods.optimization.ema import EMA, ema_update, half_life_decay
from algospeed.methods.optimization.swa import SWA, SWASchedule, recompute_batchnorm, swa_update, training_batches
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.run_spec import RunSpec, build_trainer
from method_harness import assert_resumes_exactly


class Probe(Callback):
    """Runs the given functions at the named events (`after_optimizer_step=fn`, ...)."""

    def __init__(self, **handlers: Callable[[Any], None]) -> None:
        for event, handler in handlers.items():
            setattr(self, f"on_{event}", handler)


def digits_trainer(methods: str, budget: str, *callbacks: Callback, **spec: Any) -> Trainer:
    trainer = build_trainer(
        RunSpec(workload="digits", budget=budget, methods=methods, device="cpu", **spec), callbacks=callbacks
    )
    trainer.metrics = [CROSS_ENTROPY]  # a continuous metric, so that two models' evaluations differ
    return trainer


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def assert_evaluation_uses(trainer: Trainer, average: nn.Module) -> None:
    assert trainer.state.eval_model is average
    final = trainer.state.curve[-1].metrics["loss"]
    assert final == evaluate(average, trainer.eval_data, [CROSS_ENTROPY], "cpu")["loss"]
    assert final != evaluate(trainer.state.model, trainer.eval_data, [CROSS_ENTROPY], "cpu")["loss"]


# ----------------------------------------------------------------------------------------------- EMA
@pytest.mark.parametrize(
    ("methods", "budget", "decay"),
    [("ema:decay=0.9", "6ba", 0.9), ("ema:half_life=0.25", "4ba", 0.5)],  # a step is 1/4 of the budget
)
def test_ema_follows_the_formula_and_is_what_evaluation_uses(methods: str, budget: str, decay: float) -> None:
    snapshots: list[dict[str, torch.Tensor]] = []
    probe = Probe(
        fit_start=lambda s: snapshots.append(weights(s.model)),
        after_optimizer_step=lambda s: snapshots.append(weights(s.model)),
    )
    trainer = digits_trainer(methods, budget, probe)
    trainer.fit()
    (ema,) = [c for c in trainer.callbacks if isinstance(c, EMA)]
    expected = snapshots[0]
    for current in snapshots[1:]:
        expected = {
            key: decay * value + (1 - decay) * current[key] if value.is_floating_point() else current[key]
            for key, value in expected.items()
        }
    average = ema.average.state_dict()
    assert average.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(average[key], value, msg=key)
    assert any("running_mean" in key for key in expected)  # batch-norm statistics are averaged too
    assert not torch.allclose(average["head.weight"], trainer.state.model.state_dict()["head.weight"])
    assert_evaluation_uses(trainer, ema.average)


def test_ema_update_and_half_life_decay() -> None:
    model, average = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.running_mean.fill_(1.0)
    model.num_batches_tracked.fill_(7)
    ema_update(average, model, decay=0.75)
    torch.testing.assert_close(average.weight, torch.full((2,), 0.75 * 1.0 + 0.25 * 3.0))
    torch.testing.assert_close(average.running_mean, torch.full((2,), 0.25))
    assert average.num_batches_tracked.item() == 7
    assert half_life_decay(0.1, half_life=0.1) == pytest.approx(0.5)
    assert half_life_decay(0.05, half_life=0.1) ** 2 == pytest.approx(0.5)
    with pytest.raises(ValueError, match="different structures"):
        ema_update(nn.Linear(2, 2), nn.Linear(2, 2, bias=False), 0.5)


@pytest.mark.parametrize("methods", ["ema:decay=0.9", "ema:half_life=0.2"])
def test_ema_resumes_exactly(tmp_path: Path, methods: str) -> None:
    assert_resumes_exactly(methods, tmp_path, budget="24ba")


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"decay": "1.0"}, r"decay must be in \[0, 1\)"), ({"half_life": "1.5"}, "half_life is a fraction")],
)
def test_ema_rejects_bad_settings(settings: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=f"method 'ema': {message}"):
        build_method(MethodSpec(name="ema", settings=settings))


def test_ema_and_swa_cannot_be_combined() -> None:
    with pytest.raises(UsageError, match="cannot be combined"):
        check_composition([build_method(MethodSpec(name="ema")), build_method(MethodSpec(name="swa"))])


# ----------------------------------------------------------------------------------------------- SWA
def test_swa_averages_the_late_snapshots_and_evaluation_uses_the_average() -> None:
    # 20 steps, start 0.5, interval 0.1: snapshots after steps 12, 14, 16, 18 and 20
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    rates: list[tuple[float, float]] = []

    def after_step(state: Any) -> None:
        snapshots[state.clock.steps + 1] = weights(state.model)  # the clock counts the step after this

    probe = Probe(
        before_optimizer_step=lambda s: rates.append((s.progress, s.optimizer.param_groups[0]["lr"])),
        after_optimizer_step=after_step,
    )
    trainer = digits_trainer("swa:start=0.5:interval=0.1:swa_lr=0.5", "20ba", probe, eval_interval="4ba")
    trainer.fit()
    (swa,) = [c for c in trainer.callbacks if isinstance(c, SWA)]
    assert swa.count == 5
    chosen = [snapshots[step] for step in (12, 14, 16, 18, 20)]
    average = swa.average.state_dict()
    for name, _ in trainer.state.model.named_parameters():
        torch.testing.assert_close(average[name], torch.stack([s[name] for s in chosen]).mean(0), msg=name)

    # the constant SWA rate (half the base rate) from start on, the base schedule before
    base = trainer.state.schedule.base
    for progress, lr in rates:
        assert lr == pytest.approx(0.05 * (0.5 if progress >= 0.5 else base(progress)))

    # batch-norm statistics were recomputed for the final average, and evaluation used it
    fresh = type(trainer.state.model)()
    fresh.load_state_dict(average)
    recompute_batchnorm(fresh, trainer.train_data.iter_epoch(0))
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(average[key], value, msg=key)
    assert_evaluation_uses(trainer, swa.average)

    # three statistics passes ran (evaluations after steps 12, 16 and 20), one was charged
    (step_kind,) = [k for k in trainer.state.flops.cache if k != "swa_batchnorm_pass"]
    pass_flops = trainer.state.flops.cache["swa_batchnorm_pass"]
    assert pass_flops > 0
    assert trainer.state.clock.flops == pytest.approx(20 * trainer.state.flops.cache[step_kind] + pass_flops)


def test_swa_schedule_modes() -> None:
    def base(progress: float) -> float:
        return 1.0 - progress

    constant = SWASchedule(base, start=0.6, interval=0.2)
    assert constant(0.3) == base(0.3)
    assert constant(0.6) == constant(0.95) == pytest.approx(0.4)  # holds the base's rate at start
    cyclic = SWASchedule(base, start=0.6, interval=0.2, lr_mode="cyclic", swa_lr=0.5, swa_lr_min=0.1)
    assert [cyclic(p) for p in (0.6, 0.7, 0.8, 0.9)] == pytest.approx([0.5, 0.3, 0.5, 0.3])
    assert cyclic(0.7999) == pytest.approx(0.1, abs=1e-3)  # lowest where a snapshot is taken
    assert SWASchedule(base, start=0.6, interval=0.2, lr_mode="keep")(0.9) == base(0.9)


def test_swa_wraps_the_schedule_another_method_sets_at_init_whatever_the_order() -> None:
    def constant(progress: float) -> float:
        return 0.7

    def set_schedule(state: Any) -> None:
        state.schedule = constant

    trainer = digits_trainer("swa:swa_lr=0.2", "4ba", Probe(init=set_schedule))  # runs after swa's init
    trainer.fit()
    assert isinstance(trainer.state.schedule, SWASchedule) and trainer.state.schedule.base is constant
    assert trainer.state.schedule(0.5) == 0.7 and trainer.state.schedule(0.8) == 0.2
    kept = digits_trainer("swa:lr_mode=keep", "4ba", Probe(init=set_schedule))
    kept.fit()
    assert kept.state.schedule is constant


def test_swa_update_keeps_the_running_mean_and_batchnorm_pass() -> None:
    models = [nn.Linear(3, 2) for _ in range(3)]
    average = nn.Linear(3, 2)
    average.load_state_dict(models[0].state_dict())
    for count, model in enumerate(models[1:], start=1):
        swa_update(average, model, count)
    torch.testing.assert_close(average.weight, torch.stack([m.weight for m in models]).mean(0))
    torch.testing.assert_close(average.bias, torch.stack([m.bias for m in models]).mean(0))

    norm = nn.BatchNorm1d(2)
    data = torch.randn(4, 8, 2) * 3 + 1  # four batches of eight
    recompute_batchnorm(norm, [(batch, None) for batch in data])
    torch.testing.assert_close(norm.running_mean, data.reshape(-1, 2).mean(0))
    torch.testing.assert_close(norm.running_var, data.var(dim=1).mean(0))
    assert norm.training and norm.momentum == 0.1


def test_the_statistics_pass_leaves_a_dataset_loaders_epoch_in_flight_alone() -> None:
    dataset = TensorDataset(torch.arange(12.0).unsqueeze(1), torch.zeros(12, dtype=torch.long))
    expected = [batch.inputs for batch in DatasetLoader(dataset, batch_size=4, seed=0).iter_epoch(3)]
    loader = DatasetLoader(dataset, batch_size=4, seed=0, num_workers=1)  # persistent worker
    epoch = loader.iter_epoch(3)
    got = [next(epoch).inputs]
    seen = torch.cat([batch.inputs for batch in training_batches(loader)])  # an evaluation mid-epoch
    got += [batch.inputs for batch in epoch]
    assert torch.equal(seen, torch.arange(12.0).unsqueeze(1))  # every sample, in order
    assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize(
    ("methods", "budget"),
    [
        # snapshots every 6 steps from step 24; an evaluation with a statistics pass at step 44, then the
        # middle checkpoint at step 46
        ("swa:start=0.3:interval=0.1:lr_mode=cyclic:swa_lr=0.5", "60ba"),
        # one snapshot, at step 38, which is also the middle checkpoint: the resumed run must still
        # recompute (and charge) the statistics before the evaluation at step 44
        ("swa:start=0.5:interval=0.26", "50ba"),
    ],
)
def test_swa_resumes_exactly(tmp_path: Path, methods: str, budget: str) -> None:
    trainer = assert_resumes_exactly(methods, tmp_path, budget=budget)
    assert "swa_batchnorm_pass" in trainer.state.flops.cache


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"start": "1.0"}, r"start is a fraction of the budget in \(0, 1\)"),
        ({"start": "0.8", "interval": "0.3"}, r"interval must be in \(0, 1 - start\]"),
        ({"lr_mode": "warm"}, "lr_mode must be one of constant, cyclic, keep; got 'warm'"),
        ({"swa_lr": "0"}, "swa_lr must be positive"),
        ({"swa_lr": "0.1", "swa_lr_min": "0.2"}, r"swa_lr_min must be in \[0, swa_lr\]"),
    ],
)
def test_swa_rejects_bad_settings(settings: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=f"method 'swa': {message}"):
        build_method(MethodSpec(name="swa", settings=settings))
