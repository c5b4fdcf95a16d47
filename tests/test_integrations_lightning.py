"""algospeed methods in a real Lightning fit: each row of the support table in docs/integrations.md holds
(the method trains and resumes, or is refused with the reason given), the methods that work have their
effect, and a resumed fit ends where an uninterrupted one does."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import ClassVar

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from algospeed import methods
from algospeed.core.data_kind import DataKind
from algospeed.errors import UsageError
from algospeed.integrations.lightning import AlgospeedCallback
from algospeed.integrations.loggers import CsvLogger
from algospeed.methods.model.blurpool import BlurConv
from algospeed.methods.optimization.ema import EMA
from algospeed.methods.registry import method_names
from algospeed.workloads.models import ResidualBlock

DOC = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore")


class Net(pl.LightningModule):
    """A small image classifier with what the model methods look for: residual blocks (two of one shape),
    strided and plain convolutions, batch norm, linear layers."""

    def __init__(self, lr: float = 1e-3, optimizer: type[torch.optim.Optimizer] = torch.optim.AdamW) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lr, self.optimizer_class = lr, optimizer
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            ResidualBlock(16, 16),
            ResidualBlock(16, 16),
            ResidualBlock(16, 32, stride=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 32),
            nn.ReLU(),
            nn.Linear(32, 4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        inputs, targets = batch
        return F.cross_entropy(self(inputs), targets)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        inputs, targets = batch
        self.log("val_loss", F.cross_entropy(self(inputs), targets))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_class(self.parameters(), lr=self.lr)


def loader(samples: int = 32) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(samples, 3, 8, 8, generator=generator)
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(inputs, torch.randint(0, 4, (samples,), generator=generator)), batch_size=16
    )


def fit(
    callback: AlgospeedCallback,
    module: pl.LightningModule | None = None,
    epochs: int = 2,
    folder: Path | None = None,
    resume: Path | None = None,
) -> pl.LightningModule:
    module = module or Net()
    extra = [ModelCheckpoint(dirpath=folder, every_n_epochs=1, save_top_k=-1)] if folder else []
    trainer = pl.Trainer(
        max_epochs=epochs,
        callbacks=[callback, *extra],
        logger=False,
        enable_checkpointing=bool(folder),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        deterministic=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader(), loader(), ckpt_path=resume)
    return module


def support_table(column: int) -> dict[str, tuple[bool, str]]:
    """method -> (works, why) from the doc's table (column 1: Lightning, 2: Hugging Face)."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and (name := re.fullmatch(r"`(\w+)`", cells[0])):
            rows[name.group(1)] = (cells[column] == "yes", cells[3])
    return rows


TABLE = support_table(1)


def test_the_table_lists_every_registered_method() -> None:
    assert sorted(TABLE) == sorted(method_names())


@pytest.mark.parametrize("name", sorted(TABLE))
def test_each_claim_of_the_table_holds_in_a_real_fit(name: str, tmp_path: Path) -> None:
    """A method marked yes trains two epochs and resumes from the first epoch's checkpoint; one marked no is
    refused with a one-line UsageError, before it trains or at its first step."""
    works, why = TABLE[name]
    try:
        fit(AlgospeedCallback([methods.build(name)]), folder=tmp_path)
        fit(AlgospeedCallback([methods.build(name)]), resume=tmp_path / "epoch=0-step=2.ckpt")
    except UsageError as error:
        assert not works, f"{name} is marked as working in Lightning but: {error}"
        assert "\n" not in str(error)
        assert f"'{name}'" in str(error)
        return
    assert works, f"{name} is marked as not working in Lightning ({why}), but it trains and resumes"


def test_blurpool_replaces_the_strided_convolution_and_lightning_trains_it() -> None:
    callback = AlgospeedCallback("blurpool")
    before = Net().body[5].residual[0].weight.detach().clone()
    module = fit(callback)
    assert isinstance(module.body[5].residual[0], BlurConv)
    assert not torch.equal(module.body[5].residual[0].conv.weight, before)  # configure_optimizers saw the new module


class RecordingSGD(torch.optim.SGD):
    """SGD that remembers the learning rate it stepped with."""

    rates: ClassVar[list[float]] = []

    def step(self, closure=None):  # type: ignore[no-untyped-def, override]
        loss = super().step(closure)
        RecordingSGD.rates.append(self.param_groups[0]["lr"])
        return loss


def test_a_schedule_method_sets_the_rate_the_optimizer_steps_with_over_lightnings_budget() -> None:
    RecordingSGD.rates = []
    callback = AlgospeedCallback("cosine_schedule")
    fit(callback, Net(lr=0.2, optimizer=RecordingSGD), epochs=3)
    steps = 6  # 3 epochs of 2 batches: progress is step / 6
    expected = [0.2 * callback.state.schedule(step / steps) for step in range(steps)]
    assert RecordingSGD.rates == pytest.approx(expected)
    assert RecordingSGD.rates[-1] < 0.05 and callback.state.progress == 1.0


def test_without_a_schedule_method_the_rate_stays_lightnings() -> None:
    RecordingSGD.rates = []
    fit(AlgospeedCallback("ema"), Net(lr=0.2, optimizer=RecordingSGD))
    assert RecordingSGD.rates == [0.2] * 4


def test_validation_sees_the_ema_weights_and_training_goes_on_with_its_own(tmp_path: Path) -> None:
    ema = EMA(decay=0.5)
    callback = AlgospeedCallback([ema, CsvLogger(tmp_path / "curve.csv")])
    module = fit(callback)
    assert ema.average is not None
    inputs, targets = next(iter(loader()))
    batches = list(loader())

    def loss(model: nn.Module) -> float:
        model.eval()
        with torch.no_grad():
            return sum(F.cross_entropy(model(x), y).item() * len(y) for x, y in batches) / 32

    assert len(inputs) == len(targets) == 16
    assert callback.curve[-1].metrics["val_loss"] == pytest.approx(loss(ema.average), rel=1e-5)
    assert abs(loss(module) - loss(ema.average)) > 1e-4  # the module holds its own weights again
    assert [point.step for point in callback.curve] == [2, 4]
    assert (tmp_path / "curve.csv").read_text().count("\n") == 3  # a logger passed among the methods


def test_a_resumed_fit_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    whole = AlgospeedCallback([EMA(decay=0.5), methods.build("cosine_schedule")])
    fit(whole, epochs=3, folder=tmp_path)
    resumed = AlgospeedCallback([EMA(decay=0.5), methods.build("cosine_schedule")])
    fit(resumed, epochs=3, resume=tmp_path / "epoch=0-step=2.ckpt")
    a, b = whole.state, resumed.state
    assert (b.clock.steps, b.clock.samples, b.clock.flops) == (a.clock.steps, a.clock.samples, a.clock.flops)
    assert [p.metrics for p in b.curve] == [p.metrics for p in a.curve]
    assert [p.step for p in b.curve] == [2, 4, 6]
    for x, y in zip(a.eval_model.state_dict().values(), b.eval_model.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y)


def test_methods_that_act_between_forward_and_loss_are_refused_before_anything_runs() -> None:
    with pytest.raises(UsageError, match="'label_smoothing' acts at before_loss, where Lightning gives a callback"):
        AlgospeedCallback("label_smoothing")


def test_composition_and_data_kind_are_checked_up_front() -> None:
    with pytest.raises(UsageError, match="cannot be combined"):
        AlgospeedCallback("ema,swa")
    with pytest.raises(UsageError, match="acts on images, signals"):
        AlgospeedCallback("blurpool", data_kind=DataKind.TOKENS)


def test_curve_points_carry_every_cost_and_no_invented_energy() -> None:
    callback = AlgospeedCallback("ema")
    fit(callback)
    point = callback.curve[-1]
    assert (point.step, point.samples, point.epoch, point.progress) == (4, 64, 2.0, 1.0)
    assert point.flops > 0 and point.train_seconds > 0 and point.train_loss > 0
    assert point.energy_joules is None  # no RAPL or GPU counter on this machine
