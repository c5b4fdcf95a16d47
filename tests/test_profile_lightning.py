"""The profiler in a real Lightning fit: the phase table from Lightning's hooks, the methods of an
AlgospeedCallback under their own names, FLOPs, MFU, verdict and advice for the inferred data kind."""

from __future__ import annotations

import logging
import time

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.integrations.lightning import AlgospeedCallback
from algospeed.methods.registry import method_class
from algospeed.profile.lightning import ProfilerCallback
from algospeed.profile.peak import Machine
from algospeed.profile.phases import PHASES
from algospeed.profile.profiler import Profiler
from algospeed.profile.schedule import ProfileSchedule
from algospeed.profile.verdict import KINDS
from algospeed.taxonomy.axes import How, Place, What, When, Where

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore")
MACHINE = Machine("test machine", "fp32", 1e13, "test", 2e12, "test", 2e-6, 64e9)
NAP = 0.005


class Napping(Method):
    """Sleeps before each backward: work of its own, to be charged to it by name."""

    name = "napping"
    place = Place(where=(Where.MODEL,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))

    def on_before_backward(self, state: State) -> None:
        time.sleep(NAP)


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        inputs, targets = batch
        return F.cross_entropy(self.body(inputs), targets)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        inputs, targets = batch
        self.log("val_loss", F.cross_entropy(self.body(inputs), targets))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader() -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 3, 8, 8, generator=generator)
    targets = torch.randint(0, 4, (64,), generator=generator)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(inputs, targets), batch_size=8)


def test_the_profiler_in_a_lightning_fit_times_its_phases_and_methods(tmp_path) -> None:
    profiler = Profiler(ProfileSchedule(skip_first=2, warmup=1, active=10), machine=MACHINE)
    trainer = pl.Trainer(
        max_steps=14,
        accelerator="cpu",
        callbacks=[AlgospeedCallback([Napping()]), ProfilerCallback(profiler)],
        val_check_interval=4,
        limit_val_batches=2,
        num_sanity_val_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Net(), loader(), loader())
    profile = profiler.report()
    assert profile.steps == list(range(3, 13))
    rows = profile.rows()
    assert {row.key for row in rows} >= set(PHASES) | {"method:napping"}
    assert sum(row.share for row in rows) == pytest.approx(1.0)
    assert sum(profile.step_seconds) == pytest.approx(profile.total_seconds)
    assert all(profile.phases[key] > 0 for key in ("data", "forward", "backward", "optimizer", "eval"))
    assert profile.phases["method:napping"] >= 10 * NAP
    assert profile.phases["backward"] < profile.phases["method:napping"]  # the nap came before the backward
    assert profile.samples == 10 * 8
    assert profile.flops > 0 and profile.mfu is not None and 0 < profile.mfu < 1
    assert profile.verdict is not None and profile.verdict.kind in KINDS
    assert profiler.data_kind is DataKind.IMAGES and "napping" in profiler.methods
    implemented = [m.name for section in profile.advice for m in section.methods if m.implemented]
    assert implemented and all(DataKind.IMAGES in method_class(name).data_kinds for name in implemented)
