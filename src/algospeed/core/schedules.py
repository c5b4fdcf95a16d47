"""Learning-rate multipliers as functions of progress, so every budget is a fully decayed run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupLinearDecay:
    """Linear warmup over the first `warmup` of progress, then linear decay to zero at the end.

    Linear decay to zero is the robust default for budgeted training (Li, Yumer and Ramanan, ICLR
    2020): a shortened run with it is a fair, fully decayed baseline.
    """

    warmup: float = 0.02

    def __call__(self, progress: float) -> float:
        if progress < self.warmup:
            return (progress + 1e-3) / (self.warmup + 1e-3)
        return max(0.0, (1.0 - progress) / (1.0 - self.warmup))
