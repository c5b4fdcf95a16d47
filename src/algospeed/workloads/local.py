"""Workloads read from a local path the user gives: CIFAR-10 and image folders. Nothing is downloaded."""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from algospeed.core.data_kind import DataKind
from algospeed.errors import UsageError
from algospeed.workloads.base import DatasetSplits, Splits, Workload
from algospeed.workloads.models import SmallResNet
from algospeed.workloads.optimizers import SGD_NESTEROV
from algospeed.workloads.registry import register_workload

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def existing_folder(options: Mapping[str, Any], workload: str) -> Path:
    """The `path` option as an existing folder, or a usage error saying what to pass."""
    text = str(options.get("path") or "")
    if not text:
        raise UsageError(f"workload {workload!r} reads from disk: pass --option path=/your/{workload}")
    path = Path(text).expanduser()
    if not path.is_dir():
        raise UsageError(f"workload {workload!r}: path {path} does not exist or is not a folder")
    return path


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10's python batches (dicts of numpy arrays) and refuses anything else."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels of one batch, binary or python format."""
    raw = path.read_bytes()
    if path.suffix == ".bin":
        records = np.frombuffer(raw, dtype=np.uint8)
        if records.size % 3073:
            raise UsageError(f"{path} is not a CIFAR-10 binary batch (size {records.size} is not N x 3073)")
        records = records.reshape(-1, 3073)
        return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch["labels"])
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as error:
        raise UsageError(f"{path} is not a CIFAR-10 python batch ({error})") from None
    if len(labels) != len(images):
        raise UsageError(f"{path} holds {len(images)} images but {len(labels)} labels")
    return images, labels.astype(np.int64)


def load_cifar10(options: Mapping[str, Any]) -> Splits:
    """CIFAR-10 from its python (`data_batch_1`...) or binary (`data_batch_1.bin`...) folder."""
    folder = existing_folder(options, "cifar10")
    for suffix in ("", ".bin"):
        train_files = sorted(folder.glob(f"data_batch_[0-9]{suffix}"))
        test_file = folder / f"test_batch{suffix}"
        if train_files and test_file.is_file():
            break
    else:
        raise UsageError(f"{folder} holds no CIFAR-10 batches (expected data_batch_1..5 and test_batch)")
    train = [_cifar_batch(path) for path in train_files]
    test_images, test_labels = _cifar_batch(test_file)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)

    def normalized(images: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(np.ascontiguousarray(images)).float().div(255) - mean) / std

    return Splits(
        normalized(np.concatenate([images for images, _ in train])),
        torch.from_numpy(np.concatenate([labels for _, labels in train])).long(),
        normalized(test_images),
        torch.from_numpy(test_labels).long(),
    )


class ImageFolder(Dataset):
    """`root/<class>/<image>` decoded on access and resized to `size` x `size` RGB (classes sorted)."""

    def __init__(self, root: Path, size: int, classes: list[str] | None = None) -> None:
        self.classes = classes or sorted(p.name for p in root.iterdir() if p.is_dir())
        if not self.classes:
            raise UsageError(f"{root} has no class folders (expected {root}/<class>/<image>)")
        self.size = size
        self.items = [
            (path, label)
            for label, name in enumerate(self.classes)
            for path in sorted((root / name).iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not self.items:
            raise UsageError(f"{root} has class folders but no images ({', '.join(sorted(IMAGE_SUFFIXES))})")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.items[index]
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB").resize((self.size, self.size)), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise UsageError(f"image {path} cannot be decoded ({type(error).__name__}: {error})") from None
        tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div(255)
        return (tensor - 0.5) / 0.25, label


def imagefolder_datasets(options: Mapping[str, Any]) -> tuple[ImageFolder, ImageFolder]:
    """Train and validation datasets from `path/train` and `path/val`, sharing the class list."""
    folder = existing_folder(options, "imagefolder")
    train_root, val_root = folder / "train", folder / "val"
    if not (train_root.is_dir() and val_root.is_dir()):
        raise UsageError(f"{folder} must contain train/ and val/ folders of class subfolders")
    train = ImageFolder(train_root, int(options["size"]))
    return train, ImageFolder(val_root, int(options["size"]), classes=train.classes)


def load_imagefolder(options: Mapping[str, Any]) -> DatasetSplits:
    train, test = imagefolder_datasets(options)
    return DatasetSplits(train, test, classes=len(train.classes))


register_workload(
    Workload(
        name="cifar10",
        description="CIFAR-10 from a local folder (python or binary batches), small ResNet",
        load=load_cifar10,
        model=lambda options, classes: SmallResNet(width=32, classes=classes, in_channels=3),
        data_kind=DataKind.IMAGES,
        target=0.85,
        budget="30ep",
        eval_interval="1ep",
        batch_size=128,
        optimizer=SGD_NESTEROV,
        lr=0.1,
        weight_decay=5e-4,
        options={"path": ""},
    )
)

register_workload(
    Workload(
        name="imagefolder",
        description="an ImageFolder-style local folder (train/ and val/ of class subfolders), small ResNet",
        load=load_imagefolder,
        model=lambda options, classes: SmallResNet(width=32, classes=classes, in_channels=3),
        data_kind=DataKind.IMAGES,
        target=0.80,
        budget="30ep",
        eval_interval="1ep",
        batch_size=64,
        optimizer=SGD_NESTEROV,
        lr=0.1,
        weight_decay=5e-4,
        options={"path": "", "size": 64, "workers": 2},
    )
)
