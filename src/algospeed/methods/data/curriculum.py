"""Curriculum learning: train on the easiest samples first, admitting harder ones as training progresses."""

from __future__ import annotations

import math
from typing import Any

import torch

from algospeed.core.callback import Method
from algospeed.core.data import Loader
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.scoring import SCORES, base_loader, proxy_scores, rebase, subset_loader
from algospeed.taxonomy.axes import How, Place, What, When, Where

PACINGS = ("linear", "root")
ORDERS = ("easiest", "hardest")


def pacing_fraction(
    progress: float, start_fraction: float = 0.2, full_at: float = 0.5, pacing: str = "linear"
) -> float:
    """The fraction of the data available at `progress`: `start_fraction` at 0, growing linearly
    (or as the square root of progress, `root`) to 1 at `full_at`, then 1."""
    if pacing not in PACINGS:
        raise ValueError(f"pacing must be one of {', '.join(PACINGS)}, got {pacing!r}")
    t = 1.0 if full_at <= 0 else min(1.0, max(0.0, progress) / full_at)
    grown = t if pacing == "linear" else math.sqrt(t)
    return start_fraction + (1.0 - start_fraction) * grown


def curriculum_ranking(scores: torch.Tensor, order: str = "easiest") -> torch.Tensor:
    """Sample indices from easiest (lowest score) to hardest, or the reverse for an anti-curriculum;
    ties are broken by position."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    return torch.sort(scores, descending=order == "hardest", stable=True).indices


def available_count(size: int, fraction: float, batch_size: int) -> int:
    """How many of `size` samples a `fraction` admits: at least one batch, at most all."""
    return max(min(size, batch_size), min(size, math.ceil(fraction * size - 1e-9)))


@register("curriculum")
class Curriculum(Method):
    """Train on the easiest samples first and admit harder ones as a pacing function of progress.

    Place: data (the order of samples), reorder, fewer steps, scheduled.
    At fit start every training sample is scored by a short proxy run (a copy of the model trained
    for `proxy_epochs`; by default its loss per sample, or `score=el2n` / `forgetting`), charged
    through `state.counted` and as fit-start time. At each epoch start `state.train_data` becomes
    a loader over the easiest `pacing_fraction(progress)` of the samples (`start_fraction` at the
    start, growing linearly or as a square root to all of them at `full_at`), shuffled within.
    `order=hardest` gives the anti-curriculum. The ranking and the current size are saved, so
    a resumed run (even mid-epoch) continues on the same subset without rerunning the proxy. An
    epoch is a pass over the samples available then, so early epochs are shorter.

    Helps: short budgets and noisy labels, where the easy samples carry most of the early signal
    (Wu, Dyer and Neyshabur find little benefit otherwise); tasks with a natural difficulty order.

    Hurts: standard, long training on clean data (no gain, plus the proxy's cost); a pacing too slow
    for the budget, which starves the model of the hard samples it needs at the end.

    Reference: Yoshua Bengio, Jérôme Louradour, Ronan Collobert and Jason Weston, 2009, "Curriculum
    Learning", ICML 2009; pacing functions and scoring by a trained model's loss: Guy Hacohen and
    Daphna Weinshall, 2019, "On The Power of Curriculum Learning in Training Deep Networks", ICML
    2019, arXiv:1904.03626, and Xiaoxia Wu, Ethan Dyer and Behnam Neyshabur, 2021, "When Do
    Curricula Work?", ICLR 2021, arXiv:2012.03107.
    """

    place = Place(where=(Where.DATA,), what=(What.REORDER,), how=How.FEWER_STEPS, when=(When.SCHEDULED,))
    data_kinds = frozenset({DataKind.IMAGES, DataKind.SIGNALS, DataKind.TABULAR})
    conflicts = frozenset({"data_pruning"})
    extra_compute = True

    def __init__(
        self,
        start_fraction: float = 0.2,
        full_at: float = 0.5,
        pacing: str = "linear",
        score: str = "loss",
        order: str = "easiest",
        proxy_epochs: float = 1.0,
        proxy_seeds: int = 1,
    ) -> None:
        if not 0.0 < start_fraction <= 1.0:
            raise ValueError(f"start_fraction must be in (0, 1], got {start_fraction}")
        if not 0.0 <= full_at <= 1.0:
            raise ValueError(f"full_at (the progress where all data is in) must be in [0, 1], got {full_at}")
        if pacing not in PACINGS:
            raise ValueError(f"pacing must be one of {', '.join(PACINGS)}, got {pacing!r}")
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        if proxy_epochs <= 0:
            raise ValueError(f"proxy_epochs must be positive, got {proxy_epochs}")
        if proxy_seeds < 1:
            raise ValueError(f"proxy_seeds must be at least 1, got {proxy_seeds}")
        self.start_fraction = start_fraction
        self.full_at = full_at
        self.pacing = pacing
        self.score = score
        self.order = order
        self.proxy_epochs = proxy_epochs
        self.proxy_seeds = proxy_seeds
        self.scores: torch.Tensor | None = None
        self.ranking: torch.Tensor | None = None
        self.available = 0
        self._source: Loader | None = None

    def on_fit_start(self, state: State) -> None:
        if self._source is None:
            self._source = base_loader(state.train_data)
        if self.ranking is None:
            self.scores = proxy_scores(
                state, self._source, score=self.score, epochs=self.proxy_epochs, seeds=self.proxy_seeds
            )
            self.ranking = curriculum_ranking(self.scores, self.order)
        elif self.available:  # resumed: back onto the subset of the interrupted epoch
            self._install(state)

    def on_epoch_start(self, state: State) -> None:
        assert self._source is not None and self.ranking is not None
        fraction = pacing_fraction(state.progress, self.start_fraction, self.full_at, self.pacing)
        self.available = available_count(len(self._source), fraction, state.train_data.batch_size)
        self._install(state)

    def _install(self, state: State) -> None:
        assert self._source is not None and self.ranking is not None
        if self.available >= len(self._source):
            subset = self._source
            subset.batch_size = state.train_data.batch_size
        else:
            subset = subset_loader(self._source, self.ranking[: self.available], state.train_data.batch_size)
        state.train_data = rebase(state.train_data, subset)

    def state_dict(self) -> dict[str, Any]:
        if self.ranking is None or self.scores is None:
            return {}
        return {"scores": self.scores.clone(), "ranking": self.ranking.clone(), "available": self.available}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.scores, self.ranking = state["scores"].double(), state["ranking"].long()
            self.available = int(state["available"])
