"""Low-rank factorization: each linear and convolution layer becomes two thinner ones, initialized by SVD."""

from __future__ import annotations

import math

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.surgery import replace_modules
from algospeed.taxonomy.axes import How, Place, What, When, Where

CONVS = (nn.Conv1d, nn.Conv2d)


class LowRank(nn.Sequential):
    """Two layers, (in -> rank) then (rank -> out), standing for one factorized layer."""


def _split(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated SVD of a (out, in) matrix as `second @ first` with the singular values split evenly:
    first = sqrt(S_r) V_r^T (rank, in), second = U_r sqrt(S_r) (out, rank) (spectral initialization)."""
    u, s, vh = torch.linalg.svd(weight.detach().float(), full_matrices=False)
    root = s[:rank].sqrt()
    return root[:, None] * vh[:rank], u[:, :rank] * root


def factorize_linear(layer: nn.Linear, rank: int) -> LowRank:
    """`layer` as Linear(in, rank, no bias) then Linear(rank, out, with layer's bias), from its truncated SVD."""
    first_weight, second_weight = _split(layer.weight, rank)
    kwargs = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    first = nn.utils.skip_init(nn.Linear, layer.in_features, rank, bias=False, **kwargs)
    second = nn.utils.skip_init(nn.Linear, rank, layer.out_features, bias=layer.bias is not None, **kwargs)
    with torch.no_grad():
        first.weight.copy_(first_weight)
        second.weight.copy_(second_weight)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return LowRank(first, second)


def factorize_conv(conv: nn.Conv1d | nn.Conv2d, rank: int) -> LowRank:
    """`conv` (groups 1) as a conv to `rank` channels with its kernel, stride and padding, then a 1x1 conv to its
    outputs (with its bias), from the truncated SVD of its weight flattened to (out, in * kernel)."""
    if conv.groups != 1:
        raise ValueError("only convolutions with groups=1 can be factorized")
    kind = type(conv)
    first_weight, second_weight = _split(conv.weight.reshape(conv.out_channels, -1), rank)
    kwargs = {"device": conv.weight.device, "dtype": conv.weight.dtype}
    first = nn.utils.skip_init(
        kind,
        conv.in_channels,
        rank,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=False,
        padding_mode=conv.padding_mode,
        **kwargs,
    )
    second = nn.utils.skip_init(kind, rank, conv.out_channels, 1, bias=conv.bias is not None, **kwargs)
    with torch.no_grad():
        first.weight.copy_(first_weight.reshape(first.weight.shape))
        second.weight.copy_(second_weight.reshape(second.weight.shape))
        if conv.bias is not None:
            second.bias.copy_(conv.bias)
    return LowRank(first, second)


def _shape(module: nn.Module) -> tuple[int, int]:
    """(outputs, inputs) of the layer's weight as a matrix."""
    weight = module.weight
    return weight.shape[0], weight[0].numel()


def factorized_rank(module: nn.Module, rank_fraction: float) -> int:
    """ceil(rank_fraction * the full rank), at least 1."""
    return max(1, math.ceil(rank_fraction * min(_shape(module))))


def saves_parameters(module: nn.Module, rank: int) -> bool:
    """Whether the two factors hold fewer weights than the layer: rank * (in + out) < in * out."""
    outputs, inputs = _shape(module)
    return rank * (inputs + outputs) < inputs * outputs


def apply_low_rank(
    model: nn.Module, rank_fraction: float = 0.25, factorize_convs: bool = True, factorize_linears: bool = True
) -> int:
    """Factorize, in place, every Linear (and Conv1d/2d with groups 1; exactly those classes) whose factors at rank
    ceil(rank_fraction * full rank) hold fewer weights than it; returns how many layers were factorized."""
    if not 0.0 < rank_fraction <= 1.0:
        raise ValueError(f"rank_fraction must be in (0, 1], got {rank_fraction}")

    def matches(module: nn.Module) -> bool:
        # exact classes: subclasses (weight-standardized convs, ...) compute something else and are left alone
        eligible = (factorize_linears and type(module) is nn.Linear) or (
            factorize_convs and type(module) in CONVS and module.groups == 1
        )
        return eligible and saves_parameters(module, factorized_rank(module, rank_fraction))

    def build(module: nn.Module) -> nn.Module:
        rank = factorized_rank(module, rank_fraction)
        return factorize_linear(module, rank) if isinstance(module, nn.Linear) else factorize_conv(module, rank)

    return replace_modules(model, matches, build, skip=(LowRank,))


@register("low_rank")
class LowRankFactorization(Method):
    """Low-rank factorization: layers become two thinner ones, spectrally initialized from their weights.

    Place: model, shrink (rank); cheaper steps; throughout. At init every Linear and (unless
    factorize_convs=false) every Conv1d/2d with groups 1 is replaced by a rank-r pair: for a linear
    layer Linear(in, r) then Linear(r, out); for a convolution a k x k convolution to r channels
    (same stride and padding) then a 1x1 convolution, with r = ceil(rank_fraction * full rank) of
    the weight seen as an (out, in * k * k) matrix. Both factors are initialized from the truncated
    SVD of the layer's initialized weight, the singular values split evenly between them (spectral
    initialization). Layers where the pair would not hold fewer weights are skipped. The optimizer
    is rebuilt.

    Helps: wide layers (large in * out), where the factors cut both parameters and FLOPs by about
    rank_fraction; over-parameterized models that tolerate a rank constraint.

    Hurts: narrow layers (skipped, or no saving); tasks that need full-rank layers (accuracy drops
    as rank_fraction shrinks); thin factors use hardware less efficiently, so wall-clock falls less
    than FLOPs. The paper's Frobenius-decay regularizer is not applied (use plain weight decay).

    Reference: Khodak, Tenenholtz, Mackey, Fusi, 2021, "Initialization and Regularization of
    Factorized Neural Layers", ICLR 2021, arXiv:2105.01029; earlier, Sainath, Kingsbury, Sindhwani,
    Arisoy, Ramabhadran, 2013, "Low-rank matrix factorization for deep neural network training with
    high-dimensional output targets", ICASSP 2013.
    """

    place = Place(where=(Where.MODEL,), what=(What.SHRINK,), how=How.CHEAPER_STEPS, when=(When.THROUGHOUT,))

    def __init__(
        self, rank_fraction: float = 0.25, factorize_convs: bool = True, factorize_linears: bool = True
    ) -> None:
        if not 0.0 < rank_fraction <= 1.0:
            raise ValueError(f"rank_fraction must be in (0, 1], got {rank_fraction}")
        if not (factorize_convs or factorize_linears):
            raise ValueError("factorize_convs and factorize_linears are both false: nothing would change")
        self.rank_fraction = rank_fraction
        self.factorize_convs = factorize_convs
        self.factorize_linears = factorize_linears
        self.factorized = 0

    def on_init(self, state: State) -> None:
        self.factorized = apply_low_rank(state.model, self.rank_fraction, self.factorize_convs, self.factorize_linears)
        if self.factorized:
            state.rebuild_optimizer()
