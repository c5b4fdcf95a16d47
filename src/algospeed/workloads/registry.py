"""The registry of workloads, by name: the built-in ones and any a plugin registers.

    >>> from algospeed.workloads.registry import get_workload, register_workload
    >>> digits = get_workload("digits")
    >>> digits.kind(), digits.metric.name, digits.optimizer.name
    (<DataKind.IMAGES: 'images'>, 'accuracy', 'sgd')

A plugin calls `register_workload(Workload(name="mine", ...))` (see README "Bring your own").

`get_workload` is the one lookup everything uses (CLI, run specs, studies, profiles).
"""

from __future__ import annotations

import importlib
import inspect

from algospeed.registry import Registry
from algospeed.workloads.base import Workload

BUILTIN_MODULES = ("algospeed.workloads.embedded", "algospeed.workloads.local", "algospeed.workloads.text")
"""The modules that register the built-in workloads, imported by name on first use, the way a plugin module is."""


def _load_builtin_workloads() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


WORKLOADS: Registry[Workload] = Registry("workload", _load_builtin_workloads)


def register_workload(workload: Workload) -> Workload:
    """Register `workload` under its name (unique; a plugin may not shadow a built-in); returns it."""
    caller = inspect.currentframe()
    module = caller.f_back.f_globals.get("__name__", "") if caller is not None and caller.f_back else ""
    WORKLOADS.add(workload.name, workload, module)
    return workload


def get_workload(name: str) -> Workload:
    """The workload called `name`; an unknown one is a usage error listing the valid ones."""
    return WORKLOADS.get(name)


def workload_names() -> list[str]:
    return WORKLOADS.names()
