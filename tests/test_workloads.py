from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from algospeed.core.data import DatasetLoader, InMemoryLoader
from algospeed.core.data_kind import DataKind
from algospeed.errors import UsageError
from algospeed.run_spec import RunSpec, build_trainer
from algospeed.workloads.base import DatasetSplits, Splits
from algospeed.workloads.registry import WORKLOADS, get_workload


@pytest.mark.parametrize(
    ("name", "options", "train", "test", "shape"),
    [
        ("mnist1d", {"samples": 2000}, 1600, 400, (1, 40)),
        ("mnist5k", {}, 4000, 1000, (1, 28, 28)),
        ("digits", {}, 1437, 360, (1, 8, 8)),
        ("synthetic", {"shape": "3x4x5", "samples": 500}, 400, 100, (3, 4, 5)),
    ],
)
def test_embedded_workloads_load_offline_with_fixed_splits_and_models_that_fit(name, options, train, test, shape):
    workload = get_workload(name)
    splits = workload.load(workload.resolve_options(options))
    assert isinstance(splits, Splits)
    assert splits.train_inputs.shape == (train, *shape) and splits.test_inputs.shape == (test, *shape)
    assert len(splits.train_targets) == train and len(splits.test_targets) == test
    assert set(splits.train_targets.tolist()) == set(range(10))
    again = workload.load(workload.resolve_options(options))
    assert torch.equal(again.test_inputs, splits.test_inputs)  # the split never depends on a run seed
    model = workload.model(workload.resolve_options(options), 10)
    assert model(splits.test_inputs[:4]).shape == (4, 10)
    assert 0 < workload.target <= 1 and workload.metric.higher_is_better


def test_mnist1d_size_is_configurable_and_its_model_takes_shorter_signals() -> None:
    workload = get_workload("mnist1d")
    small = workload.load(workload.resolve_options({"samples": "1e3"}))
    assert len(small.train_inputs) + len(small.test_inputs) == 1000
    assert workload.model({}, 10)(torch.randn(2, 1, 24)).shape == (2, 10)


def test_image_workloads_are_standardized_with_training_statistics() -> None:
    splits = get_workload("digits").load({})
    assert splits.train_inputs.mean().abs() < 1e-4
    assert (splits.train_inputs.std() - 1).abs() < 1e-3


def test_unknown_workloads_and_options_are_usage_errors_listing_valid_ones() -> None:
    with pytest.raises(UsageError, match=r"valid workloads: .*mnist1d"):
        get_workload("imagenet21k")
    with pytest.raises(UsageError, match="has no option colour; valid options: samples"):
        get_workload("mnist1d").resolve_options({"colour": "red"})
    with pytest.raises(UsageError, match="must be a int"):
        get_workload("mnist1d").resolve_options({"samples": "many"})
    with pytest.raises(UsageError, match="between 1000 and"):
        get_workload("mnist1d").load({"samples": 10})
    with pytest.raises(UsageError, match="malformed shape"):
        get_workload("synthetic").load({"shape": "3xx", "classes": 10, "samples": 100})


def _write_cifar(folder: Path, binary: bool) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, count in [("data_batch_1", 20), ("data_batch_2", 20), ("test_batch", 10)]:
        images = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
        labels = np.arange(count) % 10
        if binary:
            records = np.concatenate([labels[:, None].astype(np.uint8), images], axis=1)
            (folder / f"{name}.bin").write_bytes(records.tobytes())
        else:
            (folder / name).write_bytes(pickle.dumps({"data": images, "labels": labels.tolist()}))


@pytest.mark.parametrize("binary", [False, True])
def test_cifar10_loads_from_a_local_folder_in_either_format(tmp_path: Path, binary: bool) -> None:
    _write_cifar(tmp_path / "cifar", binary)
    workload = get_workload("cifar10")
    splits = workload.load({"path": str(tmp_path / "cifar")})
    assert splits.train_inputs.shape == (40, 3, 32, 32) and splits.test_inputs.shape == (10, 3, 32, 32)
    assert splits.test_targets.tolist() == list(range(10))
    result = build_trainer(
        RunSpec(workload="cifar10", options={"path": str(tmp_path / "cifar")}, budget="2ba", batch_size=8)
    ).fit()
    assert result.final.step == 2 and "accuracy" in result.final.metrics


def test_cifar10_refuses_pickles_that_are_not_plain_arrays(tmp_path: Path) -> None:
    folder = tmp_path / "evil"
    folder.mkdir()
    payload = pickle.dumps({"data": Path("/etc/passwd"), "labels": [0]})
    for name in ("data_batch_1", "test_batch"):
        (folder / name).write_bytes(payload)
    with pytest.raises(UsageError, match="not a CIFAR-10 python batch"):
        get_workload("cifar10").load({"path": str(folder)})


def test_local_workloads_report_missing_or_empty_paths(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="pass --option path="):
        get_workload("cifar10").load({"path": ""})
    with pytest.raises(UsageError, match="does not exist"):
        get_workload("cifar10").load({"path": str(tmp_path / "missing")})
    with pytest.raises(UsageError, match="no CIFAR-10 batches"):
        get_workload("cifar10").load({"path": str(tmp_path)})
    with pytest.raises(UsageError, match="train/ and val/"):
        get_workload("imagefolder").load({"path": str(tmp_path), "size": 8, "workers": 0})


def test_an_image_folder_trains_through_the_dataset_loader_with_workers(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in [("train", 6), ("val", 2)]:
        for label in ("cat", "dog", "emu"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / label / f"{i}.png")
    options = {"path": str(tmp_path), "size": 16, "workers": 1}
    data = get_workload("imagefolder").load(get_workload("imagefolder").resolve_options(options))
    assert isinstance(data, DatasetSplits) and data.classes == 3
    image, label = data.train[7]
    assert image.shape == (3, 16, 16) and label == 1
    trainer = build_trainer(RunSpec(workload="imagefolder", options=options, budget="2ep", batch_size=4))
    assert isinstance(trainer.train_data, DatasetLoader)
    result = trainer.fit()
    assert result.final.samples == 32 and result.final.step == 8


def test_every_workload_names_its_metric_target_budget_and_optimizer() -> None:
    for workload in map(get_workload, WORKLOADS.names()):
        assert workload.metric.name and workload.budget and workload.optimizer.name in {"sgd", "adamw"}
        assert workload.make_optimizer()([torch.nn.Parameter(torch.zeros(1))]).param_groups[0]["lr"] == workload.lr


def test_in_memory_workloads_keep_data_on_the_trainers_device() -> None:
    trainer = build_trainer(RunSpec(workload="digits", budget="1ba", device="cpu"))
    assert isinstance(trainer.train_data, InMemoryLoader)
    assert trainer.train_data.inputs.device == trainer.state.device


@pytest.mark.slow
def test_mnist1d_reaches_its_target_within_its_default_budget() -> None:
    torch.set_num_threads(2)
    try:
        workload = get_workload("mnist1d")
        result = build_trainer(RunSpec(workload="mnist1d")).fit()
    finally:
        torch.set_num_threads(1)
    assert result.final.metrics["accuracy"] >= workload.target


def _rows(inputs: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in inputs.reshape(len(inputs), -1)}


def _dataset_rows(dataset) -> set[bytes]:
    return {dataset[i][0].numpy().tobytes() for i in range(len(dataset))}


def _assert_disjoint(train: set[bytes], val: set[bytes], test: set[bytes], name: str) -> None:
    assert val, f"{name} has no validation split"
    assert not train & val and not train & test and not val & test, f"{name}'s splits share samples"


def _image_folder(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for split, count in [("train", 10), ("val", 3)]:
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(
                    root / split / label / f"{i}.png"
                )


def test_every_workload_holds_out_a_disjoint_validation_split(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "cifar", binary=True)
    _image_folder(tmp_path / "images")
    local = {"cifar10": {"path": str(tmp_path / "cifar")}, "imagefolder": {"path": str(tmp_path / "images"), "size": 8}}
    checked = set()
    for name in WORKLOADS.names():
        workload = get_workload(name)
        if workload.kind() is DataKind.TOKENS:
            continue  # split by document, tested with the text workloads
        options = workload.resolve_options(local.get(name, {}))
        data = workload.data(options)
        if isinstance(data, DatasetSplits):
            _assert_disjoint(_dataset_rows(data.train), _dataset_rows(data.val), _dataset_rows(data.test), name)
        else:
            _assert_disjoint(_rows(data.train_inputs), _rows(data.val_inputs), _rows(data.test_inputs), name)
            assert len(data.val_inputs) == len(workload.data(options).val_inputs)  # fixed, not per call
        checked.add(name)
    assert {"mnist1d", "mnist5k", "digits", "synthetic", "cifar10", "imagefolder"} <= checked
    first, again = get_workload("digits").data({}), get_workload("digits").data({})
    assert torch.equal(first.val_inputs, again.val_inputs)  # seeded: the same held-out samples every time
