from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from algospeed.core import trainer as trainer_module
from algospeed.core.callback import Callback, Method
from algospeed.core.data import InMemoryLoader
from algospeed.core.events import Event
from algospeed.core.trainer import Trainer
from algospeed.errors import DivergenceError, UsageError
from algospeed.taxonomy.axes import How, Place, What, When, Where


def make_trainer(loader, budget="3ep", seed=0, callbacks=(), **kwargs) -> Trainer:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))
    return Trainer(
        model,
        loader,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        budget=budget,
        eval_data=loader,
        seed=seed,
        device="cpu",
        callbacks=callbacks,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("budget", "steps"),
    [("7ba", 7), ("2ep", 12), ("100sp", 7), ("2.5ep", 15)],  # 96 samples, batches of 16
)
def test_the_budget_in_any_count_unit_stops_at_the_right_step(tiny_loader, budget: str, steps: int) -> None:
    result = make_trainer(tiny_loader, budget).fit()
    assert result.status == "completed"
    assert result.final.step == steps
    assert result.final.progress == 1.0


def test_a_flop_budget_stops_once_the_counted_flops_reach_it(tiny_loader) -> None:
    per_step = make_trainer(tiny_loader, "1ba").fit().final.flops
    result = make_trainer(tiny_loader, f"{per_step * 4.5}flop").fit()
    assert result.final.step == 5
    assert result.final.flops == pytest.approx(5 * per_step)


def test_flops_are_counted_once_per_step_shape_and_match_flop_counter_mode(tiny_loader) -> None:
    trainer = make_trainer(tiny_loader, "2ep")
    result = trainer.fit()
    assert len(trainer.state.flops.cache) == 1
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(torch.randn(16, 8)), torch.zeros(16, dtype=torch.long)).backward()
    assert counter.get_total_flops() > 0
    assert result.final.flops == 12 * counter.get_total_flops()


def test_flops_are_recounted_when_the_batch_shape_changes(tiny_loader) -> None:
    class HalveBatchAfterFirstEpoch(Callback):
        def on_after_dataloader(self, state) -> None:
            if state.clock.epoch >= 1:
                state.batch = state.batch.select(torch.arange(8))

    trainer = make_trainer(tiny_loader, "2ep", callbacks=[HalveBatchAfterFirstEpoch()])
    result = trainer.fit()
    full, half = sorted(trainer.state.flops.cache.values(), reverse=True)
    assert full == pytest.approx(2 * half)
    assert result.final.flops == pytest.approx(6 * full + 6 * half)
    assert result.final.samples == 192  # samples drawn from the loader, not the trimmed batch


class Recorder(Callback):
    def __init__(self, tag: str, log: list[str]) -> None:
        self.tag, self.log = tag, log

    def handlers(self):
        return {event: (lambda state, e=event: self.log.append(f"{e.value}:{self.tag}")) for event in Event}


def test_events_fire_in_step_order_and_after_events_unwind_in_reverse(tiny_loader) -> None:
    log: list[str] = []
    make_trainer(tiny_loader, "1ba", callbacks=[Recorder("a", log), Recorder("b", log)]).fit()
    events = [entry.split(":")[0] for entry in log if entry.endswith(":a")]
    assert events == [
        "init",
        "fit_start",
        "epoch_start",
        "after_dataloader",
        "before_forward",
        "after_forward",
        "before_loss",
        "after_loss",
        "before_backward",
        "after_backward",
        "before_optimizer_step",
        "after_optimizer_step",
        "batch_end",
        "eval_start",
        "eval_end",
        "fit_end",
    ]
    assert log[log.index("before_forward:a") + 1] == "before_forward:b"
    assert log[log.index("after_forward:b") + 1] == "after_forward:a"
    assert log[log.index("batch_end:b") + 1] == "batch_end:a"


def test_same_seed_gives_the_same_curve_and_another_seed_does_not(tiny_loader) -> None:
    def curve(seed: int) -> list[tuple]:
        result = make_trainer(tiny_loader, "4ep", seed=seed, eval_interval="1ep").fit()
        return [(p.step, p.samples, p.flops, p.train_loss, p.metrics["accuracy"]) for p in result.points]

    first = curve(0)
    assert len(first) == 4
    assert curve(0) == first
    assert curve(1) != first


def test_eval_interval_in_another_unit_and_as_a_fraction(tiny_loader) -> None:
    steps = [p.step for p in make_trainer(tiny_loader, "3ep", eval_interval="5ba").fit().points]
    assert steps == [5, 10, 15, 18]
    steps = [p.step for p in make_trainer(tiny_loader, "20ba", eval_interval="0.25dur").fit().points]
    assert steps == [5, 10, 15, 20]


def test_learning_rate_warms_up_then_decays_to_zero_by_the_end_of_any_budget(tiny_loader) -> None:
    rates: list[float] = []

    class LogRate(Callback):
        def on_before_optimizer_step(self, state) -> None:
            rates.append(state.optimizer.param_groups[0]["lr"])

    make_trainer(tiny_loader, "50ba", callbacks=[LogRate()]).fit()
    peak = rates.index(max(rates))
    assert peak <= 2
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :], strict=False))
    assert rates[-1] == pytest.approx(0.1 * (1 / 50) / 0.98, rel=1e-6)  # one step before zero


def test_training_seconds_exclude_evaluation(tiny_loader, monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: now[0])

    class FakeWork(Callback):
        def on_after_dataloader(self, state) -> None:
            now[0] += 1.0

        def on_eval_start(self, state) -> None:
            now[0] += 1000.0

    result = make_trainer(tiny_loader, "3ep", eval_interval="1ep", callbacks=[FakeWork()]).fit()
    assert [p.train_seconds for p in result.points] == [6.0, 12.0, 18.0]


def test_a_wall_clock_budget_stops_when_training_seconds_reach_it(tiny_loader, monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: now[0])

    class Tick(Callback):
        def on_after_dataloader(self, state) -> None:
            now[0] += 0.5

    result = make_trainer(tiny_loader, "4s", callbacks=[Tick()]).fit()
    assert result.final.step == 8
    assert result.final.train_seconds == 4.0


def test_a_non_finite_loss_is_a_clear_error(tiny_loader) -> None:
    trainer = make_trainer(tiny_loader, "2ep", loss_fn=lambda out, y: out.sum() * float("nan"))
    with pytest.raises(DivergenceError, match="non-finite"):
        trainer.fit()


def test_a_batch_larger_than_the_data_is_a_usage_error() -> None:
    loader = InMemoryLoader(torch.randn(10, 8), torch.zeros(10, dtype=torch.long), batch_size=32)
    with pytest.raises(UsageError, match="larger than the 10 training samples"):
        make_trainer(loader, "1ep").fit()


def _method(name: str, conflicts=frozenset(), requires=frozenset()) -> Method:
    cls = type(
        f"M_{name}",
        (Method,),
        {
            "name": name,
            "conflicts": conflicts,
            "requires": requires,
            "place": Place((Where.DATA,), (What.REMOVE,), How.CHEAPER_STEPS, (When.THROUGHOUT,)),
        },
    )
    return cls()


def test_conflicting_repeated_or_incomplete_methods_fail_up_front_naming_both(tiny_loader) -> None:
    with pytest.raises(UsageError, match="'a' and 'b' cannot be combined"):
        make_trainer(tiny_loader, callbacks=[_method("a", conflicts=frozenset({"b"})), _method("b")])
    with pytest.raises(UsageError, match="'a' and 'b' cannot be combined"):
        make_trainer(tiny_loader, callbacks=[_method("b"), _method("a", conflicts=frozenset({"b"}))])
    with pytest.raises(UsageError, match="listed twice"):
        make_trainer(tiny_loader, callbacks=[_method("a"), _method("a")])
    with pytest.raises(UsageError, match="'c' needs 'd'"):
        make_trainer(tiny_loader, callbacks=[_method("c", requires=frozenset({"d"}))])


def test_a_method_without_a_taxonomy_place_is_rejected() -> None:
    with pytest.raises(TypeError, match="taxonomy"):
        type("Placeless", (Method,), {})
