"""Patch whitening: a frozen first layer that whitens the images' k x k patches, computed before training."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.methods.registry import register
from algospeed.methods.shared.scoring import base_loader, ordered_batches
from algospeed.taxonomy.axes import How, Place, What, When, Where

STATISTICS_BATCH = 256


def patch_matrix(images: torch.Tensor, kernel: int) -> torch.Tensor:
    """Every k x k patch of (N, C, H, W) images (all positions, no padding) as a row of C * k * k values,
    in the order of a convolution kernel's (C, k, k) entries."""
    if images.dim() != 4:
        raise ValueError(f"patch whitening takes (N, C, H, W) images, got shape {tuple(images.shape)}")
    return F.unfold(images, kernel).transpose(1, 2).reshape(-1, images.shape[1] * kernel * kernel)


def whitening_filters(images: torch.Tensor, kernel: int = 2, eps: float = 5e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a convolution whose outputs on these images' patches are whitened.

    With the patches' mean m and covariance V diag(l) V^T (d = C * k * k values per patch), the first d
    filters are the rows of diag(l + eps)^(-1/2) V^T, largest eigenvalue first, and the other d their
    negatives (both signs, as airbench does, so that a following ReLU-like activation loses nothing);
    the bias subtracts m, so the first d outputs have mean 0 and covariance diag(l / (l + eps)), the
    identity up to `eps`. The statistics are summed in float64, `STATISTICS_BATCH` images at a time (so
    the patches of a large sample are never held at once); their only counted FLOPs are the d x d sums
    of patch outer products, 2 * d * d per patch.
    """
    size = images.shape[1] * kernel * kernel
    total = torch.zeros(size, dtype=torch.float64, device=images.device)
    products = torch.zeros(size, size, dtype=torch.float64, device=images.device)
    count = 0
    for chunk in images.split(STATISTICS_BATCH):
        patches = patch_matrix(chunk, kernel).double()
        total += patches.sum(dim=0)
        products += patches.T @ patches
        count += len(patches)
    mean = total / count
    covariance = products / count - torch.outer(mean, mean)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    filters = eigenvectors.T / (eigenvalues.clamp(min=0.0) + eps).sqrt().unsqueeze(1)
    bias = -(filters * mean).sum(dim=1)  # elementwise, so the counted FLOPs are the covariance's alone
    shape = (-1, images.shape[1], kernel, kernel)
    weight = torch.cat([filters, -filters]).reshape(shape).to(images.dtype)
    return weight, torch.cat([bias, -bias]).to(images.dtype)


class PatchWhitening(nn.Module):
    """A frozen convolution of `channels` inputs to 2 * channels * k * k whitening outputs, padded by k - 1
    (the extra one at the right and bottom for even k) so that it keeps the spatial size. Its filters are
    buffers, not parameters: nothing trains them, and no other surgery mistakes them for a convolution."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.channels, self.kernel = channels, kernel
        features = 2 * channels * kernel * kernel
        self.register_buffer("weight", torch.zeros(features, channels, kernel, kernel))
        self.register_buffer("bias", torch.zeros(features))

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @torch.no_grad()
    def set_filters(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Copy in the filters of `whitening_filters`."""
        self.weight.copy_(weight)
        self.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = (self.kernel - 1) // 2
        after = self.kernel - 1 - before
        return F.conv2d(F.pad(x, (before, after, before, after)), self.weight, self.bias)


class WhitenedStem(nn.Module):
    """The model's first convolution, rebuilt to read the whitening layer's outputs: `conv(whiten(x))`."""

    def __init__(self, whiten: PatchWhitening, conv: nn.Conv2d) -> None:
        super().__init__()
        self.whiten = whiten
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.whiten(x))


def insert_whitening(model: nn.Module, kernel: int = 2) -> WhitenedStem:
    """Put a `PatchWhitening` layer in front of the model's first convolution, in place, and return the stem.

    The first convolution is the first `nn.Conv2d` in module order (`model.modules()`), which must be
    where the images enter (true of sequential models and of the workloads' CNNs and ResNets) and must
    have groups 1. It is rebuilt (a copy of it, of its own class, with freshly initialized weights) to
    take the 2 * C * k * k whitened channels instead of its C; kernel, stride, padding and bias stay.
    Anything else is a `UsageError`. The filters are zero until `set_filters` (see `apply_whitening`).
    """
    if kernel < 1:
        raise ValueError(f"the whitening kernel must be at least 1, got {kernel}")
    found = next(((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None or found[0] == "":
        raise UsageError("whitening needs a model whose images enter an nn.Conv2d inside it; this one has none")
    name, first = found
    if first.groups != 1:
        raise UsageError(f"whitening: the first convolution ({name}) has groups={first.groups}; it needs groups=1")
    whiten = PatchWhitening(first.in_channels, kernel).to(first.weight.device)
    conv = copy.deepcopy(first)
    conv.in_channels = whiten.out_channels
    conv.weight = nn.Parameter(first.weight.new_empty(first.out_channels, whiten.out_channels, *first.kernel_size))
    conv.reset_parameters()
    parent_name, _, attribute = name.rpartition(".")
    stem = WhitenedStem(whiten, conv).train(first.training)
    setattr(model.get_submodule(parent_name), attribute, stem)
    return stem


def whitened_stem(model: nn.Module) -> WhitenedStem:
    """The stem `insert_whitening` put into `model`."""
    stem = next((m for m in model.modules() if isinstance(m, WhitenedStem)), None)
    if stem is None:
        raise UsageError("the model has no whitening layer; call insert_whitening first")
    return stem


def apply_whitening(model: nn.Module, images: torch.Tensor, kernel: int = 2, eps: float = 5e-4) -> PatchWhitening:
    """The plain function: insert a whitening layer in front of the first convolution and set its filters
    from a sample of training `images` (N, C, H, W); returns the layer (frozen: it holds no parameters)."""
    stem = insert_whitening(model, kernel)
    check_channels(stem, images)
    stem.whiten.set_filters(*whitening_filters(images.to(stem.whiten.weight.device), kernel, eps))
    return stem.whiten


def check_channels(stem: WhitenedStem, images: torch.Tensor) -> None:
    """A `UsageError` unless the images are (N, C, H, W) with the channels the whitened convolution takes."""
    if images.dim() != 4 or images.shape[1] != stem.whiten.channels:
        raise UsageError(
            f"whitening: the first convolution takes {stem.whiten.channels} channels, "
            f"but the training images have shape {tuple(images.shape[1:])}"
        )


@register("whitening")
class Whitening(Method):
    """A frozen first layer that whitens the images' k x k patches, computed from training images before training.

    Place: model, add (a fixed layer in front of the first convolution), fewer steps, before. At init
    a `PatchWhitening` layer is inserted in front of the model's first `nn.Conv2d` (the first in module
    order; it must be where the images enter and have groups 1, else a `UsageError`), and that
    convolution is rebuilt, freshly initialized, to read its 2 * C * k * k outputs; the optimizer is
    rebuilt and `model_version` bumped. At fit start the covariance of the `kernel` x `kernel` patches
    of `samples` training images (a seeded draw) is eigendecomposed and the layer's filters set to
    +/- diag(eigenvalues + eps)^(-1/2) eigenvectors^T, with a bias that centres the patches, so its
    outputs are whitened. The filters are buffers (no gradient, not in the optimizer); the statistics
    pass runs inside `state.counted` (its FLOPs and one extra step are charged, its seconds are on the
    training clock). Deviations from airbench: the patches are centred (airbench uses the uncentred
    second moment of normalized images), the layer pads to keep the spatial size, and its bias is frozen
    too (airbench trains it for the first 3 epochs). An averaged copy (EMA) taken earlier at fit start
    gets the same filters.

    Helps: small convolutional image classifiers trained for a few epochs (CIFAR-10 in seconds): the
    decorrelated inputs condition the first layers, so fewer epochs reach a target accuracy.

    Hurts: models whose first layer is not a plain convolution the images enter (refused); large
    kernels on many channels (d = C * k * k outputs twice, each a full-size feature map the next layer
    reads); very long runs, where a learned first layer catches up.

    Reference: Keller Jordan, 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU",
    arXiv:2404.00498 (airbench: 2 x 2 patches, eps 5e-4, both signs); David Page, 2019, "How to
    Train Your ResNet 8: Bag of Tricks", myrtle.ai blog (input patch whitening, 3 x 3, frozen).
    """

    place = Place(where=(Where.MODEL,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.BEFORE,))
    data_kinds = frozenset({DataKind.IMAGES})
    extra_compute = True

    def __init__(self, kernel: int = 2, eps: float = 5e-4, samples: int = 5000) -> None:
        if kernel < 1:
            raise ValueError(f"kernel (the patch side) must be at least 1, got {kernel}")
        if eps <= 0.0:
            raise ValueError(f"eps must be positive, got {eps}")
        if samples < 2:
            raise ValueError(f"samples must be at least 2, got {samples}")
        self.kernel, self.eps, self.samples = kernel, eps, samples
        self.done = False

    def on_init(self, state: State) -> None:
        insert_whitening(state.model, self.kernel)
        state.model_version += 1
        state.rebuild_optimizer()

    def on_fit_start(self, state: State) -> None:
        if self.done:  # resumed: the filters came back with the model
            return
        stem = whitened_stem(state.model)
        source = base_loader(state.train_data)
        order = torch.randperm(len(source), generator=torch.Generator().manual_seed(state.seed))[: self.samples]

        def statistics() -> tuple[torch.Tensor, torch.Tensor]:
            images = torch.cat(
                [batch.inputs for _, batch in ordered_batches(source, order, STATISTICS_BATCH, state.device)]
            )
            check_channels(stem, images)
            return whitening_filters(images, self.kernel, self.eps)

        weight, bias = state.counted(("whitening.statistics", len(order), self.kernel), statistics)
        stem.whiten.set_filters(weight, bias)
        if state.eval_model is not None and state.eval_model is not state.model:
            for module in state.eval_model.modules():
                if isinstance(module, PatchWhitening):
                    module.set_filters(weight, bias)
        self.done = True

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = bool(state.get("done", False))
