"""Budget-aware schedule methods (linear_decay, cosine_schedule, one_cycle, wsd_schedule,
step_schedule): each multiplier's start, peak and end, its monotonicity, and the learning rate a
real run applies following it at two budgets."""

from __future__ import annotations

import itertools
import math

import pytest

from algospeed.core.callback import Callback, check_composition
from algospeed.core.schedules import WarmupLinearDecay
from algospeed.errors import UsageError
from algospeed.methods.shared.schedules import (
    Cosine,
    OneCycle,
    StepDecay,
    WarmupStableDecay,
    parse_milestones,
)
from algospeed.methods.spec import MethodSpec, build_method, parse_methods
from algospeed.run_spec import RunSpec, build_trainer
from method_harness import assert_resumes_exactly

GRID = [i / 1000 for i in range(1001)]


def values(schedule, start: float = 0.0, end: float = 1.0) -> list[float]:
    return [schedule(p) for p in GRID if start <= p <= end]


def non_increasing(xs: list[float]) -> bool:
    return all(b <= a + 1e-12 for a, b in itertools.pairwise(xs))


def non_decreasing(xs: list[float]) -> bool:
    return all(b >= a - 1e-12 for a, b in itertools.pairwise(xs))


# ------------------------------------------------------------------------- the plain schedules
@pytest.mark.parametrize(
    ("schedule", "peak", "end"),
    [
        (WarmupLinearDecay(warmup=0.05), 0.05, 0.0),
        (Cosine(warmup=0.05), 0.05, 0.0),
        (Cosine(warmup=0.05, final=0.1), 0.05, 0.1),
        (OneCycle(peak_at=0.3), 0.3, 4e-6),
        (OneCycle(peak_at=0.4, anneal="linear"), 0.4, 4e-6),
        (WarmupStableDecay(warmup=0.05), 0.05, 0.0),
        (WarmupStableDecay(warmup=0.05, shape="sqrt", final=0.01), 0.05, 0.01),
        (WarmupStableDecay(warmup=0.05, shape="exp"), 0.05, 0.0),
        (StepDecay(milestones=(0.5, 0.75), gamma=0.1, warmup=0.05), 0.05, 0.01),
    ],
)
def test_each_schedule_ramps_to_one_at_its_peak_then_only_decreases_to_its_end(schedule, peak, end) -> None:
    assert schedule(0.0) < 0.05  # starts low: warmup or the cycle's start
    assert schedule(peak) == pytest.approx(1.0)
    assert max(values(schedule)) == pytest.approx(1.0)
    assert schedule(1.0) == pytest.approx(end, abs=1e-9)
    assert non_decreasing(values(schedule, 0.0, peak))
    assert non_increasing(values(schedule, peak, 1.0))


def test_cosine_passes_halfway_between_peak_and_final_at_the_middle_of_its_decay() -> None:
    schedule = Cosine(warmup=0.1, final=0.2)
    assert schedule(0.55) == pytest.approx(0.6)
    assert schedule(0.1 + 0.9 / 4) == pytest.approx(0.2 + 0.8 * (1 + math.cos(math.pi / 4)) / 2)


def test_one_cycle_starts_at_start_and_ends_far_below_it() -> None:
    schedule = OneCycle(peak_at=0.25, start=0.1, end=1e-3, anneal="linear")
    assert schedule(0.0) == pytest.approx(0.1)
    assert schedule(0.125) == pytest.approx(0.55)  # linear ramp
    assert schedule(0.625) == pytest.approx((1 + 1e-3) / 2)  # linear anneal
    assert OneCycle()(1.0) < OneCycle()(0.0) / 1000


def test_wsd_is_flat_until_its_decay_and_the_decay_shapes_differ() -> None:
    shapes = {
        shape: WarmupStableDecay(warmup=0.1, decay_fraction=0.25, shape=shape) for shape in ("linear", "sqrt", "exp")
    }
    for schedule in shapes.values():
        assert set(values(schedule, 0.1, 0.75)) == {1.0}
        assert schedule(0.8) < 1.0
    middle = 0.875
    assert shapes["linear"](middle) == pytest.approx(0.5)
    assert shapes["sqrt"](middle) == pytest.approx(1 - math.sqrt(0.5))
    assert shapes["exp"](middle) < shapes["sqrt"](middle) < shapes["linear"](middle)


def test_step_schedule_drops_by_gamma_exactly_at_each_milestone() -> None:
    schedule = StepDecay(milestones=parse_milestones("0.4/0.6/0.9"), gamma=0.5)
    assert schedule(0.399) == 1.0 and schedule(0.4) == 0.5
    assert schedule(0.6) == 0.25 and schedule(0.9) == 0.125 and schedule(1.0) == 0.125
    assert parse_milestones("0.5/0.75") == (0.5, 0.75)


# --------------------------------------------------------------------------- in a real run
class LrRecorder(Callback):
    """The learning rate each step applies, as a multiple of the base rate, with the progress then."""

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def on_before_optimizer_step(self, state) -> None:
        group = state.optimizer.param_groups[0]
        self.points.append((state.progress, group["lr"] / group["initial_lr"]))


def recorded_run(methods: str, budget: str) -> tuple[list[tuple[float, float]], object]:
    recorder = LrRecorder()
    trainer = build_trainer(
        RunSpec(workload="digits", budget=budget, methods=methods, eval_interval="1dur", device="cpu"),
        callbacks=[recorder],
    )
    trainer.fit()
    return recorder.points, trainer.state.schedule


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        ("linear_decay:warmup=0.1", WarmupLinearDecay(warmup=0.1)),
        ("cosine_schedule:warmup=0.1:final=0.05", Cosine(warmup=0.1, final=0.05)),
        ("one_cycle:peak_at=0.25", OneCycle(peak_at=0.25)),
        ("wsd_schedule:decay_fraction=0.5", WarmupStableDecay(decay_fraction=0.5)),
        ("step_schedule:milestones=0.5/0.75:gamma=0.2", StepDecay(milestones=(0.5, 0.75), gamma=0.2)),
    ],
)
def test_the_applied_learning_rate_follows_the_schedule_and_rescales_with_the_budget(methods, expected) -> None:
    for steps in (20, 40):
        points, schedule = recorded_run(methods, f"{steps}ba")
        assert schedule == expected
        assert [p for p, _ in points] == pytest.approx([i / steps for i in range(steps)])
        assert [m for _, m in points] == pytest.approx([expected(i / steps) for i in range(steps)])
        # The shape sits at the same fraction of any budget: the peak at the same fraction of steps,
        # the last step close to the end value.
        peak_step = max(range(steps), key=lambda i: points[i][1])
        assert peak_step / steps == pytest.approx(max(range(40), key=lambda i: expected(i / 40)) / 40, abs=0.05)
        assert points[-1][1] == pytest.approx(expected(1.0), abs=0.12)


def test_the_default_schedule_method_is_the_trainers_default() -> None:
    points, _ = recorded_run("linear_decay", "20ba")
    baseline, _ = recorded_run("", "20ba")
    assert points == baseline
    assert points[-1][1] == pytest.approx(1 / 20 / 0.98)  # one step from zero at the end


# --------------------------------------------------------------------------- composition, resume
@pytest.mark.parametrize(
    "methods", ["cosine_schedule,wsd_schedule", "one_cycle,step_schedule", "linear_decay,schedule_free"]
)
def test_schedules_conflict_with_each_other_and_with_schedule_free(methods: str) -> None:
    with pytest.raises(UsageError, match="cannot be combined"):
        check_composition([build_method(spec) for spec in parse_methods(methods)])


def test_a_schedule_composes_with_an_optimizer_replacement() -> None:
    points, schedule = recorded_run("lion,cosine_schedule", "12ba")
    assert isinstance(schedule, Cosine) and points[-1][1] == pytest.approx(Cosine()(11 / 12))


@pytest.mark.parametrize(
    "methods", ["linear_decay", "cosine_schedule", "one_cycle", "wsd_schedule:shape=sqrt", "step_schedule"]
)
def test_schedule_methods_resume_exactly(methods: str, tmp_path) -> None:
    assert_resumes_exactly(methods, tmp_path, budget="1ep")


# -------------------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("linear_decay", {"warmup": 1.0}, r"warmup must be a fraction of the budget in \[0, 1\)"),
        ("cosine_schedule", {"final": 1.5}, "final must be a fraction"),
        ("one_cycle", {"peak_at": -0.1}, "peak_at must be a fraction"),
        ("one_cycle", {"anneal": "exp"}, "anneal must be 'cos' or 'linear'"),
        ("wsd_schedule", {"decay_fraction": 0.0}, "decay_fraction must be a fraction"),
        ("wsd_schedule", {"warmup": 0.5, "decay_fraction": 0.6}, "together exceed the budget"),
        ("wsd_schedule", {"shape": "cubic"}, "shape must be"),
        ("step_schedule", {"milestones": "0.75/0.5"}, "milestones must increase"),
        ("step_schedule", {"milestones": "half"}, "separated by '/'"),
        ("step_schedule", {"milestones": "0.5/1.2"}, "each milestone must be a fraction"),
        ("step_schedule", {"gamma": 0.0}, r"gamma must be in \(0, 1\]"),
    ],
)
def test_bad_settings_are_usage_errors(name: str, settings: dict, message: str) -> None:
    with pytest.raises(UsageError, match=f"method '{name}': .*{message}"):
        build_method(MethodSpec(name=name, settings=settings))
