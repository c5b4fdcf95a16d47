"""Per-sample difficulty scores from a short proxy run, and loaders restricted to chosen samples.

Shared by data pruning and curriculum learning: a copy of the model is trained briefly (its FLOPs
charged through `state.counted`, its time charged because it runs at fit start), then every
training sample is scored by EL2N (the L2 norm of softmax(output) - onehot(label)), by its loss,
or by how often it was forgotten during the proxy run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from algospeed.core.batch import Batch
from algospeed.core.data import DatasetLoader, InMemoryLoader, Loader
from algospeed.core.flops import shape_signature
from algospeed.core.state import State
from algospeed.errors import UsageError

SCORES = ("el2n", "loss", "forgetting")


# ------------------------------------------------------------------------------------- loaders
def base_loader(loader: Loader) -> Loader:
    """The loader that holds the samples, under any wrappers (an echoing loader) that expose
    `inner` and `with_inner`."""
    while hasattr(loader, "with_inner"):
        loader = loader.inner  # type: ignore[attr-defined]
    return loader


def rebase(loader: Loader, base: Loader) -> Loader:
    """`loader` with its base loader replaced by `base`, keeping the wrappers around it."""
    if hasattr(loader, "with_inner"):
        return loader.with_inner(rebase(loader.inner, base))  # type: ignore[attr-defined]
    return base


def subset_loader(source: Loader, indices: torch.Tensor, batch_size: int) -> Loader:
    """A loader over the samples `indices` of `source`, shuffled (or not) and batched like it, its
    epoch order again a function of (seed, epoch), so resumption stays exact."""
    if isinstance(source, InMemoryLoader):
        return source.subset(indices, batch_size)
    if isinstance(source, DatasetLoader):
        return source.with_dataset(Subset(source.dataset, indices.tolist()), batch_size)
    raise UsageError(f"cannot select samples from a {type(source).__name__}; use an in-memory or dataset loader")


def ordered_batches(
    source: Loader, order: torch.Tensor, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, Batch]]:
    """(indices, batch) for the samples of `source` in `order`, `batch_size` at a time, on `device`."""
    if isinstance(source, InMemoryLoader):
        for begin in range(0, len(order), batch_size):
            chunk = order[begin : begin + batch_size]
            yield chunk, source.take(chunk).to(device)
        return
    if isinstance(source, DatasetLoader):
        loader = DataLoader(
            Subset(source.dataset, order.tolist()),
            batch_size=batch_size,
            shuffle=False,
            num_workers=source.num_workers,
            collate_fn=source.collate_fn,
        )
        for begin, data in zip(range(0, len(order), batch_size), loader, strict=True):
            yield order[begin : begin + batch_size], Batch.of(data).to(device)
        return
    raise UsageError(f"cannot score the samples of a {type(source).__name__}; use an in-memory or dataset loader")


# -------------------------------------------------------------------------------------- scores
def el2n(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The error L2 norm of each sample: ||softmax(outputs) - onehot(targets)||_2."""
    probabilities = outputs.float().softmax(dim=-1)
    return (probabilities - F.one_hot(targets, outputs.shape[-1]).float()).norm(dim=-1)


def _optimizer_for(state: State, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if state.optimizer_factory is not None:
        return state.optimizer_factory(params)
    return type(state.optimizer)(params, **state.optimizer.defaults)


def _reinitialize(model: nn.Module) -> None:
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()


class _Forgetting:
    """Forgetting events per sample (Toneva et al.): a sample is forgotten when a training batch
    finds it misclassified after it was last classified correctly; never-learned samples count as
    forgotten more often than any other."""

    def __init__(self, size: int) -> None:
        self.correct = torch.zeros(size, dtype=torch.bool)
        self.learned = torch.zeros(size, dtype=torch.bool)
        self.events = torch.zeros(size, dtype=torch.float64)

    def update(self, indices: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        correct = (outputs.argmax(dim=-1) == targets).cpu()
        self.events[indices] += (self.correct[indices] & ~correct).double()
        self.correct[indices] = correct
        self.learned[indices] |= correct

    def scores(self) -> torch.Tensor:
        scores = self.events.clone()
        scores[~self.learned] = scores.max() + 1.0
        return scores


def proxy_scores(
    state: State,
    source: Loader,
    *,
    score: str = "el2n",
    epochs: float = 1.0,
    seeds: int = 1,
    tag: str = "proxy",
) -> torch.Tensor:
    """Difficulty scores (N,) of the samples of `source`, in its own order, higher = harder.

    For each of `seeds` proxies, a copy of `state.model` (the first keeps its weights, the others
    are re-initialized from their seed) is trained for `epochs` passes over shuffled batches of the
    loader's batch size with the run's optimizer at its base learning rate and the run's loss;
    then, in eval mode, each sample is scored by EL2N or loss (`forgetting` is counted during the
    proxy training instead). Scores are averaged over proxies. All FLOPs are charged through
    `state.counted`; the global RNG is left as it was.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    size, batch_size = len(source), source.batch_size
    if size < 2:
        raise UsageError(f"scoring samples with a proxy run needs at least two training samples, got {size}")
    steps = max(1, math.ceil(epochs * size / batch_size))
    total = torch.zeros(size, dtype=torch.float64)
    devices = [state.device.index or 0] if state.device.type == "cuda" else []
    for seed in range(seeds):
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(state.seed * 1_000_003 + 7919 * (seed + 1))
            model = copy.deepcopy(state.model)
            if seed > 0:
                _reinitialize(model)
            total += _proxy_run(state, model, source, score, steps, seed, tag)
    return total / seeds


def _proxy_run(
    state: State, model: nn.Module, source: Loader, score: str, steps: int, seed: int, tag: str
) -> torch.Tensor:
    size, batch_size = len(source), source.batch_size
    optimizer = _optimizer_for(state, model)
    forgetting = _Forgetting(size) if score == "forgetting" else None
    order_generator = torch.Generator().manual_seed(state.seed * 1_000_003 + 104_729 * (seed + 1))

    def train_step(batch: Batch) -> torch.Tensor:
        outputs = state.forward(model, batch)
        state.loss_fn(outputs, batch.targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return outputs.detach()

    model.train()
    done = 0
    while done < steps:
        order = torch.randperm(size, generator=order_generator)
        for indices, batch in ordered_batches(source, order, batch_size, state.device):
            if len(indices) < 2:  # a one-sample remainder: batch norm cannot train on it
                continue
            kind = (f"{tag}.train", shape_signature(batch.inputs), state.model_version)
            outputs = state.counted(kind, lambda batch=batch: train_step(batch))
            if forgetting is not None:
                forgetting.update(indices, outputs, batch.targets)
            done += 1
            if done == steps:
                break
    if forgetting is not None:
        return forgetting.scores()

    model.eval()
    scores = torch.zeros(size, dtype=torch.float64)

    def score_batch(batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            outputs = state.forward(model, batch)
        if score == "el2n":
            return el2n(outputs, batch.targets)
        return F.cross_entropy(outputs.float(), batch.targets, reduction="none")

    for indices, batch in ordered_batches(source, torch.arange(size), max(batch_size, 256), state.device):
        kind = (f"{tag}.score", shape_signature(batch.inputs), state.model_version)
        scores[indices] = state.counted(kind, lambda batch=batch: score_batch(batch)).double().cpu()
    return scores
