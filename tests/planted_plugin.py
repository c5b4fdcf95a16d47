"""A toy workload for the recipe-search test: one method is planted to help (it undoes a badly scaled feature),
one to hurt. Loaded only as a plugin by path (never imported by pytest: it is not a test module)."""

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.methods import register
from algospeed.taxonomy.axes import How, Place, What, When, Where
from algospeed.workloads import SGD_NESTEROV, DataKind, Splits, Workload, register_workload

SCALE = 30.0


def load(options):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(3000, 8, generator=generator)
    targets = (inputs[:, 0] + inputs[:, 1] > 0).long()
    inputs[:, 0] *= SCALE
    return Splits(inputs[:2000], targets[:2000], inputs[2500:], targets[2500:], inputs[2000:2500], targets[2000:2500])


register_workload(
    Workload(
        name="planted",
        description="a badly scaled feature",
        load=load,
        model=lambda options, classes: nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, classes)),
        data_kind=DataKind.TABULAR,
        target=0.9,
        budget="120ba",
        eval_interval="0.1dur",
        batch_size=50,
        optimizer=SGD_NESTEROV,
        lr=0.01,
    )
)


@register("standardize")
class Standardize(Method):
    """Divide the badly scaled feature by its scale (planted to help)."""

    place = Place(where=(Where.DATA,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.TABULAR})

    def on_after_dataloader(self, state) -> None:
        inputs = state.batch.inputs.clone()
        inputs[:, 0] /= SCALE
        state.batch = state.batch.replace(inputs=inputs)

    def on_eval_start(self, state) -> None:
        state.eval_model = nn.Sequential(_Unscale(), state.model)

    def on_eval_end(self, state) -> None:
        state.eval_model = None


class _Unscale(nn.Module):
    def forward(self, inputs):
        inputs = inputs.clone()
        inputs[:, 0] /= SCALE
        return inputs


@register("corrupt")
class Corrupt(Method):
    """Replace half of every input by noise (planted to hurt)."""

    place = Place(where=(Where.DATA,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.TABULAR})

    def on_after_dataloader(self, state) -> None:
        inputs = state.batch.inputs
        noise = torch.randn(inputs.shape, generator=state.generator).to(inputs.device) * 3
        state.batch = state.batch.replace(inputs=inputs + noise)
