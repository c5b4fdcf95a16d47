"""Muon: orthogonalize each hidden weight matrix's momentum with Newton-Schulz iterations; AdamW for the rest."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.methods.registry import register
from algospeed.methods.shared.optimizer_swap import (
    CombinedOptimizer,
    adam_scale,
    check_beta,
    check_positive,
    evaluate_closure,
    optimizer_conflicts,
    replace_optimizer,
)
from algospeed.taxonomy.axes import How, Place, What, When, Where

NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)  # Keller Jordan's quintic, as torch.optim.Muon uses it
ADJUST_LR = ("match_rms_adamw", "original")
MatrixOptimizer = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


def newton_schulz(
    matrix: torch.Tensor, steps: int = 5, coefficients: tuple[float, float, float] = NS_COEFFICIENTS, eps: float = 1e-7
) -> torch.Tensor:
    """About U S' V^T (S' near 1) for `matrix` = U S V^T, in bfloat16: the quintic Newton-Schulz
    iteration X <- a X + (b A + c A^2) X with A = X X^T, from X = matrix / ||matrix||_F, computed
    with the same operations as torch.optim.Muon (so the two agree where torch has Muon)."""
    a, b, c = coefficients
    x = matrix.bfloat16()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def adjusted_lr_ratio(adjust_lr: str | None, rows: int, cols: int) -> float:
    """The factor on Muon's learning rate for a rows x cols matrix: "original" (Keller Jordan's
    sqrt(max(1, rows / cols))) or "match_rms_adamw" (Liu et al.'s 0.2 sqrt(max(rows, cols)), which
    gives the update AdamW's typical RMS, so AdamW's learning rate and weight decay carry over)."""
    if adjust_lr == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1.0, rows / cols))


@contextmanager
def as_matrices(params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Within it, each parameter of more than two dimensions (a convolution kernel) holds its values
    and gradient as an (output channels, the rest) matrix: Muon's view of a kernel, as in Keller
    Jordan's implementation. What is written to the matrix lands in the kernel."""
    swapped = []
    for p in params:
        if p.dim() <= 2:
            continue
        values, grad = p.data, p.grad
        matrix = values.reshape(len(values), -1)  # a view, or a copy for a kernel in another memory format
        p.data = matrix
        if grad is not None:
            p.grad = grad.reshape(len(grad), -1)
        swapped.append((p, values, grad, matrix))
    try:
        yield
    finally:
        for p, values, grad, matrix in swapped:
            if matrix.data_ptr() != values.data_ptr():
                values.copy_(matrix.view(values.shape))
            p.data = values
            p.grad = grad


class NewtonSchulzMuon(torch.optim.Optimizer):
    """Muon computed here, with torch.optim.Muon's arguments and update, for torch releases without
    it; with `neuron_beta2` it is NorMuon. For each matrix W (a kernel seen as a matrix) with gradient G:

        B = mu B + (1 - mu) G;  O = NS(G + mu (B - G) if nesterov else B)
        Muon:    W = (1 - lr wd) W - lr * adjusted_lr_ratio(W) * O
        NorMuon: v = beta2 v + (1 - beta2) mean_cols(O^2);  P = O / (sqrt(v) + eps)
                 W = (1 - lr wd) W - 0.2 lr sqrt(rows cols) / ||P||_F * P
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = None,
        neuron_beta2: float | None = None,
        neuron_eps: float = 1e-8,
    ) -> None:
        check_positive("lr", lr)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        check_beta("momentum", momentum)
        if neuron_beta2 is not None:
            check_beta("beta2", neuron_beta2)
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=tuple(ns_coefficients),
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
            neuron_beta2=neuron_beta2,
            neuron_eps=neuron_eps,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() < 2:
                    raise ValueError(f"Muon steps matrices and kernels only, got a parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        with as_matrices([p for group in self.param_groups for p in group["params"]]):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, group)
        return loss

    def _update(self, p: nn.Parameter, group: dict[str, Any]) -> None:
        state, momentum = self.state[p], group["momentum"]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p.grad)
        buffer = state["momentum_buffer"]
        buffer.lerp_(p.grad, 1 - momentum)
        direction = p.grad.lerp(buffer, momentum) if group["nesterov"] else buffer
        ortho = newton_schulz(direction, group["ns_steps"], group["ns_coefficients"], group["eps"])
        rows, cols = p.shape
        p.mul_(1 - group["lr"] * group["weight_decay"])
        beta2 = group["neuron_beta2"]
        if beta2 is None:
            p.add_(ortho, alpha=-group["lr"] * adjusted_lr_ratio(group["adjust_lr_fn"], rows, cols))
            return
        ortho = ortho.to(p.dtype)
        if "neuron_second_moment" not in state:
            state["neuron_second_moment"] = p.new_zeros(rows, 1)
        second = state["neuron_second_moment"]
        second.lerp_(ortho.square().mean(dim=1, keepdim=True), 1 - beta2)
        normalized = ortho / (second.sqrt() + group["neuron_eps"])
        scale = 0.2 * group["lr"] * math.sqrt(rows * cols) / normalized.norm().clamp(min=group["neuron_eps"])
        p.sub_(normalized * scale)


if hasattr(torch.optim, "Muon"):

    class MatrixMuon(torch.optim.Muon):
        """torch.optim.Muon over hidden weights of any rank of at least two, each seen as a matrix
        (see `as_matrices`) while it is built and stepped."""

        def __init__(self, params: Any, **settings: Any) -> None:
            params = list(params)
            with as_matrices(params):
                super().__init__(params, **settings)

        @torch.no_grad()
        def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
            loss = evaluate_closure(closure)
            with as_matrices([p for group in self.param_groups for p in group["params"]]):
                super().step()
            return loss

    MUON: type[torch.optim.Optimizer] = MatrixMuon
else:
    MUON = NewtonSchulzMuon


def hidden_matrices(
    model: nn.Module, params: Sequence[nn.Parameter] | None = None, adamw_layers: str = "auto"
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split `params` (default: the model's trainable parameters) into (hidden matrices, the rest).

    A layer is a module that owns a parameter of two or more dimensions itself, in registration
    order. The rest are every parameter of fewer than two dimensions (biases, normalization gains),
    every `nn.Embedding` / `nn.EmbeddingBag` weight, and the parameters of the layers that
    `adamw_layers` names: "auto" names the first layer (the input layer: an embedding, or the first
    convolution, as Keller Jordan advises for ConvNets) and the last (the output head, whose outputs
    are the logits in a model that registers its head last); "none" names none; otherwise a
    comma-separated list of module names (as `model.named_modules()` gives them) replaces the two.
    """
    params = [p for p in model.parameters() if p.requires_grad] if params is None else list(params)
    modules = dict(model.named_modules())
    layers = [name for name, module in modules.items() if any(p.dim() >= 2 for p in module.parameters(recurse=False))]
    if adamw_layers == "auto":
        excluded = (
            [p for name in {layers[0], layers[-1]} for p in modules[name].parameters(recurse=False)] if layers else []
        )
    elif adamw_layers == "none":
        excluded = []
    else:
        names = [name.strip() for name in adamw_layers.split(",") if name.strip()]
        unknown = [name for name in names if name not in modules]
        if unknown or not names:
            raise UsageError(
                f"adamw_layers names no module {', '.join(map(repr, unknown))} of this model; "
                f"give 'auto', 'none' or module names, e.g. its layers: {', '.join(layers)}"
            )
        excluded = [p for name in names for p in modules[name].parameters()]
    embeddings = (nn.Embedding, nn.EmbeddingBag)
    excluded += [p for module in modules.values() if isinstance(module, embeddings) for p in module.parameters()]
    ids = {id(p) for p in excluded}
    hidden = [p for p in params if p.dim() >= 2 and id(p) not in ids]
    return hidden, [p for p in params if p.dim() < 2 or id(p) in ids]


def with_adamw(
    model: nn.Module,
    matrix_optimizer: MatrixOptimizer,
    lr: float,
    weight_decay: float,
    params: Sequence[nn.Parameter] | None = None,
    adamw_layers: str = "auto",
) -> CombinedOptimizer:
    """`matrix_optimizer` over the hidden matrices and AdamW (lr, weight_decay) over the rest, as one
    optimizer (see `hidden_matrices` for the split)."""
    hidden, rest = hidden_matrices(model, params, adamw_layers)
    if not hidden:
        raise UsageError(
            "this model has no hidden weight matrices for Muon (only input and output layers, "
            "embeddings and vectors); name the AdamW layers with adamw_layers"
        )
    parts = {"matrices": matrix_optimizer(hidden)}
    if rest:
        parts["adamw"] = torch.optim.AdamW(rest, lr=lr, weight_decay=weight_decay)
    return CombinedOptimizer(parts)


def muon(
    model: nn.Module,
    lr: float,
    *,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_steps: int = 5,
    adjust_lr: str = "match_rms_adamw",
    muon_lr: float | None = None,
    params: Sequence[nn.Parameter] | None = None,
    adamw_layers: str = "auto",
) -> CombinedOptimizer:
    """The plain function: Muon (torch.optim.Muon where torch has it) at `muon_lr` (default `lr`)
    over the model's hidden matrices, AdamW at `lr` over the rest, one weight decay for both."""
    if adjust_lr not in ADJUST_LR:
        raise ValueError(f"adjust_lr must be one of {', '.join(ADJUST_LR)}, got {adjust_lr!r}")
    rate = lr if muon_lr is None else muon_lr

    def matrices(hidden: list[nn.Parameter]) -> torch.optim.Optimizer:
        return MUON(
            hidden,
            lr=rate,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr,
        )

    return with_adamw(model, matrices, lr, weight_decay, params, adamw_layers)


@register("muon")
class MuonMethod(Method):
    """Replace the optimizer by Muon for hidden weight matrices (orthogonalized momentum) and AdamW for the rest.

    Place: optimization / replace (the optimizer) / fewer steps / throughout. Muon (torch.optim.Muon;
    an own Newton-Schulz implementation where torch lacks it) steps every hidden matrix: each
    weight of two or more dimensions, a convolution kernel flattened to (output channels, the
    rest), except the input layer, the output head and embeddings, which AdamW steps with the
    biases and normalization parameters (the rule and `adamw_layers` are in `hidden_matrices`).
    Its momentum (Nesterov by default) is orthogonalized by `ns_steps` Newton-Schulz iterations.
    With `adjust_lr` "match_rms_adamw" (the default) Muon's updates get AdamW's RMS, so both parts
    share one learning rate and weight decay, as Liu et al. prescribe: the AdamW-scale rate, kept as
    `effective_lr`, is the base's times `lr_scale` (by default 1 over Adam-family optimizers, 0.1
    over SGD); Muon's rate, `effective_muon_lr`, is that times `muon_lr_ratio`, which must be far
    larger with "original" (Keller Jordan's own example pairs Muon at 0.02 with AdamW at 3e-4).
    Unless given, weight decay (`effective_weight_decay`) keeps lr x decay at the base's.

    Helps: fewer steps to a target for transformers and ConvNets: it set the NanoGPT and CIFAR-10
    speedrun records (in the NanoGPT optimization track, 3250 steps against AdamW's 5625), and
    Liu et al. report about twice AdamW's compute efficiency for LLM training at scale. Its state is
    one momentum buffer per matrix.

    Hurts: each step runs 5 Newton-Schulz iterations (three matrix products each) per matrix, in
    bfloat16, which is slow on CPUs; it is meant for hidden layers only (on embeddings and heads it
    does worse), and small models with few hidden matrices gain little.

    Reference: Jordan, Jin, Boza, You, Cesista, Newhouse and Bernstein, 2024, "Muon: An optimizer for
    hidden layers in neural networks", blog post, https://kellerjordan.github.io/posts/muon/; Liu,
    Su, Yao, Jiang, Lai, Du, Qin, Xu, Lu, Yan, Chen, Zheng, Liu, Liu, Yin, He, Zhu, Wang, Wang,
    Dong, Zhang, Kang, Zhang, Xu, Zhang, Wu, Zhou and Yang, 2025, "Muon is Scalable for LLM
    Training", arXiv 2502.16982.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    conflicts = optimizer_conflicts("muon")

    def __init__(
        self,
        lr_scale: float | None = None,
        muon_lr_ratio: float = 1.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        adjust_lr: str = "match_rms_adamw",
        weight_decay: float | None = None,
        adamw_layers: str = "auto",
    ) -> None:
        check_positive("lr_scale", lr_scale)
        check_positive("muon_lr_ratio", muon_lr_ratio)
        check_beta("momentum", momentum)
        if ns_steps < 1:
            raise ValueError(f"ns_steps must be at least 1, got {ns_steps}")
        if adjust_lr not in ADJUST_LR:
            raise ValueError(f"adjust_lr must be one of {', '.join(ADJUST_LR)}, got {adjust_lr!r}")
        check_positive("weight_decay", weight_decay, allow_zero=True)
        self.lr_scale, self.muon_lr_ratio, self.weight_decay = lr_scale, muon_lr_ratio, weight_decay
        self.momentum, self.nesterov, self.ns_steps, self.adjust_lr = momentum, nesterov, ns_steps, adjust_lr
        self.adamw_layers = adamw_layers
        self.effective_lr: float | None = None
        self.effective_muon_lr: float | None = None
        self.effective_weight_decay: float | None = None

    def on_init(self, state: State) -> None:
        lr, decay = adam_scale(state, self.lr_scale, self.weight_decay)
        self.effective_lr, self.effective_weight_decay = lr, decay
        self.effective_muon_lr = muon_lr = lr * self.muon_lr_ratio
        settings = dict(
            weight_decay=decay,
            momentum=self.momentum,
            nesterov=self.nesterov,
            ns_steps=self.ns_steps,
            adjust_lr=self.adjust_lr,
            muon_lr=muon_lr,
            adamw_layers=self.adamw_layers,
        )
        replace_optimizer(state, lambda params: muon(state.model, lr, params=params, **settings))
