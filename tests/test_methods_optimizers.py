"""Optimizer replacements (lars, lamb, lion, schedule_free) and the lookahead wrapper: each update
against its paper's formula on hand-made tensors, the trainer really using and training with the
new optimizer, exact resumption, settings and composition."""

from __future__ import annotations

import pytest
import schedulefree
import torch
from torch import nn

from algospeed.core.callback import Callback, check_composition
from algospeed.errors import UsageError
from algospeed.methods.optimization.lamb import LAMB, lamb
from algospeed.methods.optimization.lars import LARS, lars
from algospeed.methods.optimization.lion import Lion, lion
from algospeed.methods.optimization.lookahead import Lookahead, lookahead
from algospeed.methods.optimization.schedule_free import schedule_free
from algospeed.methods.spec import MethodSpec, build_method, parse_methods
from algospeed.run_spec import RunSpec, build_trainer
from method_harness import assert_resumes_exactly, trainer_for

DIGITS_LR, DIGITS_WD = 0.05, 5e-4  # the digits workload's SGD settings


def step_with(optimizer: torch.optim.Optimizer, params: list[nn.Parameter], grads: list[torch.Tensor]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    optimizer.step()


def leaf(values: list) -> nn.Parameter:
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


# ------------------------------------------------------------------------------------------ Lion
def test_lion_steps_by_lr_times_the_sign_of_interpolated_momentum_plus_decoupled_decay() -> None:
    lr, wd, (b1, b2) = 0.01, 0.5, (0.9, 0.99)
    w0 = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    g1 = torch.tensor([0.3, -0.1, 0.0, -2.0], dtype=torch.float64)
    g2 = torch.tensor([-0.1, -0.1, 1.0, 0.1], dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    optimizer = lion([w], lr=lr, betas=(b1, b2), weight_decay=wd)
    step_with(optimizer, [w], [g1])
    m1 = (1 - b2) * g1
    w1 = w0 - lr * (torch.sign((1 - b1) * g1) + wd * w0)
    assert torch.allclose(w.detach(), w1)
    step_with(optimizer, [w], [g2])
    # The second direction mixes the first gradient (in m) with the new one: for coordinate 3
    # the momentum (-2) outweighs the new gradient (0.1), so the sign is the momentum's.
    c2 = b1 * m1 + (1 - b1) * g2
    assert torch.sign(c2)[3] == -1 and torch.sign(g2)[3] == 1
    w2 = w1 - lr * (torch.sign(c2) + wd * w1)
    assert torch.allclose(w.detach(), w2)
    assert torch.allclose(optimizer.state[w]["exp_avg"], b2 * m1 + (1 - b2) * g2)


def test_without_decay_every_lion_coordinate_moves_by_exactly_lr() -> None:
    w = nn.Parameter(torch.randn(50, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    before = w.detach().clone()
    step_with(Lion([w], lr=0.003), [w], [torch.randn(50, dtype=torch.float64)])
    assert torch.allclose((w.detach() - before).abs(), torch.full((50,), 0.003, dtype=torch.float64))


# ------------------------------------------------------------------------------------------ LARS
def test_lars_scales_each_layer_by_its_trust_ratio_and_leaves_biases_plain() -> None:
    lr, momentum, wd, eta = 2.0, 0.9, 0.01, 0.001
    weight, bias = leaf([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]]), leaf([0.1, -0.2])
    gw1, gb1 = torch.tensor([[0.2, -0.4, 0.1], [0.0, 0.3, -0.2]], dtype=torch.float64), leaf([1.0, -1.0]).detach()
    gw2, gb2 = torch.tensor([[-0.1, 0.1, 0.5], [0.2, 0.2, 0.0]], dtype=torch.float64), leaf([0.5, 0.5]).detach()
    w0, b0 = weight.detach().clone(), bias.detach().clone()
    optimizer = lars([weight, bias], lr=lr, momentum=momentum, weight_decay=wd, trust_coefficient=eta)

    def local_lr(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return eta * w.norm() / (g.norm() + wd * w.norm())

    step_with(optimizer, [weight, bias], [gw1, gb1])
    v1 = lr * local_lr(w0, gw1) * (gw1 + wd * w0)
    assert torch.allclose(weight.detach(), w0 - v1)
    assert torch.allclose(bias.detach(), b0 - lr * gb1)  # no trust ratio, no weight decay
    w1 = w0 - v1
    step_with(optimizer, [weight, bias], [gw2, gb2])
    v2 = momentum * v1 + lr * local_lr(w1, gw2) * (gw2 + wd * w1)
    assert torch.allclose(weight.detach(), w1 - v2)
    # The ratio makes the step's size independent of the gradient's scale.
    scaled = leaf(w0.tolist())
    step_with(LARS([scaled], lr=lr, momentum=momentum, trust_coefficient=eta), [scaled], [1000 * gw1])
    plain = leaf(w0.tolist())
    step_with(LARS([plain], lr=lr, momentum=momentum, trust_coefficient=eta), [plain], [gw1])
    assert torch.allclose(scaled.detach(), plain.detach())


# ------------------------------------------------------------------------------------------ LAMB
def test_lamb_rescales_the_adam_update_plus_decay_by_the_layer_trust_ratio() -> None:
    lr, (b1, b2), eps, wd = 0.1, (0.9, 0.999), 1e-6, 0.01
    weight, bias = leaf([[3.0, -4.0], [1.0, 2.0]]), leaf([0.0, 0.0])  # the bias starts at zero
    gw, gb = torch.tensor([[0.1, 0.2], [-0.3, 0.05]], dtype=torch.float64), torch.tensor([0.5, -0.25]).double()
    w0 = weight.detach().clone()
    optimizer = lamb([weight, bias], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    step_with(optimizer, [weight, bias], [gw, gb])
    # Step 1 with bias correction: m_hat = g, v_hat = g^2, so r = g / (|g| + eps).
    r = gw / (gw.abs() + eps)
    u = r + wd * w0
    assert torch.allclose(weight.detach(), w0 - lr * (w0.norm() / u.norm()) * u)
    assert torch.allclose(bias.detach(), -lr * gb / (gb.abs() + eps))  # excluded: ratio 1, no decay
    # Two more steps against a direct transcription of Algorithm 2.
    m, v, w = (1 - b1) * gw, (1 - b2) * gw**2, weight.detach().clone()
    for t, g in ((2, gw * -2), (3, gw + 0.3)):
        step_with(optimizer, [weight, bias], [g, gb])
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        u = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps) + wd * w
        w = w - lr * w.norm() / u.norm() * u
        assert torch.allclose(weight.detach(), w)
    assert optimizer.state[weight]["step"] == 3


def test_lamb_takes_trust_ratio_one_for_a_zero_weight() -> None:
    w = nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    step_with(LAMB([w], lr=0.1), [w], [torch.ones(2, 2, dtype=torch.float64)])
    assert torch.allclose(w.detach(), torch.full((2, 2), -0.1, dtype=torch.float64), atol=1e-6)


# ------------------------------------------------------------------------------------- Lookahead
def test_lookahead_pulls_slow_weights_alpha_of_the_way_every_k_steps_and_resets_fast() -> None:
    lr, k, alpha = 0.1, 3, 0.5
    g = torch.tensor([1.0, -2.0], dtype=torch.float64)
    w = leaf([0.0, 1.0])
    w0 = w.detach().clone()
    optimizer = lookahead(torch.optim.SGD([w], lr=lr), k=k, alpha=alpha)
    for t in (1, 2):
        step_with(optimizer, [w], [g])
        assert torch.allclose(w.detach(), w0 - t * lr * g)  # fast weights move freely in between
        assert torch.equal(optimizer.slow[0], w0)
    step_with(optimizer, [w], [g])
    slow = w0 + alpha * ((w0 - 3 * lr * g) - w0)
    assert torch.allclose(optimizer.slow[0], slow) and torch.equal(w.detach(), optimizer.slow[0])
    step_with(optimizer, [w], [g])
    assert torch.allclose(w.detach(), slow - lr * g)

    # Its state_dict carries the slow weights and the counter: a copy continues identically.
    saved = optimizer.state_dict()
    assert saved["lookahead"]["steps"] == 4
    twin = leaf(w.detach().tolist())
    copy = Lookahead(torch.optim.SGD([twin], lr=lr), k=k, alpha=alpha)
    copy.load_state_dict(saved)
    for _ in range(2):
        step_with(optimizer, [w], [g])
        step_with(copy, [twin], [g])
    assert torch.equal(w.detach(), twin.detach()) and torch.equal(optimizer.slow[0], copy.slow[0])
    assert torch.allclose(w.detach(), slow + alpha * ((slow - 3 * lr * g) - slow))


def test_lookahead_shares_the_inner_param_groups_so_the_schedule_reaches_them() -> None:
    w = leaf([1.0])
    inner = Lion([w], lr=0.1)
    wrapped = Lookahead(inner)
    wrapped.param_groups[0]["lr"] = 0.5
    assert inner.param_groups[0]["lr"] == 0.5 and wrapped.state is inner.state


# -------------------------------------------------------------------- schedule-free plain function
def test_schedule_free_builds_the_package_optimizer_of_the_asked_family() -> None:
    w = [nn.Parameter(torch.zeros(2))]
    assert isinstance(schedule_free(w, "sgd", lr=1.0), schedulefree.SGDScheduleFree)
    assert isinstance(schedule_free(w, "adamw", lr=1e-3), schedulefree.AdamWScheduleFree)
    with pytest.raises(ValueError, match="kind must be"):
        schedule_free(w, "rmsprop", lr=1.0)


# ------------------------------------------------------------------------- in the trainer
def first_group(trainer) -> dict:
    optimizer = trainer.state.optimizer
    return (optimizer.optimizer if isinstance(optimizer, Lookahead) else optimizer).param_groups[0]


@pytest.mark.parametrize(
    ("methods", "kind", "lr"),
    [
        ("lars", LARS, DIGITS_LR * 100),
        ("lamb", LAMB, DIGITS_LR * 0.5),
        ("lion", Lion, DIGITS_LR * 0.05),
        ("lion:lr_scale=0.1", Lion, DIGITS_LR * 0.1),
        ("schedule_free", schedulefree.SGDScheduleFree, DIGITS_LR * 20),
    ],
)
def test_the_trainer_trains_with_the_replacement_optimizer(methods: str, kind: type, lr: float) -> None:
    trainer = trainer_for(methods, budget="2ep")
    assert type(trainer.state.optimizer) is kind
    assert first_group(trainer)["lr"] == pytest.approx(lr)
    trainable = {id(p) for p in trainer.state.model.parameters()}
    held = {id(p) for group in trainer.state.optimizer.param_groups for p in group["params"]}
    assert held == trainable
    result = trainer.fit()
    assert result.points[-1].train_loss < 0.6 * result.points[0].train_loss
    assert result.final.metrics["accuracy"] > 0.8


def test_lars_and_lamb_exclude_biases_and_norm_parameters_in_the_trainer() -> None:
    for name in ("lars", "lamb"):
        groups = trainer_for(name, budget="1ba").state.optimizer.param_groups
        assert [g["adapt"] for g in groups] == [True, False]
        assert all(p.dim() > 1 for p in groups[0]["params"]) and groups[0]["weight_decay"] == DIGITS_WD
        assert all(p.dim() == 1 for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0.0


def test_lion_keeps_the_base_lr_times_weight_decay() -> None:
    group = first_group(trainer_for("lion", budget="1ba"))
    assert group["lr"] * group["weight_decay"] == pytest.approx(DIGITS_LR * DIGITS_WD)
    assert first_group(trainer_for("lion:weight_decay=0.3", budget="1ba"))["weight_decay"] == 0.3


def test_schedule_free_follows_the_base_family_and_holds_the_rate_after_warmup() -> None:
    trainer = trainer_for("schedule_free:warmup=0.1", workload="mnist1d", options={"samples": 2000}, budget="1ba")
    assert isinstance(trainer.state.optimizer, schedulefree.AdamWScheduleFree)
    assert first_group(trainer)["lr"] == pytest.approx(3e-3 * 5)
    schedule = trainer.state.schedule
    assert schedule(0.0) < 0.05 and schedule(0.05) < 1.0
    assert schedule(0.1) == schedule(0.5) == schedule(1.0) == 1.0


class WeightProbe(Callback):
    """Records the model's weights and the schedule-free state around evaluations (runs after methods)."""

    def __init__(self) -> None:
        self.last_y: list[torch.Tensor] = []
        self.last_z: list[torch.Tensor] = []
        self.expected_x_at_eval: list[list[torch.Tensor]] = []
        self.seen_at_eval: list[list[torch.Tensor]] = []
        self.y_before_eval: list[torch.Tensor] | None = None
        self.restored: list[bool] = []

    def params(self, state) -> list[torch.Tensor]:
        return [p.detach().clone() for p in state.model.parameters()]

    def on_batch_end(self, state) -> None:
        self.last_y = self.params(state)
        optimizer = state.optimizer
        self.last_z = [optimizer.state[p]["z"].clone() for p in state.model.parameters()]
        self.beta = optimizer.param_groups[0]["momentum"]

    def expected_x(self) -> list[torch.Tensor]:
        return [torch.lerp(y, z, 1 - 1 / self.beta) for y, z in zip(self.last_y, self.last_z, strict=True)]

    def on_eval_start(self, state) -> None:
        self.seen_at_eval.append(self.params(state))
        self.expected_x_at_eval.append(self.expected_x())
        self.y_before_eval = self.last_y

    def on_before_forward(self, state) -> None:
        if self.y_before_eval is not None:
            now = self.params(state)
            self.restored.append(all(torch.equal(a, b) for a, b in zip(now, self.y_before_eval, strict=True)))
            self.y_before_eval = None


def test_schedule_free_evaluates_the_averaged_weights_and_restores_the_training_ones_exactly() -> None:
    probe = WeightProbe()
    spec = RunSpec(workload="digits", budget="2ep", methods="schedule_free", eval_interval="0.5ep", device="cpu")
    trainer = build_trainer(spec, callbacks=[probe])
    trainer.fit()
    assert len(probe.seen_at_eval) == 4
    for seen, expected in zip(probe.seen_at_eval, probe.expected_x_at_eval, strict=True):
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(seen, expected, strict=True))
    # x really differs from y, the weights training computes gradients at.
    assert not all(torch.allclose(a, b) for a, b in zip(probe.seen_at_eval[-1], probe.last_y, strict=True))
    assert probe.restored == [True, True, True]  # after each mid-run eval, y comes back bit for bit
    final = [p.detach() for p in trainer.state.model.parameters()]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(final, probe.expected_x(), strict=True))


# ------------------------------------------------------------------------------ composition
@pytest.mark.parametrize("methods", ["lion,lookahead", "lookahead,lion"])
def test_lookahead_wraps_lion_in_either_order_and_trains(methods: str) -> None:
    trainer = trainer_for(methods, budget="2ep")
    optimizer = trainer.state.optimizer
    assert isinstance(optimizer, Lookahead) and isinstance(optimizer.optimizer, Lion)
    assert first_group(trainer)["lr"] == pytest.approx(DIGITS_LR * 0.05)
    result = trainer.fit()
    assert optimizer.steps == result.final.step
    assert result.points[-1].train_loss < 0.6 * result.points[0].train_loss


def test_lookahead_over_the_default_optimizer_keeps_sgd_inside() -> None:
    optimizer = trainer_for("lookahead:k=10:alpha=0.8", budget="1ba").state.optimizer
    assert isinstance(optimizer.optimizer, torch.optim.SGD) and (optimizer.k, optimizer.alpha) == (10, 0.8)


@pytest.mark.parametrize(
    "methods", ["lion,lamb", "lars,schedule_free", "schedule_free,lookahead", "schedule_free,cosine_schedule"]
)
def test_conflicting_optimizer_methods_are_refused_up_front(methods: str) -> None:
    with pytest.raises(UsageError, match="cannot be combined"):
        check_composition([build_method(spec) for spec in parse_methods(methods)])


# ----------------------------------------------------------------------------------- resume
@pytest.mark.parametrize(
    ("methods", "budget"),
    [("lars", "1ep"), ("lamb", "1ep"), ("lion", "1ep"), ("lookahead:k=7", "1ep"), ("lion,lookahead", "1ep")],
)
def test_optimizer_methods_resume_exactly(methods: str, budget: str, tmp_path) -> None:
    assert_resumes_exactly(methods, tmp_path, budget=budget)


def test_schedule_free_resumes_exactly_across_evaluations(tmp_path) -> None:
    # Evaluations (eval/train swaps) fall before and after the mid-run checkpoint.
    full = assert_resumes_exactly("schedule_free", tmp_path, budget="2ep")
    assert len(full.state.curve) == 2


# --------------------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("lion", {"lr_scale": -1.0}, "lr_scale must be positive"),
        ("lion", {"beta1": 1.0}, r"beta1 must be in \[0, 1\)"),
        ("lars", {"trust_coefficient": 0.0}, "trust_coefficient must be positive"),
        ("lars", {"weight_decay": -0.1}, "weight_decay must be non-negative"),
        ("lamb", {"beta2": 1.5}, r"beta2 must be in \[0, 1\)"),
        ("lamb", {"eps": 0.0}, "eps must be positive"),
        ("lookahead", {"k": 0}, "k .* must be at least 1"),
        ("lookahead", {"alpha": 1.5}, r"alpha .* must be in \(0, 1\]"),
        ("schedule_free", {"warmup": 1.0}, "warmup must be a fraction"),
        ("schedule_free", {"momentum": 0.0}, r"momentum must be in \(0, 1\)"),
    ],
)
def test_bad_settings_are_usage_errors(name: str, settings: dict, message: str) -> None:
    with pytest.raises(UsageError, match=f"method '{name}': {message}"):
        build_method(MethodSpec(name=name, settings=settings))


@pytest.mark.parametrize("build", ["lars", "lamb", "lion"])
def test_a_step_with_a_closure_recomputes_the_loss_with_gradients(build: str) -> None:
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = {"lars": lars, "lamb": lamb, "lion": lion}[build]([weight], lr=0.1)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (weight**2).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        loss = optimizer.step(closure)
    assert loss.item() == 5.0 and weight.grad is not None
    assert not torch.equal(weight.detach(), torch.tensor([1.0, -2.0]))
