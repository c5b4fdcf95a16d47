"""The optimizers behind today's records (muon, normuon, shampoo, soap, ademamix, prodigy) and the
cautious wrapper: each update against a transcription of its paper's formula on hand-made tensors
(plain torch, numpy and scipy, not this package's code), which parameters Muon steps, the trainer
training with them, exact resumption, composition and settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import fractional_matrix_power
from torch import nn

from algospeed.core.callback import check_composition
from algospeed.errors import UsageError
from algospeed.methods.optimization.ademamix import ademamix, ademamix_schedule
from algospeed.methods.optimization.cautious import Cautious, cautious
from algospeed.methods.optimization.lion import Lion, lion
from algospeed.methods.optimization.lookahead import Lookahead
from algospeed.methods.optimization.muon import NewtonSchulzMuon, hidden_matrices, muon
from algospeed.methods.optimization.normuon import normuon
from algospeed.methods.optimization.prodigy import Prodigy, prodigy
from algospeed.methods.optimization.shampoo import shampoo
from algospeed.methods.optimization.soap import SOAP, soap
from algospeed.methods.shared.optimizer_swap import CombinedOptimizer
from algospeed.methods.spec import MethodSpec, build_method, parse_methods
from method_harness import assert_resumes_exactly, trainer_for

DIGITS_LR, DIGITS_WD = 0.05, 5e-4  # the digits workload's SGD settings
F64 = torch.float64


def step_with(optimizer: torch.optim.Optimizer, params: list[nn.Parameter], grads: list[torch.Tensor]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    optimizer.step()


def tensor(values: list, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


W0 = [[0.5, -1.0, 0.25], [1.5, 0.75, -0.5]]  # a 2 x 3 weight: 2 output neurons, 3 inputs
G1 = [[0.2, -0.4, 0.1], [0.3, 0.05, -0.2]]
G2 = [[-0.1, 0.3, 0.2], [0.25, -0.15, 0.05]]
G3 = [[0.05, 0.1, -0.3], [-0.2, 0.2, 0.1]]
G4 = [[0.3, -0.05, 0.15], [0.1, 0.25, -0.1]]


def orthogonalized(matrix: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Keller Jordan's quintic Newton-Schulz iteration (3.4445, -4.7750, 2.0315), exactly, in float64."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = matrix.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / x.norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class TinyLM(nn.Module):
    """Embedding, one hidden layer with a bias, a norm and a head: every kind of parameter Muon splits."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.hidden = nn.Linear(3, 2)
        self.norm = nn.LayerNorm(2)
        self.head = nn.Linear(2, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(torch.relu(self.hidden(self.embed(tokens)))))


def tiny_lm() -> TinyLM:
    torch.manual_seed(0)
    model = TinyLM()
    with torch.no_grad():
        model.hidden.weight.copy_(torch.tensor(W0))
    return model


def fixed_grads(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(p.shape, generator=generator) for name, p in model.named_parameters()}


def step_model(optimizer: torch.optim.Optimizer, model: nn.Module, grads: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        p.grad = grads[name].clone()
    optimizer.step()


# ------------------------------------------------------------------------------------------ Muon
def test_muon_steps_the_hidden_matrix_by_orthogonalized_nesterov_momentum_and_the_rest_by_adamw() -> None:
    lr, wd, mu = 0.1, 0.5, 0.9
    model = tiny_lm()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = muon(model, lr, weight_decay=wd, momentum=mu)
    g1, g2 = fixed_grads(model, 1), fixed_grads(model, 2)
    g1["hidden.weight"], g2["hidden.weight"] = torch.tensor(G1), torch.tensor(G2)
    scale = lr * 0.2 * math.sqrt(3)  # Liu et al.'s match-RMS adjustment for a 2 x 3 matrix

    step_model(optimizer, model, g1)
    w0 = before["hidden.weight"].double()
    b1 = (1 - mu) * tensor(G1)
    w1 = (1 - lr * wd) * w0 - scale * orthogonalized(torch.lerp(tensor(G1), b1, mu))
    w = model.hidden.weight.detach().double()
    assert torch.allclose(w, w1, atol=0.04 * scale)  # Newton-Schulz runs in bfloat16: a few % of O
    # AdamW's first step is lr * g / (|g| + eps) plus decoupled decay, for everything but the hidden matrix.
    for name, p in model.named_parameters():
        if name != "hidden.weight":
            expected = before[name] * (1 - lr * wd) - lr * g1[name] / (g1[name].abs() + 1e-8)
            assert torch.allclose(p.detach(), expected, atol=1e-6), name

    step_model(optimizer, model, g2)
    b2 = mu * b1 + (1 - mu) * tensor(G2)
    w2 = (1 - lr * wd) * w - scale * orthogonalized(torch.lerp(tensor(G2), b2, mu))
    assert torch.allclose(model.hidden.weight.detach().double(), w2, atol=0.04 * scale)
    # Without Nesterov the second step would differ by far more than the tolerance.
    plain = (1 - lr * wd) * w - scale * orthogonalized(b2)
    assert (plain - w2).abs().max() > 0.3 * scale
    assert set(optimizer.parts) == {"matrices", "adamw"}
    assert isinstance(optimizer.parts["matrices"], getattr(torch.optim, "Muon", NewtonSchulzMuon))


def test_muon_flattens_a_convolution_kernel_whatever_its_memory_format() -> None:
    lr = 0.05
    generator = torch.Generator().manual_seed(3)
    kernel, grad = torch.randn(3, 3, 2, 2, generator=generator), torch.randn(3, 3, 2, 2, generator=generator)
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        model = nn.Sequential(nn.Conv2d(2, 3, 2, bias=False), nn.Conv2d(3, 3, 2, bias=False), nn.Conv2d(3, 3, 1))
        with torch.no_grad():
            model[1].weight.copy_(kernel)
        model.to(memory_format=layout)
        optimizer = muon(model, lr, weight_decay=0.0)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        model[1].weight.grad = grad.clone().contiguous(memory_format=layout)
        optimizer.step()
        assert model[1].weight.shape == (3, 3, 2, 2) and model[1].weight.grad.shape == (3, 3, 2, 2)
        results.append(model[1].weight.detach().clone())
    direction = torch.lerp(grad, 0.05 * grad, 0.95).reshape(3, 12)  # Nesterov on a zero buffer: (out, in x kh x kw)
    scale = lr * 0.2 * math.sqrt(12)
    expected = kernel.double() - scale * orthogonalized(direction).view(3, 3, 2, 2)
    for result in results:
        assert torch.allclose(result.double(), expected, atol=0.04 * scale)
    assert torch.equal(results[0], results[1].contiguous())


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch has no Muon to compare with")
@pytest.mark.parametrize(("nesterov", "adjust"), [(True, "match_rms_adamw"), (False, "original")])
def test_the_own_newton_schulz_fallback_steps_exactly_as_torch_muon(nesterov: bool, adjust: str) -> None:
    generator = torch.Generator().manual_seed(5)
    start = [torch.randn(6, 4, generator=generator), torch.randn(4, 6, generator=generator)]
    ours = [nn.Parameter(w.clone()) for w in start]
    theirs = [nn.Parameter(w.clone()) for w in start]
    settings = dict(lr=0.03, weight_decay=0.1, momentum=0.9, nesterov=nesterov, adjust_lr_fn=adjust)
    own, reference = NewtonSchulzMuon(ours, **settings), torch.optim.Muon(theirs, **settings)
    for _ in range(3):
        grads = [torch.randn(w.shape, generator=generator) for w in start]
        step_with(own, ours, grads)
        step_with(reference, theirs, grads)
    assert all(torch.equal(a.detach(), b.detach()) for a, b in zip(ours, theirs, strict=True))


def test_muon_splits_hidden_matrices_from_input_layer_head_embeddings_and_vectors() -> None:
    model = tiny_lm()
    names = {id(p): name for name, p in model.named_parameters()}

    def split(**kwargs) -> tuple[set[str], set[str]]:
        hidden, rest = hidden_matrices(model, **kwargs)
        return {names[id(p)] for p in hidden}, {names[id(p)] for p in rest}

    assert split() == ({"hidden.weight"}, set(names.values()) - {"hidden.weight"})
    assert split(adamw_layers="embed")[0] == {"hidden.weight", "head.weight"}  # the embedding stays AdamW's
    assert split(adamw_layers="none")[0] == {"hidden.weight", "head.weight"}
    with pytest.raises(UsageError, match="adamw_layers names no module 'lm_head'"):
        hidden_matrices(model, adamw_layers="lm_head")
    with pytest.raises(UsageError, match="no hidden weight matrices"):
        muon(nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)), 0.01)


def test_muon_in_the_trainer_steps_the_hidden_convolution_and_adamw_the_rest() -> None:
    trainer = trainer_for("muon", budget="1ba")
    method, optimizer = trainer.callbacks[0], trainer.state.optimizer
    assert isinstance(optimizer, CombinedOptimizer)
    names = {id(p): name for name, p in trainer.state.model.named_parameters()}
    muon_names = {names[id(p)] for group in optimizer.parts["matrices"].param_groups for p in group["params"]}
    adamw_names = {names[id(p)] for group in optimizer.parts["adamw"].param_groups for p in group["params"]}
    assert muon_names == {"features.3.weight"}  # the first convolution and the head are AdamW's
    assert adamw_names == set(names.values()) - muon_names
    assert method.effective_lr == pytest.approx(DIGITS_LR * 0.1) == method.effective_muon_lr
    assert method.effective_lr * method.effective_weight_decay == pytest.approx(DIGITS_LR * DIGITS_WD)
    assert all(group["lr"] == pytest.approx(method.effective_lr) for group in optimizer.param_groups)
    ratio = trainer_for("muon:muon_lr_ratio=4:adamw_layers=head", budget="1ba")
    groups = ratio.state.optimizer.parts["matrices"].param_groups
    assert groups[0]["lr"] == pytest.approx(4 * DIGITS_LR * 0.1) and len(groups[0]["params"]) == 2


def test_the_combined_optimizer_state_follows_each_parameter_to_its_part() -> None:
    model = tiny_lm()
    optimizer = muon(model, 0.01)
    step_model(optimizer, model, fixed_grads(model, 1))
    assert "momentum_buffer" in optimizer.state[model.hidden.weight]
    assert "exp_avg" in optimizer.state[model.head.weight]
    assert len(optimizer.state) == len(list(model.parameters()))
    optimizer.state.pop(model.head.weight)
    assert model.head.weight not in optimizer.parts["adamw"].state
    with pytest.raises(ValueError, match="parts"):
        optimizer.load_state_dict({"matrices": optimizer.parts["matrices"].state_dict()})


# --------------------------------------------------------------------------------------- NorMuon
def test_normuon_divides_each_neuron_by_its_second_moment_and_matches_adamw_rms() -> None:
    lr, wd, (b1, b2), eps = 0.1, 0.2, (0.9, 0.8), 1e-8
    model = tiny_lm()
    optimizer = normuon(model, lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    g1, g2 = fixed_grads(model, 1), fixed_grads(model, 2)
    g1["hidden.weight"], g2["hidden.weight"] = torch.tensor(G1), torch.tensor(G2)
    w, m, v = tensor(W0), torch.zeros(2, 3, dtype=F64), torch.zeros(2, 1, dtype=F64)
    for grads, g in ((g1, G1), (g2, G2)):
        before = model.hidden.weight.detach().double().clone()
        step_model(optimizer, model, grads)
        m = b1 * m + (1 - b1) * tensor(g)  # plain EMA momentum, no Nesterov
        o = orthogonalized(m)
        v = b2 * v + (1 - b2) * (o * o).mean(dim=1, keepdim=True)
        p = o / (v.sqrt() + eps)
        w = (1 - lr * wd) * w - 0.2 * lr * math.sqrt(6) / p.norm() * p
        after = model.hidden.weight.detach().double()
        assert torch.allclose(after, w, atol=0.02 * lr)
        # Exact, whatever bfloat16 does: the update's RMS is AdamW's 0.2 lr per entry.
        update = after - (1 - lr * wd) * before
        assert update.norm() / math.sqrt(6) == pytest.approx(0.2 * lr, rel=1e-5)
        w = after
    # After the first step each neuron (row) has the same update size: normalized by its own moment.
    fresh = tiny_lm()
    step_model(normuon(fresh, lr, betas=(b1, b2)), fresh, g1)
    rows = (fresh.hidden.weight.detach() - torch.tensor(W0)).norm(dim=1)
    assert rows[0].item() == pytest.approx(rows[1].item(), rel=1e-5)


# ---------------------------------------------------------------------------------------- Shampoo
def root(matrix: np.ndarray, power: float) -> torch.Tensor:
    return torch.from_numpy(np.real(fractional_matrix_power(matrix, power)))


def test_shampoo_preconditions_a_matrix_by_inverse_fourth_roots_of_summed_statistics() -> None:
    lr, eps = 0.1, 1e-4
    w = nn.Parameter(tensor(W0))
    optimizer = shampoo([w], lr, betas=(0.0, 1.0), eps=eps, update_interval=1, graft="none")
    left, right, expected = eps * np.eye(2), eps * np.eye(3), tensor(W0)
    for g in (G1, G2, G3):
        step_with(optimizer, [w], [tensor(g)])
        gn = np.array(g)
        left, right = left + gn @ gn.T, right + gn.T @ gn  # Algorithm 1: L = eps I + sum G G^T
        expected = expected - lr * root(left, -0.25) @ tensor(g) @ root(right, -0.25)
        assert torch.allclose(w.detach(), expected, atol=1e-10)


def test_shampoo_reuses_its_roots_between_updates_and_grafts_adam_step_sizes() -> None:
    lr, eps = 0.1, 1e-4
    w = nn.Parameter(tensor(W0))
    optimizer = shampoo([w], lr, betas=(0.0, 1.0), eps=eps, update_interval=2, graft="none")
    step_with(optimizer, [w], [tensor(G1)])
    g1 = np.array(G1)
    stale_left, stale_right = root(eps * np.eye(2) + g1 @ g1.T, -0.25), root(eps * np.eye(3) + g1.T @ g1, -0.25)
    after_one = w.detach().clone()
    step_with(optimizer, [w], [tensor(G2)])  # statistics grow, the roots stay those of step 1
    assert torch.allclose(w.detach(), after_one - lr * stale_left @ tensor(G2) @ stale_right, atol=1e-10)

    # Grafting: Shampoo's direction with Adam's step size (Adam with momentum 0.9 at its first step: g / |g|).
    bias = nn.Parameter(tensor([0.5, -0.5, 1.0]))
    graft = shampoo([bias], lr, betas=(0.9, 1.0), eps=eps, graft="adam")
    gb = tensor([0.3, -0.1, 0.2])
    step_with(graft, [bias], [gb])
    step = tensor([0.5, -0.5, 1.0]) - bias.detach()
    adam = gb / (gb.abs() + 1e-8)
    assert step.norm() == pytest.approx(lr * adam.norm().item(), rel=1e-9)
    # A vector is an order-1 tensor: full-matrix AdaGrad, (eps I + g g^T)^(-1/2) g, before the graft.
    direction = root(eps * np.eye(3) + np.outer(gb.numpy(), gb.numpy()), -0.5) @ gb
    assert torch.allclose(step / step.norm(), direction / direction.norm(), atol=1e-9)


# ------------------------------------------------------------------------------------------- SOAP
def test_soap_runs_adam_in_the_eigenbasis_and_refreshes_it_by_power_iteration() -> None:
    lr, (b1, b2), eps, wd, interval = 0.1, (0.9, 0.8), 1e-8, 0.1, 2
    w, bias = nn.Parameter(tensor(W0)), nn.Parameter(tensor([0.5, -0.5]))
    optimizer = soap([w, bias], lr, betas=(b1, b2), eps=eps, weight_decay=wd, precondition_interval=interval)
    gb = [tensor([0.3, -0.1]), tensor([-0.2, 0.4]), tensor([0.1, 0.1]), tensor([0.2, -0.3])]

    step_with(optimizer, [w, bias], [tensor(G1), gb[0]])  # the first gradient only builds the bases
    assert torch.equal(w.detach(), tensor(W0)) and torch.equal(bias.detach(), tensor([0.5, -0.5]))
    g = tensor(G1)
    left, right = (1 - b2) * g @ g.T, (1 - b2) * g.T @ g
    q_left, q_right = torch.linalg.eigh(left)[1].flip(1), torch.linalg.eigh(right)[1].flip(1)
    expected, m, v = tensor(W0), torch.zeros(2, 3, dtype=F64), torch.zeros(2, 3, dtype=F64)
    expected_bias, mb, vb = tensor([0.5, -0.5]), torch.zeros(2, dtype=F64), torch.zeros(2, dtype=F64)
    for t, (g, grad_bias) in enumerate(zip((G2, G3, G4), gb[1:], strict=True), start=1):
        step_with(optimizer, [w, bias], [tensor(g), grad_bias])
        g = tensor(g)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * (q_left.T @ g @ q_right) ** 2
        n = q_left @ ((q_left.T @ m @ q_right) / (v.sqrt() + eps)) @ q_right.T
        size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        expected = (expected - size * n) * (1 - lr * wd)
        assert torch.allclose(w.detach(), expected, atol=1e-10), t
        mb, vb = b1 * mb + (1 - b1) * grad_bias, b2 * vb + (1 - b2) * grad_bias**2
        expected_bias = (expected_bias - size * mb / (vb.sqrt() + eps)) * (1 - lr * wd)  # vectors: plain Adam
        assert torch.allclose(bias.detach(), expected_bias, atol=1e-10), t
        left, right = b2 * left + (1 - b2) * g @ g.T, b2 * right + (1 - b2) * g.T @ g
        if t % interval == 0:  # Algorithm 4: sort by estimated eigenvalue, reorder V, one power iteration
            order = torch.argsort(torch.diagonal(q_left.T @ left @ q_left), descending=True)
            v, q_left = v[order, :], torch.linalg.qr(left @ q_left[:, order])[0]
            order = torch.argsort(torch.diagonal(q_right.T @ right @ q_right), descending=True)
            v, q_right = v[:, order], torch.linalg.qr(right @ q_right[:, order])[0]
    assert isinstance(optimizer, SOAP) and optimizer.state[w]["step"] == 3


# --------------------------------------------------------------------------------------- AdEMAMix
def test_ademamix_warms_alpha_linearly_and_beta3_linearly_in_half_life() -> None:
    beta1, beta3, alpha = 0.9, 0.9999, 5.0

    def half_life(beta: float) -> float:  # the reference code's f(beta) = ln(0.5) / ln(beta) - 1
        return math.log(0.5) / math.log(beta) - 1

    for progress, warmup in ((0.0, 0.5), (0.1, 0.5), (0.25, 0.5), (0.4, 0.8), (0.7, 0.5), (1.0, 1.0)):
        a, b3 = ademamix_schedule(progress, alpha, beta1, beta3, warmup)
        u = min(progress / warmup, 1.0)
        assert a == pytest.approx(alpha * u)
        life = (1 - u) * half_life(beta1) + u * half_life(beta3)
        assert b3 == pytest.approx(0.5 ** (1 / (life + 1)), rel=1e-12)
    assert ademamix_schedule(0.0, alpha, beta1, beta3, 1.0)[1] == pytest.approx(beta1)
    assert ademamix_schedule(1.0, alpha, beta1, beta3, 1.0)[1] == pytest.approx(beta3)


def test_ademamix_adds_alpha_times_the_slow_ema_to_adams_numerator() -> None:
    lr, (b1, b2, b3), alpha, warmup, eps, wd = 0.1, (0.9, 0.99, 0.999), 4.0, 0.5, 1e-8, 0.1
    progress = iter([0.25, 0.75])
    w = nn.Parameter(tensor(W0))
    optimizer = ademamix([w], lr, (b1, b2, b3), alpha, warmup, eps, wd, progress=lambda: next(progress))
    expected, m1, m2, nu = tensor(W0), 0.0, 0.0, 0.0
    for t, (g, p) in enumerate(((G1, 0.25), (G2, 0.75)), start=1):
        step_with(optimizer, [w], [tensor(g)])
        a_t, b3_t = ademamix_schedule(p, alpha, b1, b3, warmup)
        g = tensor(g)
        m1, m2, nu = b1 * m1 + (1 - b1) * g, b3_t * m2 + (1 - b3_t) * g, b2 * nu + (1 - b2) * g * g
        update = (m1 / (1 - b1**t) + a_t * m2) / ((nu / (1 - b2**t)).sqrt() + eps)
        expected = expected - lr * (update + wd * expected)
        assert torch.allclose(w.detach(), expected, atol=1e-12), t
    assert a_t == alpha and b3_t == b3  # past the warmup: the final values


def test_ademamix_follows_the_runs_progress_in_the_trainer() -> None:
    trainer = trainer_for("ademamix:warmup=0.5", budget="4ba")
    seen = []
    optimizer = trainer.state.optimizer
    original = optimizer.progress
    optimizer.progress = lambda: seen.append(original()) or seen[-1]
    trainer.fit()
    assert seen == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert trainer.callbacks[0].effective_lr == pytest.approx(DIGITS_LR * 0.1)


# ---------------------------------------------------------------------------------------- Prodigy
def test_prodigy_estimates_d_from_the_distance_travelled_as_in_the_reference() -> None:
    d0, (b1, b2), eps, wd = 1e-3, (0.9, 0.999), 1e-8, 0.01
    b3 = math.sqrt(b2)
    x = nn.Parameter(tensor(W0))
    optimizer = prodigy([x], lr=1.0, betas=(b1, b2), weight_decay=wd, d0=d0)
    x0 = tensor(W0)
    d, d_max, r = d0, d0, 0.0
    s, m, v, expected = torch.zeros(2, 3, dtype=F64), 0.0, 0.0, tensor(W0)
    ds = []
    for g in [tensor(G1) + 0.3 * tensor(other) for other in (G1, G2, G3, G4, G2, G3)]:  # correlated gradients
        step_with(optimizer, [x], [g])
        dlr = d * 1.0
        r = b3 * r + (d / d0) * dlr * torch.dot(g.flatten(), (x0 - expected).flatten()).item()
        m, v = b1 * m + (1 - b1) * d * g, b2 * v + (1 - b2) * d * d * g * g
        s = b3 * s + (d / d0) * dlr * g
        d_hat = r / s.abs().sum().item()
        new_d = max(d, d_hat) if d == d0 else d
        d_max = max(d_max, d_hat)
        new_d = min(d_max, new_d * math.inf)
        expected = expected * (1 - wd * dlr) - dlr * m / (v.sqrt() + new_d * eps)
        d = new_d
        ds.append(d)
        assert torch.allclose(x.detach(), expected, atol=1e-12)
        assert optimizer.d == pytest.approx(d, rel=1e-12) and optimizer.effective_lr == pytest.approx(d)
    assert ds == sorted(ds) and ds[-1] > 3 * d0  # d grew from its start as the weights travelled


def test_prodigy_ignores_the_base_lr_and_exposes_d_in_the_trainer() -> None:
    trainer = trainer_for("prodigy", budget="6ba")
    assert isinstance(trainer.state.optimizer, Prodigy) and trainer.state.optimizer.param_groups[0]["lr"] == 1.0
    trainer.fit()
    method, group = trainer.callbacks[0], trainer.state.optimizer.param_groups[0]
    assert method.d == group["d"] > 1e-6
    assert method.effective_lr == pytest.approx(group["d"] * group["lr"])


# --------------------------------------------------------------------------------------- Cautious
def test_cautious_adamw_keeps_only_components_that_agree_with_the_gradient() -> None:
    lr, (b1, b2), eps, wd, mask_eps = 0.1, (0.9, 0.999), 1e-8, 0.5, 1e-3
    w = nn.Parameter(tensor(W0))
    optimizer = cautious(torch.optim.AdamW([w], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd), eps=mask_eps)
    expected, m, v = tensor(W0), 0.0, 0.0
    for t, g in enumerate((tensor(G1), tensor(G2) - 0.3 * tensor(G1)), start=1):
        step_with(optimizer, [w], [g])
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        mask = (u * g > 0).double()
        expected = expected * (1 - lr * wd) - lr * u * mask / (mask.mean() + mask_eps)
        assert torch.allclose(w.detach(), expected, atol=1e-12), t
    assert 0 < mask.mean() < 1  # the second step really masked some components


def test_cautious_lion_masks_the_sign_update() -> None:
    lr, (b1, b2), wd = 0.01, (0.9, 0.99), 0.5
    w = nn.Parameter(tensor(W0))
    optimizer = cautious(lion([w], lr=lr, betas=(b1, b2), weight_decay=wd))
    step_with(optimizer, [w], [10 * tensor(G1)])  # a large first gradient: momentum outweighs the next one
    first = w.detach().clone()
    step_with(optimizer, [w], [tensor(G2)])
    direction = torch.sign(b1 * (1 - b2) * 10 * tensor(G1) + (1 - b1) * tensor(G2))
    mask = (direction * tensor(G2) > 0).double()
    assert 0 < mask.mean() < 1
    expected = first * (1 - lr * wd) - lr * direction * mask / (mask.mean() + 1e-3)
    assert torch.allclose(w.detach(), expected, atol=1e-12)


def test_cautious_refuses_optimizers_it_has_no_mask_for() -> None:
    with pytest.raises(ValueError, match=r"Adam-family or Lion optimizer .* got SGD"):
        Cautious(torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.1))
    with pytest.raises(UsageError, match=r"method 'cautious': .* got SGD; train with AdamW or add lion"):
        trainer_for("cautious", budget="2ba").fit()  # digits trains with SGD


@pytest.mark.parametrize(
    ("methods", "base"),
    [
        ("lion,cautious", Lion),
        ("cautious,lion", Lion),
        ("cautious,lookahead", torch.optim.AdamW),
        ("lookahead,cautious", torch.optim.AdamW),
    ],
)
def test_cautious_wraps_the_final_optimizer_in_any_list_order(methods: str, base: type) -> None:
    workload = "digits" if base is Lion else "synthetic"  # synthetic trains with AdamW
    trainer = trainer_for(methods, workload=workload, budget="3ba")
    trainer.fit()
    optimizer = trainer.state.optimizer
    inner = optimizer.optimizer if isinstance(optimizer, Lookahead) else optimizer
    assert isinstance(inner, Cautious) and type(inner.optimizer) is base
    assert isinstance(optimizer, Lookahead) is ("lookahead" in methods)
    # A rebuild (model surgery) keeps the wrapper.
    trainer.state.rebuild_optimizer()
    rebuilt = trainer.state.optimizer
    assert isinstance(rebuilt.optimizer if isinstance(rebuilt, Lookahead) else rebuilt, Cautious)


# ------------------------------------------------------------------------------ in the trainer
@pytest.mark.parametrize("methods", ["muon", "normuon", "shampoo", "soap", "ademamix", "prodigy", "prodigy,cautious"])
def test_the_trainer_trains_with_each_record_optimizer(methods: str) -> None:
    result = trainer_for(methods, budget="1ep").fit()
    assert result.points[-1].train_loss < 0.6 * result.points[0].train_loss or result.final.metrics["accuracy"] > 0.8
    assert result.final.metrics["accuracy"] > 0.7


@pytest.mark.parametrize(
    "methods", ["muon,lion", "normuon,muon", "shampoo,soap", "ademamix,prodigy", "cautious,muon", "cautious,soap"]
)
def test_two_optimizer_replacements_are_refused_up_front(methods: str) -> None:
    with pytest.raises(UsageError, match="cannot be combined"):
        check_composition([build_method(spec) for spec in parse_methods(methods)])


# ----------------------------------------------------------------------------------- resume
@pytest.mark.parametrize(
    "methods",
    [
        "muon",
        "normuon",
        "shampoo:update_interval=4",
        "soap:precondition_interval=4",
        "ademamix",
        "prodigy",
        "lion,cautious",
    ],
)
def test_record_optimizers_resume_exactly(methods: str, tmp_path) -> None:
    assert_resumes_exactly(methods, tmp_path, budget="24ba")


# --------------------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("muon", {"adjust_lr": "spectral"}, "adjust_lr must be one of match_rms_adamw, original"),
        ("muon", {"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ("muon", {"ns_steps": 0}, "ns_steps must be at least 1"),
        ("muon", {"muon_lr_ratio": 0.0}, "muon_lr_ratio must be positive"),
        ("normuon", {"beta2": 1.0}, r"beta2 must be in \[0, 1\)"),
        ("shampoo", {"graft": "sgd"}, "graft must be one of adam, none"),
        ("shampoo", {"beta2": 0.0}, r"beta2 must be in \(0, 1\]"),
        ("shampoo", {"update_interval": 0}, "update_interval must be at least 1"),
        ("soap", {"precondition_interval": 0}, "precondition_interval must be at least 1"),
        ("soap", {"eps": 0.0}, "eps must be positive"),
        ("ademamix", {"warmup": 1.5}, "warmup must be a fraction"),
        ("ademamix", {"beta3": 1.0}, r"beta3 must be in \[0, 1\)"),
        ("ademamix", {"beta1": 0.0}, r"beta1 must be in \(0, 1\) for AdEMAMix"),
        ("prodigy", {"growth_rate": 0.5}, "growth_rate must be at least 1"),
        ("prodigy", {"d0": 0.0}, "d0 must be positive"),
        ("cautious", {"eps": -1.0}, "eps must be positive"),
    ],
)
def test_bad_settings_are_usage_errors(name: str, settings: dict, message: str) -> None:
    with pytest.raises(UsageError, match=f"method '{name}': {message}"):
        build_method(MethodSpec(name=name, settings=settings))


def test_muons_newton_schulz_products_are_charged_to_the_step() -> None:
    """The optimizer's step runs inside the FLOP count: Muon's step costs AdamW's plus exactly the matrix
    products of 5 Newton-Schulz iterations on each hidden matrix (4 m^2 n + 2 m^3 each, m <= n)."""
    from algospeed.run_spec import RunSpec, build_trainer

    flops, matrices = {}, []
    for methods in ([], "muon"):
        trainer = build_trainer(RunSpec(workload="mnist1d", budget="1ba", methods=methods, device="cpu"))
        matrices = [sorted((p.shape[0], p[0].numel())) for p in hidden_matrices(trainer.state.model)[0]]
        flops[bool(methods)] = trainer.fit().final.flops
    newton_schulz = sum(5 * (4 * m * m * n + 2 * m**3) for m, n in matrices)
    assert len(matrices) == 3 and flops[True] - flops[False] == newton_schulz
