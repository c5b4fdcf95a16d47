from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from algospeed.core.clock import Clock
from algospeed.core.units import Amount, Unit, parse_amount, parse_budget
from algospeed.errors import UsageError

BUDGET_UNITS = [u for u in Unit if u is not Unit.DURATION]
WHOLE = {Unit.BATCH, Unit.SAMPLE, Unit.TOKEN}


@given(st.sampled_from(BUDGET_UNITS), st.floats(min_value=1e-3, max_value=1e15, allow_nan=False))
def test_amount_text_round_trips(unit: Unit, value: float) -> None:
    value = float(round(value)) if unit in WHOLE else value
    if value <= 0:
        value = 1.0
    amount = Amount(value, unit)
    parsed = parse_budget(str(amount))
    assert parsed.unit is unit
    assert parsed.value == pytest.approx(value, rel=1e-5)


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("20ep", 20, Unit.EPOCH),
        ("500ba", 500, Unit.BATCH),
        ("3e4sp", 30000, Unit.SAMPLE),
        ("90s", 90, Unit.SECOND),
        ("2.5e12flop", 2.5e12, Unit.FLOP),
        (" 1e6 tok ", 1e6, Unit.TOKEN),
    ],
)
def test_issue_examples_parse(text: str, value: float, unit: Unit) -> None:
    assert parse_budget(text) == Amount(value, unit)


@given(st.text(max_size=12).filter(lambda t: not any(t.strip().endswith(u.value) for u in Unit)))
def test_text_without_a_unit_is_rejected_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(UsageError, match="expected a positive number followed by a unit"):
        parse_budget(text)


@pytest.mark.parametrize("text", ["0ep", "-5ba", "0.0s", "1.5ba", "2.5sp", "20", "ep", "20 epochs", "nanep", "1e400s"])
def test_malformed_or_non_positive_amounts_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_budget(text)


def test_fraction_of_budget_only_for_intervals() -> None:
    assert parse_amount("0.25dur", allow_fraction=True) == Amount(0.25, Unit.DURATION)
    with pytest.raises(UsageError, match="only allowed for intervals"):
        parse_budget("0.5dur")
    with pytest.raises(UsageError, match="at most 1dur"):
        parse_amount("2dur", allow_fraction=True)


@given(
    st.sampled_from(BUDGET_UNITS),
    st.floats(min_value=1, max_value=1e6),
    st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=30),
)
def test_progress_is_monotone_clipped_and_proportional(unit: Unit, budget_value: float, batches: list[int]) -> None:
    budget = Amount(float(round(budget_value)) if unit in WHOLE else budget_value, unit)
    clock = Clock(samples_per_epoch=1000)
    previous = clock.progress(budget)
    assert previous == 0.0
    for size in batches:
        clock.steps += 1
        clock.samples += size
        clock.tokens += 7 * size
        clock.sample_in_epoch += size
        clock.epoch, clock.sample_in_epoch = clock.epoch + clock.sample_in_epoch // 1000, clock.sample_in_epoch % 1000
        clock.train_seconds += 0.01 * size
        clock.flops += 1e6 * size
        progress = clock.progress(budget)
        assert 0.0 <= progress <= 1.0
        assert progress >= previous
        assert progress == pytest.approx(min(1.0, clock.amount(unit) / budget.value))
        previous = progress


def test_epoch_progress_moves_within_an_epoch() -> None:
    clock = Clock(epoch=1, sample_in_epoch=250, samples_per_epoch=1000)
    assert clock.epochs == pytest.approx(1.25)
    assert clock.progress(parse_budget("5ep")) == pytest.approx(0.25)
