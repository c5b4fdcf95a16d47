"""algospeed: algorithmic speedups for deep-learning training.

Formalize speedup as cost-at-quality, catalogue methods in a taxonomy, apply them as
resumable plug-ins to one budget-aware training loop, evaluate them fairly and diagnose
where a step's time goes.
"""

from algospeed.errors import AlgospeedError, UsageError

__version__ = "0.1.0"

__all__ = ["AlgospeedError", "UsageError", "__version__"]
