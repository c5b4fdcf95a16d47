"""airbench's image tricks as methods: patch whitening, dirac init, batch-norm hyperparameters, alternating
flip and test-time augmentation (with the evaluation cost recorded apart from training)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import algospeed.core.trainer as trainer_module
from algospeed.core.callback import Callback
from algospeed.core.data import InMemoryLoader
from algospeed.core.result import CurvePoint
from algospeed.core.status import RunStatus
from algospeed.core.trainer import Trainer
from algospeed.errors import UsageError
from algospeed.methods.data.alternating_flip import SAMPLE_INDEX, AlternatingFlip, IndexedLoader
from algospeed.methods.data.data_echoing import EchoingLoader
from algospeed.methods.data.tta import TTA, TTAWrapper, tta_logits
from algospeed.methods.model.batchnorm_hparams import BIAS_GROUP, set_batchnorm_momentum
from algospeed.methods.model.dirac_init import apply_dirac_init
from algospeed.methods.model.whitening import (
    PatchWhitening,
    WhitenedStem,
    apply_whitening,
    insert_whitening,
    patch_matrix,
)
from algospeed.methods.registry import method_class, method_names
from algospeed.methods.shared.scoring import base_loader
from algospeed.run_spec import RunSpec, build_trainer
from algospeed.study.outcome import RunOutcome
from algospeed.study.store import STORE_NAME, StudyStore
from method_harness import assert_resumes_exactly, trainer_for


def trainer_with(methods: str, callbacks: list[Callback], *, workload: str = "digits", budget: str) -> Trainer:
    """`trainer_for` with callbacks after the methods."""
    spec = RunSpec(workload=workload, budget=budget, methods=methods, eval_interval="1ep", device="cpu")
    return build_trainer(spec, callbacks=callbacks)


# -------------------------------------------------------------------------------------------- whitening
def test_whitening_outputs_are_white_frozen_and_its_statistics_pass_is_charged() -> None:
    trainer = trainer_for("whitening:eps=1e-9:samples=600", workload="mnist5k", budget="1ba")
    stem = trainer.state.model.stem[0]
    assert isinstance(stem, WhitenedStem) and stem.conv.in_channels == 8, "2 x 1 x 2 x 2 whitened channels"
    assert trainer.state.model_version == 1
    assert not any(p is stem.whiten.weight for p in trainer.state.model.parameters()), "buffers, not parameters"
    optimized = {id(p) for group in trainer.state.optimizer.param_groups for p in group["params"]}
    assert id(stem.conv.weight) in optimized and id(stem.whiten.weight) not in optimized

    result = trainer.fit()
    images = base_loader(trainer.state.train_data).inputs
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:600]
    outputs = stem.whiten(images[order])[:, :4, :-1, :-1]  # the + half, where no padding enters
    flat = outputs.permute(0, 2, 3, 1).reshape(-1, 4).double()
    assert flat.mean(dim=0).abs().max() < 1e-4
    assert torch.allclose(torch.cov(flat.T, correction=0), torch.eye(4, dtype=torch.float64), atol=1e-3)
    assert torch.equal(stem.whiten(images[:2])[:, 4:], -stem.whiten(images[:2])[:, :4]), "both signs"

    patches = 600 * 27 * 27
    charged = trainer.state.flops.cache[("whitening.statistics", 600, 2)]
    assert charged == 2 * patches * 4 * 4, "the covariance's d x d products, counted"
    (step,) = (flops for kind, flops in trainer.state.flops.cache.items() if kind[0] != "whitening.statistics")
    assert result.final.flops == step + charged
    assert result.final.extra_steps == 1


def test_whitening_refuses_models_it_cannot_whiten_and_resumes_exactly(tmp_path) -> None:
    with pytest.raises(UsageError, match="has none"):
        insert_whitening(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(UsageError, match="groups=2"):
        insert_whitening(nn.Sequential(nn.Conv2d(2, 4, 3, groups=2)))
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    insert_whitening(model, kernel=3)
    assert model(torch.randn(2, 3, 5, 5)).shape == (2, 4, 5, 5), "the spatial size is kept"
    assert patch_matrix(torch.randn(2, 3, 5, 5), 3).shape == (2 * 9, 27)
    with pytest.raises(UsageError, match=r"takes 3 channels, but the training images have shape \(1, 5, 5\)"):
        apply_whitening(nn.Sequential(nn.Conv2d(3, 4, 3)), torch.randn(2, 1, 5, 5))

    trainer = assert_resumes_exactly("whitening", tmp_path)
    assert trainer.callbacks[0].state_dict() == {"done": True}

    trainer = trainer_for("ema,whitening", budget="1ba")  # EMA copies the model at fit start, before whitening
    trainer.fit()
    model_layer, ema_layer = (
        next(m for m in net.modules() if isinstance(m, PatchWhitening))
        for net in (trainer.state.model, trainer.state.eval_model)
    )
    assert model_layer.weight.abs().sum() > 0 and torch.equal(ema_layer.weight, model_layer.weight)


# -------------------------------------------------------------------------------------------- dirac init
def test_dirac_init_makes_the_first_in_channels_filters_identity(tmp_path) -> None:
    baseline = trainer_for("", workload="mnist5k", budget="1ba").state.model
    model = trainer_for("dirac_init", workload="mnist5k", budget="1ba").state.model
    identity_convs = 0
    for (name, conv), plain in zip(model.named_modules(), baseline.modules(), strict=True):
        if not isinstance(conv, nn.Conv2d):
            continue
        inputs = conv.in_channels
        assert inputs <= conv.out_channels, name  # every conv of the small ResNet widens or keeps the width
        expected = torch.zeros_like(conv.weight[:inputs])
        nn.init.dirac_(expected)
        assert torch.equal(conv.weight[:inputs], expected), name
        assert torch.equal(conv.weight[inputs:], plain.weight[inputs:]), f"{name}: the other filters keep their init"
        identity_convs += 1
    assert identity_convs == 9  # stem, 2 per block, 2 shortcuts

    same = model.blocks[0].residual[0]  # 16 -> 16, 3 x 3, padding 1, stride 1
    x = torch.randn(2, 16, 7, 7)
    assert torch.allclose(same(x)[:, :16], x, atol=1e-6)
    widening = nn.Conv2d(3, 5, 3, padding=1)
    assert apply_dirac_init(nn.Sequential(widening, nn.Conv2d(5, 2, 3), nn.Conv2d(5, 5, 2))) == 1
    assert torch.allclose(widening(x[:, :3])[:, :3], x[:, :3], atol=1e-6), "biases of the identity filters zeroed"
    assert_resumes_exactly("dirac_init", tmp_path)


# ------------------------------------------------------------------------------ batch-norm hyperparameters
def test_batchnorm_hparams_set_momentum_and_a_bias_group_that_keeps_its_ratio() -> None:
    lrs: list[tuple[float, float]] = []

    class Rates(Callback):
        def on_before_optimizer_step(self, state) -> None:
            groups = {group.get("name"): group["lr"] for group in state.optimizer.param_groups}
            lrs.append((groups[None], groups[BIAS_GROUP]))

    # whitening rebuilds the optimizer after this method's init: the wrapped factory keeps the group
    methods = "batchnorm_hparams:momentum=0.6:bias_lr_scale=64,whitening"
    trainer = trainer_with(methods, [Rates()], workload="mnist5k", budget="3ba")
    model = trainer.state.model
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(norm.momentum == pytest.approx(0.4) for norm in norms), "PyTorch's momentum is 1 - 0.6"
    base, biases = trainer.state.optimizer.param_groups
    assert biases["name"] == BIAS_GROUP
    assert {id(p) for p in biases["params"]} == {id(norm.bias) for norm in norms}
    assert biases["lr"] == pytest.approx(64 * base["lr"])
    assert biases["lr"] * biases["weight_decay"] == pytest.approx(base["lr"] * base["weight_decay"])
    trainer.fit()
    assert len(lrs) == 3 and all(bias == pytest.approx(64 * lr) for lr, bias in lrs)
    assert lrs[0] != lrs[-1], "the schedule moved both groups"

    norm = nn.BatchNorm2d(1)
    assert set_batchnorm_momentum(nn.Sequential(norm), 0.6) == 1
    x = torch.randn(64, 1, 2, 2) + 3.0
    norm(x)
    assert norm.running_mean.item() == pytest.approx(0.4 * x.mean().item(), rel=1e-5), "0.6 x old + 0.4 x batch"


def test_batchnorm_hparams_resume_exactly(tmp_path) -> None:
    assert_resumes_exactly("batchnorm_hparams", tmp_path)


# ---------------------------------------------------------------------------------------- alternating flip
class FlipProbe(Callback):
    """Records, per epoch, which sample indices were seen mirrored (random images are never symmetric)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.flipped: dict[int, dict[int, bool]] = {}

    def on_after_dataloader(self, state) -> None:
        index = state.batch.extras[SAMPLE_INDEX]
        original = self.images[index]
        for row, sample in enumerate(index.tolist()):
            inputs = state.batch.inputs[row]
            assert torch.equal(inputs, original[row]) or torch.equal(inputs, original[row].flip(-1))
            self.flipped.setdefault(state.clock.epoch, {})[sample] = not torch.equal(inputs, original[row])


def test_alternating_flip_mirrors_each_sample_in_exactly_one_of_two_consecutive_epochs() -> None:
    images = torch.randn(40, 1, 4, 4)
    probe = FlipProbe(images)
    loader = InMemoryLoader(images, torch.arange(40) % 2, batch_size=8, seed=3)
    trainer = Trainer(
        nn.Sequential(nn.Flatten(), nn.Linear(16, 2)),
        loader,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
        budget="3ep",
        seed=3,
        device="cpu",
        callbacks=[probe, AlternatingFlip()],  # after_dataloader runs in reverse: the probe sees flipped batches
    )
    assert isinstance(trainer.state.train_data, IndexedLoader)
    trainer.fit()
    first, second, third = (probe.flipped[epoch] for epoch in range(3))
    assert len(first) == len(second) == 40, "every sample once per epoch"
    assert sum(first.values()) == 20, "a random half in the first epoch"
    assert all(first[i] != second[i] for i in range(40))
    assert first == third

    echoed = trainer_for("data_echoing,alternating_flip", budget="1ba").state.train_data
    assert isinstance(echoed, EchoingLoader) and isinstance(echoed.inner, IndexedLoader), "under any wrapper"


def test_alternating_flip_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("alternating_flip", tmp_path)


# ------------------------------------------------------------------------------ test-time augmentation
def test_tta_is_the_weighted_mean_of_its_views() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(2, 1, 6, 6)
    assert torch.allclose(tta_logits(model, x), 0.5 * model(x) + 0.5 * model(x.flip(-1)), atol=1e-6)

    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    down_right, up_left = padded[..., 0:6, 0:6], padded[..., 2:8, 2:8]  # airbench's two crops
    views = [x, x.flip(-1), up_left, up_left.flip(-1), down_right, down_right.flip(-1)]
    weights = [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    expected = sum(w * model(v) for w, v in zip(weights, views, strict=True))
    assert torch.allclose(TTAWrapper(model, "flip_translate")(x), expected, atol=1e-6)
    with pytest.raises(ValueError, match="views must be one of flip, flip_translate"):
        TTA(views="crop")


def test_tta_evaluation_equals_the_views_mean_and_costs_views_times_the_plain_eval(monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: now[0])

    class Clock(Callback):
        """A training step takes 1 s, and every forward of the model in eval mode 10 s."""

        def on_init(self, state) -> None:
            state.model.register_forward_pre_hook(lambda module, args: self.tick(module))

        def tick(self, module: nn.Module) -> None:
            now[0] += 0.0 if module.training else 10.0

        def on_after_dataloader(self, state) -> None:
            now[0] += 1.0

    plain = trainer_with("", [Clock()], budget="1ep").fit()
    trainer = trainer_with("tta", [Clock()], budget="1ep")
    tta = trainer.fit()

    assert tta.final.flops == plain.final.flops and tta.final.train_seconds == plain.final.train_seconds
    assert tta.final.eval_flops == pytest.approx(2 * plain.final.eval_flops, rel=1e-9)
    assert tta.final.eval_seconds == 2 * plain.final.eval_seconds > 0
    assert trainer.state.eval_model is None, "restored after every evaluation"

    model, data = trainer.state.model.eval(), trainer.eval_data
    with torch.no_grad():
        batches = [(0.5 * model(b.inputs) + 0.5 * model(b.inputs.flip(-1)), b.targets) for b in data.iter_epoch(0)]
    accuracy = sum(int((logits.argmax(-1) == y).sum()) for logits, y in batches) / sum(len(y) for _, y in batches)
    assert tta.final.metrics["accuracy"] == pytest.approx(accuracy)


def test_tta_composes_with_ema_and_the_eval_cost_survives_a_checkpoint(tmp_path) -> None:
    seen = []

    class Peek(Callback):
        def on_eval_start(self, state) -> None:
            seen.append(state.eval_model)

    trainer = trainer_with("ema,tta", [Peek()], budget="1ep")
    trainer.fit()
    ema = trainer.callbacks[0].average
    assert isinstance(seen[0], TTAWrapper) and seen[0].model is ema, "TTA wraps the EMA copy"
    assert trainer.state.eval_model is ema
    point = trainer.state.curve[-1]
    assert point.eval_flops > 0 and CurvePoint.from_dict(point.to_dict()) == point
    assert_resumes_exactly("tta", tmp_path)


def test_methods_that_change_what_evaluation_measures_say_so() -> None:
    changed = {name for name in method_names() if method_class(name).changes_evaluation}
    assert changed == {"ema", "swa", "schedule_free", "tta"}


def test_the_study_store_keeps_a_points_eval_cost(tmp_path) -> None:
    store = StudyStore.create(tmp_path / STORE_NAME)
    store.add_runs([("k", "tta", "10ba", 0, None, {})])
    point = CurvePoint(10, 0.5, 320, 0, 1.5, 2e9, 1.0, 0.3, {"accuracy": 0.9}, eval_seconds=0.25, eval_flops=4e8)
    store.finish(RunOutcome("k", RunStatus.COMPLETED, (point,), wall_seconds=3.0))
    assert store.points("k") == [point]
    assert store.rows()[0]["eval_flops"] == 4e8
    store.close()
