"""Workloads: data, model, metric and defaults, by name. A plugin defines its own the way the built-ins are:

register_workload(Workload(name="mine", load=..., model=..., data_kind=DataKind.IMAGES, ...))
"""

from algospeed.core.data_kind import DataKind
from algospeed.workloads.base import DatasetSplits, Splits, Workload
from algospeed.workloads.optimizers import ADAMW, SGD_NESTEROV, OptimizerFactory
from algospeed.workloads.registry import get_workload, register_workload, workload_names

__all__ = [
    "ADAMW",
    "SGD_NESTEROV",
    "DataKind",
    "DatasetSplits",
    "OptimizerFactory",
    "Splits",
    "Workload",
    "get_workload",
    "register_workload",
    "workload_names",
]
