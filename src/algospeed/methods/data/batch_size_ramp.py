"""Batch-size ramp: grow the batch size at progress milestones where a schedule would decay the learning rate."""

from __future__ import annotations

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.schedules import SCHEDULE_METHODS, parse_milestones, warmup_multiplier
from algospeed.methods.shared.scoring import base_loader
from algospeed.taxonomy.axes import How, Place, What, When, Where


def ramped_batch_size(
    base: int, progress: float, factor: float, milestones: tuple[float, ...], cap: int | None = None
) -> tuple[int, float]:
    """(batch size, learning-rate multiplier) at `progress`: the batch size is `base * factor ** k`
    after `k` milestones; where `cap` stops that growth, the learning rate falls by the growth
    that was not possible instead (`achieved / wanted`), as Smith et al. do at the largest batch."""
    passed = sum(progress >= milestone for milestone in milestones)
    wanted = base * factor**passed
    size = max(1, round(wanted))
    if cap is not None and size > cap:
        size = max(1, cap)
    return size, min(1.0, size / wanted)


@register("batch_size_ramp")
class BatchSizeRamp(Method):
    """Multiply the batch size by `factor` at each progress milestone and keep the learning rate constant.

    Place: optimization (the batch-size schedule), shrink (the number of parameter updates), fewer
    steps, scheduled. At init the learning-rate schedule is replaced by a linear warmup (`warmup`
    of progress) and a constant rate; at fit start and after every step `state.train_data.batch_size`
    is set to `base * factor ** (milestones passed)`, so it changes between batches (mid-epoch too).
    The batch size is capped by `max_batch_size` (0: no cap) and by the number of training samples;
    growth the cap prevents becomes learning-rate decay by the same factor, as in the paper. The
    batch size is a function of progress, so resumption needs no saved state. Progress counted in
    samples or epochs (an epoch is a fixed number of samples, whatever the batch size) stays
    exact, and later epochs take fewer steps; with a budget in steps (`ba`), later steps each take
    more samples.

    Helps: large-batch hardware that is underused by small batches: the same number of epochs in
    far fewer parameter updates, each larger batch using the accelerator better.

    Hurts: hardware already saturated by the initial batch (the larger batches cost proportionally
    more per step, so there is no saving in time or FLOPs per epoch); optimizers or models sensitive
    to batch size (batch norm at tiny or huge batches); a cap reached early.

    Reference: Samuel L. Smith, Pieter-Jan Kindermans, Chris Ying and Quoc V. Le, 2018, "Don't Decay
    the Learning Rate, Increase the Batch Size", ICLR 2018, arXiv:1711.00489.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.SHRINK,), how=How.FEWER_STEPS, when=(When.SCHEDULED,))
    conflicts = SCHEDULE_METHODS  # each replaces the learning-rate schedule

    def __init__(
        self,
        factor: float = 2.0,
        milestones: str = "0.4/0.6/0.8",
        max_batch_size: int = 0,
        warmup: float = 0.02,
    ) -> None:
        if factor < 1.0:
            raise ValueError(f"factor (the batch-size growth at each milestone) must be at least 1, got {factor}")
        if max_batch_size < 0:
            raise ValueError(f"max_batch_size must be positive, or 0 for no cap, got {max_batch_size}")
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup must be in [0, 1), got {warmup}")
        self.factor = factor
        self.milestones = parse_milestones(milestones)
        self.max_batch_size = max_batch_size
        self.warmup = warmup
        self.base = 0
        self.cap: int | None = None

    def on_init(self, state: State) -> None:
        self.base = state.train_data.batch_size
        self._update_cap(state)
        state.schedule = self.lr_multiplier

    def _update_cap(self, state: State) -> None:
        samples = len(base_loader(state.train_data))  # under any echoing; after any pruning
        self.cap = min(self.max_batch_size, samples) if self.max_batch_size else samples

    def batch_size_at(self, progress: float) -> int:
        """The batch size at `progress`."""
        return ramped_batch_size(self.base, progress, self.factor, self.milestones, self.cap)[0]

    def lr_multiplier(self, progress: float) -> float:
        """The schedule: warmup, then constant, lowered only where the cap stops the batch growing."""
        ratio = ramped_batch_size(self.base, progress, self.factor, self.milestones, self.cap)[1]
        return warmup_multiplier(progress, self.warmup) * ratio

    def _apply(self, state: State) -> None:
        self._update_cap(state)
        size = self.batch_size_at(state.progress)
        if state.train_data.batch_size != size:
            state.train_data.batch_size = size

    def on_fit_start(self, state: State) -> None:
        self._apply(state)

    def on_epoch_start(self, state: State) -> None:
        self._apply(state)

    def on_batch_end(self, state: State) -> None:
        self._apply(state)
