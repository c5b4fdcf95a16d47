"""algospeed methods in a real Hugging Face Trainer (a tiny model defined here, nothing from the hub): each
row of the support table in docs/integrations.md holds, the methods that work have their effect, and a
resumed run ends where an uninterrupted one does."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, ClassVar

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

from algospeed import methods
from algospeed.errors import CheckpointError, UsageError
from algospeed.integrations.transformers import STATE_FILE, AlgospeedCallback
from algospeed.methods.model.blurpool import BlurConv
from algospeed.methods.optimization.ema import EMA
from algospeed.methods.registry import method_names
from algospeed.workloads.models import ResidualBlock

DOC = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
pytestmark = pytest.mark.filterwarnings("ignore")


class TinyConfig(PretrainedConfig):
    model_type = "algospeed-tiny"

    def __init__(self, classes: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.classes = classes


class TinyImageModel(PreTrainedModel):
    """A small image classifier that computes its own loss, as Hugging Face models do, with what the model
    methods look for: residual blocks (two of one shape), strided and plain convolutions, batch norm."""

    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
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
            nn.Linear(32, config.classes),
        )
        self.post_init()

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.body(inputs)
        return {"loss": None if labels is None else F.cross_entropy(logits, labels), "logits": logits}


class Images(torch.utils.data.Dataset):
    def __init__(self, samples: int = 32) -> None:
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(samples, 3, 8, 8, generator=generator)
        self.labels = torch.randint(0, 4, (samples,), generator=generator)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"inputs": self.inputs[index], "labels": self.labels[index]}


def make_model() -> TinyImageModel:
    torch.manual_seed(0)
    return TinyImageModel(TinyConfig())


def trainer(callback: AlgospeedCallback, folder: Path, steps: int = 4, **kwargs: Any) -> Trainer:
    """Two optimizer steps an epoch (32 samples, batches of 16), evaluated and saved every 2 steps."""
    args = TrainingArguments(
        output_dir=str(folder),
        max_steps=steps,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        learning_rate=0.05,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Trainer(
            model=make_model(),
            args=args,
            train_dataset=Images(),
            eval_dataset=Images(),
            callbacks=[callback],
            **kwargs,
        )


def support_table(column: int) -> dict[str, tuple[bool, str]]:
    """method -> (works, why) from the doc's table (column 1: Lightning, 2: Hugging Face)."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and (name := re.fullmatch(r"`(\w+)`", cells[0])):
            rows[name.group(1)] = (cells[column] == "yes", cells[3])
    return rows


TABLE = support_table(2)


def test_the_table_lists_every_registered_method() -> None:
    assert sorted(TABLE) == sorted(method_names())


@pytest.mark.parametrize("name", sorted(TABLE))
def test_each_claim_of_the_table_holds_in_a_real_run(name: str, tmp_path: Path) -> None:
    """A method marked yes trains four steps and resumes from the second step's checkpoint; one marked no
    is refused with a one-line UsageError, before it trains or at its first step."""
    works, why = TABLE[name]
    try:
        trainer(AlgospeedCallback([methods.build(name)]), tmp_path).train()
        trainer(AlgospeedCallback([methods.build(name)]), tmp_path).train(
            resume_from_checkpoint=str(tmp_path / "checkpoint-2")
        )
    except UsageError as error:
        assert not works, f"{name} is marked as working in Hugging Face's Trainer but: {error}"
        assert "\n" not in str(error)
        assert f"'{name}'" in str(error)
        return
    assert works, f"{name} is marked as not working in Hugging Face's Trainer ({why}), but it trains and resumes"


def test_blurpool_replaces_the_strided_convolution_before_the_trainer_builds_its_optimizer(tmp_path: Path) -> None:
    run = trainer(AlgospeedCallback("blurpool"), tmp_path)
    before = run.model.body[5].residual[0].conv.weight.detach().clone()
    run.train()
    assert isinstance(run.model.body[5].residual[0], BlurConv)
    assert not torch.equal(run.model.body[5].residual[0].conv.weight, before)


class RecordingSGD(torch.optim.SGD):
    """SGD that remembers the learning rate it stepped with."""

    rates: ClassVar[list[float]] = []

    def step(self, closure=None):  # type: ignore[no-untyped-def, override]
        loss = super().step(closure)
        RecordingSGD.rates.append(self.param_groups[0]["lr"])
        return loss


def test_a_schedule_method_sets_the_rate_the_optimizer_steps_with_over_the_trainers_budget(tmp_path: Path) -> None:
    RecordingSGD.rates = []
    callback = AlgospeedCallback("cosine_schedule")
    trainer(callback, tmp_path, steps=6, optimizer_cls_and_kwargs=(RecordingSGD, {"lr": 0.2})).train()
    expected = [0.2 * callback.state.schedule(step / 6) for step in range(6)]
    assert RecordingSGD.rates == pytest.approx(expected)
    assert callback.state.progress == 1.0


def test_without_a_schedule_method_the_rate_stays_the_trainers(tmp_path: Path) -> None:
    RecordingSGD.rates = []
    trainer(AlgospeedCallback("ema"), tmp_path, optimizer_cls_and_kwargs=(RecordingSGD, {"lr": 0.2})).train()
    assert RecordingSGD.rates == pytest.approx([0.2, 0.15, 0.1, 0.05])  # the Trainer's own linear decay


def test_evaluation_sees_the_ema_weights_and_training_goes_on_with_its_own(tmp_path: Path) -> None:
    ema = EMA(decay=0.5)
    callback = AlgospeedCallback([ema])
    run = trainer(callback, tmp_path)
    run.train()
    assert ema.average is not None
    data = Images()

    def loss(model: nn.Module) -> float:
        model.eval()
        with torch.no_grad():
            return model(data.inputs, data.labels)["loss"].item()

    assert callback.curve[-1].metrics["eval_loss"] == pytest.approx(loss(ema.average), rel=1e-5)
    assert abs(loss(run.model) - loss(ema.average)) > 1e-4  # the model holds its own weights again
    assert [point.step for point in callback.curve] == [2, 4]


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    whole = AlgospeedCallback([EMA(decay=0.5), methods.build("cosine_schedule")])
    trainer(whole, tmp_path / "whole", steps=6).train()
    assert (tmp_path / "whole" / "checkpoint-2" / STATE_FILE).is_file()
    resumed = AlgospeedCallback([EMA(decay=0.5), methods.build("cosine_schedule")])
    trainer(resumed, tmp_path / "whole", steps=6).train(resume_from_checkpoint=str(tmp_path / "whole" / "checkpoint-2"))
    a, b = whole.state, resumed.state
    assert (b.clock.steps, b.clock.samples, b.clock.flops) == (a.clock.steps, a.clock.samples, a.clock.flops)
    assert [p.step for p in b.curve] == [2, 4, 6]
    assert [p.metrics["eval_loss"] for p in b.curve] == pytest.approx([p.metrics["eval_loss"] for p in a.curve])
    for x, y in zip(a.eval_model.state_dict().values(), b.eval_model.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y)


def test_resuming_from_a_checkpoint_without_algospeed_state_says_so(tmp_path: Path) -> None:
    trainer(AlgospeedCallback("ema"), tmp_path).train()
    (tmp_path / "checkpoint-2" / STATE_FILE).unlink()
    with pytest.raises(CheckpointError, match="holds no algospeed state"):
        trainer(AlgospeedCallback("ema"), tmp_path).train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))


def test_methods_that_need_the_batch_or_the_loss_are_refused_before_anything_runs() -> None:
    with pytest.raises(UsageError, match=r"'label_smoothing' acts at before_loss, .* computes the loss inside"):
        AlgospeedCallback("label_smoothing")
    with pytest.raises(UsageError, match="'cutout' acts at after_dataloader, where Hugging Face's Trainer"):
        AlgospeedCallback("cutout")


def test_curve_points_carry_every_cost_and_no_invented_energy(tmp_path: Path) -> None:
    callback = AlgospeedCallback("ema")
    trainer(callback, tmp_path).train()
    point = callback.curve[-1]
    assert (point.step, point.samples, point.epoch, point.progress) == (4, 64, 2.0, 1.0)
    assert point.flops > 0 and point.train_seconds > 0 and point.train_loss > 0
    assert point.energy_joules is None
