"""Shampoo: precondition each weight tensor by one matrix per dimension, a Kronecker-factored full-matrix AdaGrad."""

from __future__ import annotations

from typing import Any

import torch

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.optimizer_swap import (
    ParameterwiseOptimizer,
    adam_scale,
    check_beta,
    check_positive,
    optimizer_conflicts,
    replace_optimizer,
)
from algospeed.taxonomy.axes import How, Place, What, When, Where

GRAFTS = ("adam", "none")


def mode_product(x: torch.Tensor, matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """`matrix` applied to every fibre of `x` along dimension `dim` (for a matrix x: matrix @ x for
    dim 0, x @ matrix.T for dim 1)."""
    return torch.movedim(torch.tensordot(x, matrix, dims=([dim], [1])), -1, dim)


def mode_statistic(grad: torch.Tensor, dim: int) -> torch.Tensor:
    """G_(dim) G_(dim)^T: the gradient's second moment along dimension `dim` (G G^T and G^T G for a matrix)."""
    others = [d for d in range(grad.dim()) if d != dim]
    return torch.tensordot(grad, grad, dims=(others, others))


def preconditioned_dims(shape: torch.Size, max_dim: int) -> list[int]:
    """The dimensions that get a preconditioner: those of at most `max_dim` entries (a larger one
    would cost a max_dim^3 eigendecomposition; it is left unpreconditioned)."""
    return [d for d, size in enumerate(shape) if size <= max_dim]


def inverse_root(matrix: torch.Tensor, eps: float, root: int) -> torch.Tensor:
    """(matrix + eps I)^(-1/root) of a symmetric positive semi-definite matrix, by an eigendecomposition in float64."""
    values, vectors = torch.linalg.eigh(matrix.double())
    powered = (values.clamp(min=0) + eps) ** (-1.0 / root)
    return ((vectors * powered) @ vectors.T).to(matrix.dtype)


def check_shampoo_settings(
    betas: tuple[float, float], eps: float, update_interval: int, graft: str, graft_beta2: float, max_dim: int
) -> None:
    """Raise ValueError for a setting Shampoo cannot run with."""
    check_beta("beta1", betas[0])
    if not 0.0 < betas[1] <= 1.0:
        raise ValueError(f"beta2 must be in (0, 1], got {betas[1]}")
    check_positive("eps", eps)
    if update_interval < 1:
        raise ValueError(f"update_interval must be at least 1, got {update_interval}")
    if graft not in GRAFTS:
        raise ValueError(f"graft must be one of {', '.join(GRAFTS)}, got {graft!r}")
    check_beta("graft_beta2", graft_beta2)
    if max_dim < 1:
        raise ValueError(f"max_dim must be at least 1, got {max_dim}")


class Shampoo(ParameterwiseOptimizer):
    """Shampoo (Gupta, Koren and Singer 2018, Algorithm 2), single process. For a tensor W of order k
    with gradient G, per dimension i (of at most `max_dim` entries):

        H_i = beta2 H_i + (1 - beta2) G_(i) G_(i)^T     (beta2 = 1: H_i = H_i + G_(i) G_(i)^T, the paper's sum)
        every `update_interval` steps, from the first:  P_i = (H_i + eps I)^(-1/(2k))
        M = beta1 M + (1 - beta1) G  (M = G for beta1 = 0, the paper);  D = M x_1 P_1 ... x_k P_k
        graft "adam": D = ||A||_F / ||D||_F * D, A Adam's bias-corrected direction from M and its own
        second moment (beta2 `graft_beta2`), so that D has Adam's step size and Shampoo's direction
        W = (1 - lr weight_decay) W - lr D

    With beta2 = 1, eps I plays the paper's initial statistic eps I. Between updates, P_i are the
    last ones computed (statistics still accumulate every step).
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        betas: tuple[float, float] = (0.9, 1.0),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        update_interval: int = 10,
        graft: str = "adam",
        graft_beta2: float = 0.999,
        max_dim: int = 1024,
    ) -> None:
        check_positive("lr", lr)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        check_shampoo_settings(betas, eps, update_interval, graft, graft_beta2, max_dim)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            update_interval=update_interval,
            graft=graft,
            graft_beta2=graft_beta2,
            max_dim=max_dim,
        )
        super().__init__(params, defaults)

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        grad, state = p.grad, self.state[p]
        (beta1, beta2), dims = group["betas"], preconditioned_dims(p.shape, group["max_dim"])
        if not state:
            state["step"] = 0
            state["statistics"] = [p.new_zeros(p.shape[d], p.shape[d]) for d in dims]
            state["roots"] = [torch.eye(p.shape[d], dtype=p.dtype, device=p.device) for d in dims]
            state["momentum"] = torch.zeros_like(p)
            if group["graft"] == "adam":
                state["graft_second_moment"] = torch.zeros_like(p)
        state["step"] += 1
        t = state["step"]
        refresh = (t - 1) % group["update_interval"] == 0
        for index, d in enumerate(dims):
            statistic = state["statistics"][index]
            if beta2 == 1.0:
                statistic.add_(mode_statistic(grad, d))
            else:
                statistic.lerp_(mode_statistic(grad, d), 1 - beta2)
            if refresh:
                state["roots"][index] = inverse_root(statistic, group["eps"], 2 * p.dim())
        momentum = state["momentum"]
        momentum.lerp_(grad, 1 - beta1)
        direction = momentum
        for index, d in enumerate(dims):
            direction = mode_product(direction, state["roots"][index], d)
        if group["graft"] == "adam":
            second = state["graft_second_moment"]
            second.lerp_(grad.square(), 1 - group["graft_beta2"])
            adam = (momentum / (1 - beta1**t)) / ((second / (1 - group["graft_beta2"] ** t)).sqrt() + 1e-8)
            direction = direction * (adam.norm() / direction.norm().clamp(min=1e-30))
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.sub_(direction, alpha=group["lr"])


def shampoo(
    params: Any,
    lr: float,
    betas: tuple[float, float] = (0.9, 1.0),
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    update_interval: int = 10,
    graft: str = "adam",
    graft_beta2: float = 0.999,
    max_dim: int = 1024,
) -> Shampoo:
    """The plain function: Shampoo over `params`."""
    return Shampoo(
        params,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        update_interval=update_interval,
        graft=graft,
        graft_beta2=graft_beta2,
        max_dim=max_dim,
    )


@register("shampoo")
class ShampooMethod(Method):
    """Replace the optimizer by Shampoo: precondition each weight by one inverse-root matrix per dimension.

    Place: optimization / replace (the optimizer) / fewer steps / throughout. Every parameter
    (matrices, kernels, biases) keeps one statistic per dimension of at most `max_dim` entries
    (sums of G_(i) G_(i)^T as in the paper, or a moving average with `beta2` below 1) and is stepped
    along G x_1 P_1 ... x_k P_k with P_i = (H_i + eps I)^(-1/(2k)), recomputed by an
    eigendecomposition every `update_interval` steps, on heavy-ball momentum (`beta1`; 0 is the
    paper's plain gradient). With `graft` "adam" (the default) each step takes Adam's size for
    that tensor, so the learning rate, `effective_lr`, is AdamW's scale: the base's times
    `lr_scale` (by default 1 over Adam-family optimizers, 0.1 over SGD); with "none" the step is
    Shampoo's own, far smaller, and needs a larger `lr_scale`. Unless given, decoupled weight decay
    (`effective_weight_decay`) keeps lr x decay at the base's.

    Helps: fewer steps than first-order methods where gradients are strongly correlated within a
    layer: faster convergence than AdaGrad and Adam in the reference; Distributed Shampoo won
    AlgoPerf's external-tuning track (about 28% faster than the NAdamW baseline) and took 4100
    steps against AdamW's 5625 in the NanoGPT optimization track.

    Hurts: memory (a d x d statistic and root per dimension) and an O(d^3) eigendecomposition per
    dimension every `update_interval` steps; a single-process implementation, so no sharding of
    that work as in Distributed Shampoo; sensitive to eps and to the stale roots between updates.

    Reference: Gupta, Koren and Singer, 2018, "Shampoo: Preconditioned Stochastic Tensor
    Optimization", ICML 2018, arXiv 1802.09568.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    conflicts = optimizer_conflicts("shampoo")

    def __init__(
        self,
        lr_scale: float | None = None,
        beta1: float = 0.9,
        beta2: float = 1.0,
        eps: float = 1e-6,
        update_interval: int = 10,
        graft: str = "adam",
        max_dim: int = 1024,
        weight_decay: float | None = None,
    ) -> None:
        check_positive("lr_scale", lr_scale)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        check_shampoo_settings((beta1, beta2), eps, update_interval, graft, 0.999, max_dim)
        self.lr_scale, self.betas, self.eps, self.update_interval = lr_scale, (beta1, beta2), eps, update_interval
        self.graft, self.max_dim, self.weight_decay = graft, max_dim, weight_decay
        self.effective_lr: float | None = None
        self.effective_weight_decay: float | None = None

    def on_init(self, state: State) -> None:
        lr, decay = adam_scale(state, self.lr_scale, self.weight_decay)
        self.effective_lr, self.effective_weight_decay = lr, decay
        betas, eps, interval, graft, max_dim = self.betas, self.eps, self.update_interval, self.graft, self.max_dim
        replace_optimizer(
            state, lambda params: shampoo(params, lr, betas, eps, decay, interval, graft, max_dim=max_dim)
        )
