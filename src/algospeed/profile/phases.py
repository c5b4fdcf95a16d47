"""The phases a training step's time is split into, defined once for the profiler, the profile and the verdict."""

from __future__ import annotations

DATA, H2D, OTHER, EVAL, CHECKPOINT = "data", "h2d", "other", "eval", "checkpoint"
COMPUTE_PHASES = ("forward", "loss", "backward", "optimizer")
PHASES = (DATA, H2D, *COMPUTE_PHASES, EVAL, CHECKPOINT, OTHER)

PHASE_LABELS = {
    DATA: "data wait",
    H2D: "host-to-device",
    "forward": "forward",
    "loss": "loss",
    "backward": "backward",
    "optimizer": "optimizer step",
    EVAL: "eval",
    CHECKPOINT: "checkpoint",
    OTHER: "other (loop, logging)",
}
