"""algospeed's methods inside a Hugging Face `Trainer`, as a `transformers.TrainerCallback`:

    trainer = transformers.Trainer(model, args, train_dataset=..., callbacks=[AlgospeedCallback("ema,wsd_schedule")])

Its hooks map onto algospeed's events: `on_init_end` fires `init` (model surgery happens before the
Trainer builds its optimizer over the model), `on_train_begin` fires `fit_start` (after loading the
methods' state when resuming), `on_pre_optimizer_step` sets the learning rate from algospeed's schedule
and fires `before_optimizer_step`, `on_optimizer_step` fires `after_optimizer_step`, `on_step_end`
`batch_end`; an evaluation during training fires `eval_start` (with `state.eval_model`'s weights, e.g.
an EMA, in the model while the Trainer evaluates) and `eval_end` with its metrics. Progress is the
optimizer steps over the Trainer's `max_steps` (from `max_steps` or `num_train_epochs`). The methods'
state is saved as `algospeed.pt` in each checkpoint folder and loaded from the one resumed.

The Trainer shows a callback no batch, runs the forward, loss (inside the model) and backward in
`training_step` with no hook between them: methods that act there are refused up front; see
docs/integrations.md for which methods work.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from algospeed.core.callback import Callback
from algospeed.core.data_kind import DataKind
from algospeed.core.events import Event
from algospeed.core.state import Schedule, State
from algospeed.errors import CheckpointError
from algospeed.integrations.bridge import Bridge, Unavailable

LOOP = "Hugging Face's Trainer"
STATE_FILE = "algospeed.pt"
_NO_BATCH = "its training_step takes the batch from the loader with no callback in between"
_IN_MODEL = "the model computes the loss inside its forward, in training_step"
_NO_BACKWARD_HOOK = "training_step runs the backward with no callback before or after it"
MISSING = {
    Event.AFTER_DATALOADER: _NO_BATCH,
    Event.BEFORE_FORWARD: _NO_BATCH,
    Event.AFTER_FORWARD: _IN_MODEL,
    Event.BEFORE_LOSS: _IN_MODEL,
    Event.AFTER_LOSS: _IN_MODEL,
    Event.BEFORE_BACKWARD: _NO_BACKWARD_HOOK,
    Event.AFTER_BACKWARD: _NO_BACKWARD_HOOK,
}
GUARDED = {
    "model": "the Trainer keeps training the model it was given",
    "optimizer": "the Trainer builds its optimizer (create_optimizer) and steps it; "
    "pass the method's plain function as Trainer(optimizers=(optimizer, None)) instead (algospeed.functional)",
    "train_data": "the Trainer owns the data loader",
    "loss_fn": _IN_MODEL,
    "forward": "the forward runs inside training_step",
}


class AlgospeedCallback(TrainerCallback):
    """Runs algospeed `methods` (a spec such as `"ema,cosine_schedule"`, or built methods and callbacks, a
    logger from `logger_from_spec` included) inside a Hugging Face Trainer. `schedule` (a multiplier of
    the learning rate as a function of progress) replaces the Trainer's scheduler; without it, the rate
    is the Trainer's unless a method sets a schedule. `state` is the algospeed `State` the methods see;
    `curve` the points recorded at each evaluation during training.

    Samples are counted as the Trainer's total batch size per step (a short last batch counts full),
    tokens as its `num_input_tokens_seen` (0 unless `include_num_input_tokens_seen` is on), FLOPs on the
    first step of each kind and charged to the later ones (exact for fixed-shape batches)."""

    def __init__(
        self,
        methods: str | Sequence[Callback] = (),
        *,
        schedule: Schedule | None = None,
        seed: int = 0,
        data_kind: DataKind | None = None,
    ) -> None:
        self.bridge = Bridge(methods, LOOP, MISSING, GUARDED, schedule=schedule, seed=seed, data_kind=data_kind)

    @property
    def state(self) -> State:
        return self.bridge.require_state()

    @property
    def curve(self) -> list[Any]:
        return self.state.curve

    # ------------------------------------------------------------------------------ fit start
    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.bridge.state is not None:
            return
        given = kwargs.get("optimizer")
        if given is None:
            later = Unavailable("the optimizer", "the Trainer builds it when training starts")
            self.bridge.init(kwargs["model"], args.device, later, lambda params: later)
        else:
            rebuild = Unavailable("a new optimizer", "the Trainer was given its optimizer and keeps it")
            self.bridge.init(kwargs["model"], args.device, given, rebuild)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step > 0:
            self.bridge.load_state_dict(load_state(Path(args.output_dir) / f"checkpoint-{state.global_step}"))
        self.bridge.start(kwargs["optimizer"], state.max_steps, args.device)

    # ----------------------------------------------------------------------------------- steps
    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.bridge.fire(Event.EPOCH_START)

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.bridge.begin_step(None)

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.bridge.end_count()
        self.bridge.before_optimizer_step()

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.bridge.fire(Event.AFTER_OPTIMIZER_STEP)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        bridge, clock = self.bridge, self.state.clock
        samples = state.train_batch_size * args.gradient_accumulation_steps * args.world_size
        tokens = max(0, int(state.num_input_tokens_seen) - clock.tokens)
        bridge.end_step(state.global_step, float(state.epoch or 0.0), samples, tokens)
        if self.state.stop_requested:
            control.should_training_stop = True
        self._before_evaluation(control)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.bridge.fire(Event.EPOCH_END)
        self._before_evaluation(control)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        logs = kwargs.get("logs") or {}
        if "loss" in logs:
            self.bridge.add_loss(torch.tensor(float(logs["loss"])))

    # ------------------------------------------------------------------------------ evaluation
    def _before_evaluation(self, control: TrainerControl) -> None:
        """The Trainer evaluates and saves right after `on_step_end`/`on_epoch_end` when its flow callback
        asked for it: neither is charged to training."""
        if control.should_evaluate and not self.bridge.evaluating:
            self.bridge.begin_eval()
        elif control.should_save:
            self.bridge.pause()

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self.bridge.evaluating:  # an evaluation outside training records no point
            metrics = kwargs.get("metrics") or {}
            self.bridge.end_eval({key: value for key, value in metrics.items() if isinstance(value, (int, float))})
            self.bridge.resume()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            torch.save(self.bridge.state_dict(), folder / STATE_FILE)
        self.bridge.resume()

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.bridge.abort()
        self.bridge.finish()


def load_state(folder: Path) -> dict[str, Any]:
    """The methods' state saved in a Trainer's checkpoint folder."""
    path = folder / STATE_FILE
    if not path.is_file():
        raise CheckpointError(
            f"resuming at {folder.name} but {path} holds no algospeed state: resume from a checkpoint "
            "written with the algospeed callback, in the Trainer's output_dir"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot read {path}: {str(error).splitlines()[0] if str(error) else error}") from None
