"""Sample-selecting data methods: selective backprop, curriculum learning, data pruning (and their scoring)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from algospeed.core.callback import Callback, check_composition
from algospeed.core.checkpoint import list_checkpoints
from algospeed.core.data import DatasetLoader, InMemoryLoader
from algospeed.core.trainer import Trainer
from algospeed.errors import UsageError
from algospeed.methods.data import data_pruning as data_pruning_module
from algospeed.methods.data.curriculum import available_count, curriculum_ranking, pacing_fraction
from algospeed.methods.data.data_pruning import DataPruning, prune_indices
from algospeed.methods.data.selective_backprop import per_sample_losses, select_samples
from algospeed.methods.shared.scoring import el2n, proxy_scores, subset_loader
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.run_spec import RunSpec, build_trainer
from algospeed.workloads.models import SmallCNN
from method_harness import assert_resumes_exactly

DIGITS_TRAIN = 1293  # 1437 training digits, less the 144 held out to validate


def assert_usage_error(name: str, settings: dict[str, Any], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        build_method(MethodSpec(name=name, settings=settings))


def smallcnn_flops(batch: int, *, train: bool) -> int:
    """FLOPs of one SmallCNN step (forward and backward) or forward on `batch` 8x8 digits."""
    model = SmallCNN(classes=10)
    inputs, targets = torch.randn(batch, 1, 8, 8), torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        if train:
            F.cross_entropy(model(inputs), targets).backward()
        else:
            with torch.no_grad():
                model(inputs)
    return counter.get_total_flops()


def trainer_with(methods: str, *, budget: str, callbacks: tuple[Callback, ...] = (), **spec: Any) -> Trainer:
    spec.setdefault("workload", "digits")
    return build_trainer(RunSpec(budget=budget, methods=methods, device="cpu", **spec), callbacks=list(callbacks))


def noisy_problem(flipped: int = 12) -> tuple[InMemoryLoader, torch.Tensor]:
    """A two-class problem separable with a margin, with the labels of the first `flipped` samples flipped."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(128, 8, generator=generator)
    inputs[:, 0] += inputs[:, 0].sign()
    targets = (inputs[:, 0] > 0).long()
    targets[:flipped] = 1 - targets[:flipped]
    return InMemoryLoader(inputs, targets, batch_size=16, seed=0), torch.arange(flipped)


def tiny_trainer(loader: InMemoryLoader, callbacks: tuple[Callback, ...] = ()) -> Trainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    return Trainer(
        model,
        loader,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.2, momentum=0.9),
        budget="2ep",
        seed=0,
        device="cpu",
        callbacks=callbacks,
    )


# ------------------------------------------------------------------------- selective backprop
class SelectionProbe(Callback):
    """Listed after selective backprop, it sees the whole batch at after_dataloader (after-events
    run in reverse) and computes the losses the method should select by."""

    def __init__(self) -> None:
        self.expected: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.seen: list[torch.Tensor] = []
        self.step_flops: list[float] = []
        self._flops = 0.0

    def on_after_dataloader(self, state: Any) -> None:
        inputs, targets = state.batch.inputs, state.batch.targets
        losses = per_sample_losses(state.model, inputs, targets)
        top = torch.sort(losses, descending=True, stable=True).indices[: len(losses) // 2].sort().values
        self.expected.append((inputs[top].clone(), losses))

    def on_before_forward(self, state: Any) -> None:
        self.seen.append(state.batch.inputs.clone())

    def on_batch_end(self, state: Any) -> None:
        self.step_flops.append(state.clock.flops - self._flops)
        self._flops = state.clock.flops


def test_selective_backprop_trains_on_the_highest_loss_half_and_pays_for_the_scoring_forward() -> None:
    probe = SelectionProbe()
    result = trainer_with("selective_backprop", budget="6ba", callbacks=(probe,)).fit()
    assert [len(x) for x in probe.seen] == [16] * 6  # the backward really sees half the batch
    for (expected, _), seen in zip(probe.expected, probe.seen, strict=True):
        assert torch.equal(seen, expected)  # ... and it is the highest-loss half
    subset_step, scoring, full_step = smallcnn_flops(16, train=True), smallcnn_flops(32, train=False), None
    full_step = smallcnn_flops(32, train=True)
    assert probe.step_flops == [subset_step + scoring] * 6
    assert subset_step < subset_step + scoring < full_step
    assert result.final.samples == 6 * 32  # the whole loaded batch still counts as read


def test_selective_backprop_acts_only_inside_its_progress_window() -> None:
    probe = SelectionProbe()
    trainer_with("selective_backprop:start=0.5:fraction=0.25", budget="8ba", callbacks=(probe,)).fit()
    assert [len(x) for x in probe.seen] == [32] * 4 + [8] * 4


def test_selective_backprop_functions() -> None:
    losses = torch.tensor([0.1, 3.0, 0.5, 2.0, 2.0, 0.0])
    assert select_samples(losses, 0.5).tolist() == [1, 3, 4]
    assert select_samples(losses, 0.01).tolist() == [1]  # at least one
    generator = torch.Generator().manual_seed(0)
    picks = torch.zeros(6)
    for _ in range(300):
        chosen = select_samples(losses, 0.5, "probabilistic", beta=3.0, generator=generator)
        assert len(chosen) == 3 and torch.equal(chosen, chosen.sort().values)
        picks[chosen] += 1
    assert picks[1] > picks[0] and picks[3] + picks[4] > picks[2] + picks[5]  # higher loss, chosen more
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 3))
    before = [b.clone() for b in model.buffers()]
    losses = per_sample_losses(model, torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1]))
    assert losses.shape == (5,) and not losses.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers(), strict=True))  # BN stats untouched


@pytest.mark.parametrize("methods", ["selective_backprop", "selective_backprop:selection=probabilistic"])
def test_selective_backprop_resumes_exactly(tmp_path, methods: str) -> None:
    assert_resumes_exactly(methods, tmp_path, budget="1ep")


def test_selective_backprop_rejects_bad_settings_and_mixing_methods() -> None:
    assert_usage_error("selective_backprop", {"fraction": "0"}, "fraction")
    assert_usage_error("selective_backprop", {"selection": "random"}, "selection must be one of")
    assert_usage_error("selective_backprop", {"start": "0.9", "end": "0.5"}, "start < end")
    with pytest.raises(UsageError, match="cannot be combined"):
        check_composition([build_method(MethodSpec(name="selective_backprop")), build_method(MethodSpec(name="mixup"))])


# --------------------------------------------------------------------------------- scoring
def test_proxy_scores_rank_mislabelled_samples_hardest_and_leave_the_model_alone() -> None:
    loader, flipped = noisy_problem()
    trainer = tiny_trainer(loader)
    weights = [p.clone() for p in trainer.state.model.parameters()]
    rng = torch.get_rng_state()
    for score in ("el2n", "loss", "forgetting"):
        scores = proxy_scores(trainer.state, loader, score=score, epochs=8)
        hardest = torch.sort(scores, descending=True, stable=True).indices[: len(flipped)]
        assert len(set(hardest.tolist()) & set(flipped.tolist())) >= len(flipped) * 2 // 3, score
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.state.model.parameters(), strict=True))
    assert torch.equal(rng, torch.get_rng_state())  # the proxy ran on a forked global RNG
    again = proxy_scores(trainer.state, loader, score="el2n", epochs=8)
    assert torch.equal(again, proxy_scores(trainer.state, loader, score="el2n", epochs=8))  # deterministic
    two = proxy_scores(trainer.state, loader, score="el2n", epochs=8, seeds=2)
    assert not torch.equal(two, again)  # a second, re-initialized proxy is averaged in


def test_scoring_and_subsets_work_the_same_on_a_dataset_loader() -> None:
    memory, _ = noisy_problem()
    dataset = DatasetLoader(TensorDataset(memory.inputs, memory.targets), batch_size=16, seed=0)
    trainer = tiny_trainer(memory)
    scores = proxy_scores(trainer.state, memory, score="el2n", epochs=2)
    assert torch.allclose(proxy_scores(trainer.state, dataset, score="el2n", epochs=2), scores)
    subset = subset_loader(dataset, torch.tensor([3, 7, 11]), batch_size=2)
    assert len(subset) == 3
    targets = torch.cat([batch.targets for batch in subset.iter_epoch(0)])
    assert len(targets) == 2 and set(targets.tolist()) <= set(memory.targets[[3, 7, 11]].tolist())


def test_the_proxy_skips_a_one_sample_remainder_that_batch_norm_cannot_train_on() -> None:
    loader, _ = noisy_problem()
    odd = InMemoryLoader(loader.inputs[:33], loader.targets[:33], batch_size=16, seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    trainer = Trainer(model, odd, optimizer=lambda p: torch.optim.SGD(p, lr=0.1), budget="1ep", device="cpu")
    scores = proxy_scores(trainer.state, odd, score="loss", epochs=2)
    assert scores.shape == (33,) and torch.isfinite(scores).all()


def test_el2n_and_subset_loader() -> None:
    outputs = torch.tensor([[10.0, -10.0], [0.0, 0.0]])
    assert torch.allclose(el2n(outputs, torch.tensor([0, 0])), torch.tensor([0.0, math.sqrt(0.5)]), atol=1e-6)
    loader, _ = noisy_problem()
    subset = subset_loader(loader, torch.tensor([5, 9, 20, 33]), batch_size=2)
    assert len(subset) == 4 and subset.batch_size == 2
    seen = torch.cat([batch.inputs for batch in subset.iter_epoch(0)])
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, loader.inputs[[5, 9, 20, 33]].tolist()))


# ------------------------------------------------------------------------------- curriculum
class EpochProbe(Callback):
    """Listed after the curriculum, it sees each epoch's loader once the curriculum installed it."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self.seen: list[tuple[int, torch.Tensor]] = []

    def on_epoch_start(self, state: Any) -> None:
        self.epochs.append(
            {
                "progress": state.progress,
                "size": len(state.train_data),
                "loader": state.train_data,
                "flops": state.clock.flops,
            }
        )

    def on_before_forward(self, state: Any) -> None:
        self.seen.append((len(self.epochs) - 1, state.batch.inputs.clone()))


def test_curriculum_trains_on_the_easiest_fraction_growing_with_progress_and_charges_the_proxy() -> None:
    probe = EpochProbe()
    methods = "curriculum:start_fraction=0.2:full_at=0.5:proxy_epochs=0.5"
    trainer = trainer_with(methods, budget="2500sp", callbacks=(probe,))
    source = trainer.state.train_data
    trainer.fit()
    method = trainer.callbacks[0]
    sizes = [epoch["size"] for epoch in probe.epochs]
    assert sizes[0] == math.ceil(0.2 * DIGITS_TRAIN) and sizes[-1] == DIGITS_TRAIN
    assert sizes == sorted(sizes) and len(set(sizes)) >= 3
    for epoch in probe.epochs:
        fraction = pacing_fraction(epoch["progress"], 0.2, 0.5, "linear")
        assert epoch["size"] == available_count(DIGITS_TRAIN, fraction, 32)
    assert torch.all(method.scores[method.ranking][1:] >= method.scores[method.ranking][:-1])  # easiest first
    first = probe.epochs[0]
    allowed = source.inputs[method.ranking[: first["size"]]]
    assert torch.equal(first["loader"].inputs, allowed)
    for epoch, inputs in probe.seen:
        if epoch == 0:  # the model really sees only the easiest samples in the first epoch
            assert (inputs[:, None] == allowed[None]).flatten(2).all(dim=2).any(dim=1).all()
    proxy_steps = math.ceil(0.5 * DIGITS_TRAIN / 32)
    scoring = 5 * smallcnn_flops(256, train=False) + smallcnn_flops(DIGITS_TRAIN - 5 * 256, train=False)
    assert first["flops"] == pytest.approx(proxy_steps * smallcnn_flops(32, train=True) + scoring)


def test_curriculum_functions() -> None:
    assert pacing_fraction(0.0) == pytest.approx(0.2)
    assert pacing_fraction(0.25) == pytest.approx(0.6)
    assert pacing_fraction(0.25, pacing="root") == pytest.approx(0.2 + 0.8 * math.sqrt(0.5))
    assert pacing_fraction(0.7) == 1.0
    assert curriculum_ranking(torch.tensor([0.3, 0.1, 0.2])).tolist() == [1, 2, 0]
    assert curriculum_ranking(torch.tensor([0.3, 0.1, 0.2]), "hardest").tolist() == [0, 2, 1]
    assert available_count(100, 0.05, 32) == 32 and available_count(100, 0.5, 32) == 50
    assert available_count(20, 0.1, 32) == 20


def test_curriculum_resumes_exactly_mid_epoch(tmp_path) -> None:
    assert_resumes_exactly("curriculum:proxy_epochs=0.25:full_at=0.6", tmp_path, budget="2000sp")


def test_curriculum_rejects_bad_settings() -> None:
    assert_usage_error("curriculum", {"pacing": "cubic"}, "pacing must be one of")
    assert_usage_error("curriculum", {"start_fraction": "0"}, "start_fraction")
    assert_usage_error("curriculum", {"score": "vibes"}, "score must be one of")
    with pytest.raises(UsageError, match="cannot be combined"):
        check_composition([build_method(MethodSpec(name="curriculum")), build_method(MethodSpec(name="data_pruning"))])


# ------------------------------------------------------------------------------ data pruning
@pytest.mark.parametrize("keep", ["hardest", "easiest"])
def test_data_pruning_keeps_the_fraction_with_the_chosen_scores(keep: str) -> None:
    trainer = trainer_with(f"data_pruning:keep_fraction=0.7:keep={keep}", budget="3ba")
    source = trainer.state.train_data
    trainer.fit()
    method = trainer.callbacks[0]
    kept = method.kept
    assert len(kept) == round(0.7 * DIGITS_TRAIN) == len(trainer.state.train_data)
    dropped = torch.ones(DIGITS_TRAIN, dtype=torch.bool)
    dropped[kept] = False
    if keep == "hardest":
        assert method.scores[kept].min() >= method.scores[dropped].max()
    else:
        assert method.scores[kept].max() <= method.scores[dropped].min()
    assert torch.equal(trainer.state.train_data.inputs, source.inputs[kept])
    assert torch.equal(trainer.state.train_data.targets, source.targets[kept])


def test_data_pruning_charges_the_proxy_run_flops() -> None:
    pruned = trainer_with("data_pruning:proxy_epochs=1", budget="3ba").fit()
    plain = trainer_with("", budget="3ba").fit()
    proxy_train = (DIGITS_TRAIN // 32) * smallcnn_flops(32, train=True) + smallcnn_flops(DIGITS_TRAIN % 32, train=True)
    scoring = 5 * smallcnn_flops(256, train=False) + smallcnn_flops(DIGITS_TRAIN - 5 * 256, train=False)
    assert pruned.final.flops - plain.final.flops == pytest.approx(proxy_train + scoring)


def test_prune_indices() -> None:
    scores = torch.tensor([0.5, 0.9, 0.1, 0.9, 0.3])
    assert prune_indices(scores, 0.4).tolist() == [1, 3]
    assert prune_indices(scores, 0.4, "easiest").tolist() == [2, 4]
    assert prune_indices(scores, 0.01).tolist() == [1]


def test_data_pruning_resumes_exactly_without_rerunning_the_proxy(tmp_path, monkeypatch) -> None:
    full = assert_resumes_exactly("data_pruning:keep_fraction=0.5", tmp_path, budget="1ep")
    assert len(full.callbacks[0].kept) == round(0.5 * DIGITS_TRAIN)

    def no_proxy(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the proxy ran again on resume")

    monkeypatch.setattr(data_pruning_module, "proxy_scores", no_proxy)
    resumed = trainer_with("data_pruning:keep_fraction=0.5", budget="1ep", eval_interval="1ep")
    resumed.fit(resume_from=list_checkpoints(tmp_path / "full")[1])
    assert torch.equal(resumed.callbacks[0].kept, full.callbacks[0].kept)


def test_data_pruning_rejects_bad_settings() -> None:
    assert_usage_error("data_pruning", {"keep_fraction": "0"}, "keep_fraction must be in")
    assert_usage_error("data_pruning", {"keep": "middle"}, "keep must be one of")
    assert_usage_error("data_pruning", {"score": "loss"}, "score must be el2n or forgetting")
    method = DataPruning(keep_fraction=0.01)
    with pytest.raises(UsageError, match="fewer than one batch"):
        trainer_with("", budget="2ba", callbacks=(method,)).fit()
