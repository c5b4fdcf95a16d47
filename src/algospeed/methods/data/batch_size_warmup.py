"""Batch-size warmup: small batches early, growing to the full batch, under the run's own learning-rate
schedule (GPT-3's and the NanoGPT speedrun's batch-size schedule)."""

from __future__ import annotations

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.scoring import base_loader
from algospeed.methods.shared.sequence import check_ramp, ramped_length
from algospeed.taxonomy.axes import How, Place, What, When, Where


def warmup_batch_size(full: int, progress: float, initial_fraction: float, ramp_end: float, multiple: int) -> int:
    """The batch size at `progress`: `initial_fraction * full` growing linearly to `full` at `ramp_end`,
    rounded down to a multiple of `multiple` (at least `multiple`)."""
    return ramped_length(full, progress, initial_fraction, ramp_end, multiple)


@register("batch_size_warmup")
class BatchSizeWarmup(Method):
    """Batch-size warmup: grow the batch linearly from a fraction of the workload's to all of it.

    Place: optimization (the batch-size schedule), shrink (the early batches); both (cheaper early steps,
    and more updates per token where small batches are as good as large ones); scheduled. At fit start,
    each epoch start and after every step `state.train_data.batch_size` is set to `initial_fraction` of
    the workload's batch growing linearly to all of it at progress `ramp_end`, rounded down to a
    multiple of `multiple`. The learning-rate schedule is the run's own (unlike `batch_size_ramp`, which
    replaces it). With a budget in tokens or samples, the early small batches buy more steps of the same
    budget; the batch size is a function of progress, so resumption needs no saved state.

    Helps: language-model pretraining, whose critical batch size is small early and grows as the loss
    falls (GPT-3 ramped its batch over the first 4-12 billion tokens; the speedrun grows its batch too).

    Hurts: a budget in steps (`ba`: small batches then mean fewer tokens in all); hardware that small
    batches leave idle (the early steps are not cheaper in time); batch-normalized models at tiny batches.

    Reference: Tom B. Brown et al., 2020, "Language Models are Few-Shot Learners", NeurIPS 2020,
    arXiv:2005.14165 (batch-size warmup); Keller Jordan et al., 2024, modded-nanogpt,
    https://github.com/KellerJordan/modded-nanogpt (a batch-size schedule in the NanoGPT speedrun).
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.SHRINK,), how=How.BOTH, when=(When.SCHEDULED,))
    conflicts = frozenset({"batch_size_ramp"})  # both set the loader's batch size

    def __init__(self, initial_fraction: float = 0.25, ramp_end: float = 0.3, multiple: int = 2) -> None:
        check_ramp(initial_fraction, ramp_end, multiple, "initial_fraction")
        self.initial_fraction = initial_fraction
        self.ramp_end = ramp_end
        self.multiple = multiple
        self.full = 0

    def on_init(self, state: State) -> None:
        self.full = state.train_data.batch_size

    def batch_size_at(self, progress: float) -> int:
        """The batch size at `progress`."""
        return warmup_batch_size(self.full, progress, self.initial_fraction, self.ramp_end, self.multiple)

    def _apply(self, state: State) -> None:
        size = min(self.batch_size_at(state.progress), len(base_loader(state.train_data)))
        if state.train_data.batch_size != size:
            state.train_data.batch_size = size

    def on_fit_start(self, state: State) -> None:
        self._apply(state)

    def on_epoch_start(self, state: State) -> None:
        self._apply(state)

    def on_batch_end(self, state: State) -> None:
        self._apply(state)
