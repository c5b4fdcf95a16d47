"""Sliding-window attention with a window-size schedule: each position attends to a window of recent
positions that widens as training progresses (the NanoGPT speedrun's window warmup)."""

from __future__ import annotations

from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.sequence import attentions, check_ramp, ramped_length, sequence_model
from algospeed.taxonomy.axes import How, Place, What, When, Where


def set_window(model: nn.Module, window: int | None) -> None:
    """Make every block of a sequence model attend to at most the `window` latest positions (itself
    included); `None` (or a window covering the whole context) restores plain causal attention."""
    seq = sequence_model(model, "sliding_window")
    for attention in attentions(seq, "sliding_window"):
        attention.window = None if window is None or window >= seq.context else window


@register("sliding_window")
class SlidingWindow(Method):
    """Sliding-window attention whose window grows with progress, as in the NanoGPT speedrun.

    Place: model (the attention pattern), shrink (the span each position attends over); both (with a
    block-sparse attention kernel a narrow window is cheaper, and the local-first curriculum can need
    fewer steps); scheduled. Before each training step every block's `attention.window` is set to
    `initial_fraction * context` growing linearly to the full context at progress `ramp_end`, rounded
    down to a multiple of `multiple`; at the full context the window is lifted (plain causal attention).
    Evaluation uses the window of the moment, which is the full context once the ramp is over. Acts
    through the attention `window` hook of `algospeed.workloads.gpt`'s interface.

    Helps: language models whose early training is dominated by local statistics; with kernels that skip
    the masked blocks (FlexAttention on GPUs), each narrow-window step is cheaper too.

    Hurts: on a CPU (or any dense kernel), a window is an explicit mask: no step is cheaper, and masked
    attention can be slower than the fused causal path; long-range tasks early in training; a ramp that
    ends late leaves little time at the full context before evaluation.

    Reference: Keller Jordan et al., 2024, modded-nanogpt (the NanoGPT speedrun: FlexAttention sliding
    windows with a window-size warmup), https://github.com/KellerJordan/modded-nanogpt; sliding-window
    attention itself from Iz Beltagy, Matthew E. Peters and Arman Cohan, 2020, "Longformer: The
    Long-Document Transformer", arXiv:2004.05150.
    """

    place = Place(where=(Where.MODEL,), what=(What.SHRINK,), how=How.BOTH, when=(When.SCHEDULED,))
    data_kinds = frozenset({DataKind.TOKENS})

    def __init__(self, initial_fraction: float = 0.25, ramp_end: float = 0.7, multiple: int = 16) -> None:
        check_ramp(initial_fraction, ramp_end, multiple, "initial_fraction")
        self.initial_fraction = initial_fraction
        self.ramp_end = ramp_end
        self.multiple = multiple
        self.context = 0

    def on_init(self, state: State) -> None:
        self.context = sequence_model(state.model, self.key).context
        set_window(state.model, self.window_at(0.0))

    def window_at(self, progress: float) -> int:
        """The attention window at `progress`."""
        return ramped_length(self.context, progress, self.initial_fraction, self.ramp_end, self.multiple)

    def on_after_dataloader(self, state: State) -> None:
        window = self.window_at(state.progress)
        set_window(state.model, window)
        if window < self.context:
            state.step_tag += f"|window:{window}"  # a masked attention: count its FLOPs apart
