"""Data pruning: score every training sample with a short proxy run, then train on a fraction of them."""

from __future__ import annotations

from typing import Any

import torch

from algospeed.core.callback import Method
from algospeed.core.data import Loader
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.methods.registry import register
from algospeed.methods.shared.scoring import base_loader, proxy_scores, rebase, subset_loader
from algospeed.taxonomy.axes import How, Place, What, When, Where

KEEPS = ("hardest", "easiest")


def prune_indices(scores: torch.Tensor, keep_fraction: float, keep: str = "hardest") -> torch.Tensor:
    """Sorted indices of the `round(keep_fraction * N)` samples with the highest (`hardest`) or
    lowest (`easiest`) scores; ties are broken by position."""
    if keep not in KEEPS:
        raise ValueError(f"keep must be one of {', '.join(KEEPS)}, got {keep!r}")
    count = max(1, round(keep_fraction * len(scores)))
    ranked = torch.sort(scores, descending=keep == "hardest", stable=True).indices
    return ranked[:count].sort().values


@register("data_pruning")
class DataPruning(Method):
    """Score every training sample with a short proxy run and train on the `keep_fraction` that matter.

    Place: data (which samples), remove (the pruned ones), fewer steps, before (a selection phase).
    At fit start a copy of the model is trained for `proxy_epochs` on the whole training set (per
    seed of `proxy_seeds`; FLOPs charged through `state.counted`, time charged as fit-start work),
    then every sample is scored by EL2N, ||softmax(output) - onehot(label)||, averaged over proxies
    (`score=el2n`), or by its forgetting events during the proxy run (`score=forgetting`).
    `state.train_data` becomes a loader over the `keep_fraction` with the highest scores
    (`keep=hardest`, as Paul et al. do) or the lowest (`keep=easiest`, better when little data is
    kept). The kept indices and scores are saved, so a resumed run never reruns the proxy. An
    epoch then means a pass over the kept samples, so an `ep` budget costs keep_fraction as much.

    Helps: large, redundant datasets and repeated training on the same data (a sweep, a family of
    models), where the proxy's cost is paid once per run but saves a fraction of every epoch.

    Hurts: small or already curated datasets; short budgets, where the proxy run's cost is not
    repaid; noisy labels with `keep=hardest` (mislabelled samples score highest); aggressive
    pruning with the hardest kept.

    Reference: Mansheej Paul, Surya Ganguli and Gintare Karolina Dziugaite, 2021, "Deep Learning on
    a Data Diet: Finding Important Examples Early in Training", NeurIPS 2021, arXiv:2107.07075;
    forgetting scores: Mariya Toneva, Alessandro Sordoni, Remi Tachet des Combes, Adam Trischler,
    Yoshua Bengio and Geoffrey J. Gordon, 2019, "An Empirical Study of Example Forgetting during
    Deep Neural Network Learning", ICLR 2019, arXiv:1812.05159.
    """

    place = Place(where=(Where.DATA,), what=(What.REMOVE,), how=How.FEWER_STEPS, when=(When.BEFORE,))
    data_kinds = frozenset({DataKind.IMAGES, DataKind.SIGNALS, DataKind.TABULAR})
    conflicts = frozenset({"curriculum"})
    extra_compute = True

    def __init__(
        self,
        keep_fraction: float = 0.7,
        score: str = "el2n",
        keep: str = "hardest",
        proxy_epochs: float = 1.0,
        proxy_seeds: int = 1,
    ) -> None:
        if not 0.0 < keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
        if score not in ("el2n", "forgetting"):
            raise ValueError(f"score must be el2n or forgetting, got {score!r}")
        if keep not in KEEPS:
            raise ValueError(f"keep must be one of {', '.join(KEEPS)}, got {keep!r}")
        if proxy_epochs <= 0:
            raise ValueError(f"proxy_epochs must be positive, got {proxy_epochs}")
        if proxy_seeds < 1:
            raise ValueError(f"proxy_seeds must be at least 1, got {proxy_seeds}")
        self.keep_fraction = keep_fraction
        self.score = score
        self.keep = keep
        self.proxy_epochs = proxy_epochs
        self.proxy_seeds = proxy_seeds
        self.scores: torch.Tensor | None = None
        self.kept: torch.Tensor | None = None
        self._source: Loader | None = None

    def on_fit_start(self, state: State) -> None:
        if self._source is None:
            self._source = base_loader(state.train_data)
        source = self._source
        if self.kept is None:
            self.scores = proxy_scores(
                state, source, score=self.score, epochs=self.proxy_epochs, seeds=self.proxy_seeds
            )
            self.kept = prune_indices(self.scores, self.keep_fraction, self.keep)
        batch_size = state.train_data.batch_size
        if source.drop_last and len(self.kept) < batch_size:
            raise UsageError(
                f"data_pruning keeps {len(self.kept)} samples, fewer than one batch of {batch_size}; "
                "raise keep_fraction or lower the batch size"
            )
        state.train_data = rebase(state.train_data, subset_loader(source, self.kept, batch_size))

    def state_dict(self) -> dict[str, Any]:
        if self.kept is None or self.scores is None:
            return {}
        return {"kept": self.kept.clone(), "scores": self.scores.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.kept, self.scores = state["kept"].long(), state["scores"].double()
