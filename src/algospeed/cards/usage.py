"""How to use a method: the spec to pass, a workload to try it on, and its plain functions.

The example workload is one whose data the method acts on (a plugin's own workload for a plugin's method,
else an embedded one; for methods that need residual blocks, one whose model has them), so every card's
command runs as printed.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from algospeed import functional
from algospeed.core.data_kind import DataKind
from algospeed.workloads.registry import WORKLOADS

# The embedded workload shown for each kind of data, in order of preference; mnist5k's model is the
# small ResNet, for methods that act on residual blocks.
EXAMPLE_WORKLOADS = ((DataKind.SIGNALS, "mnist1d"), (DataKind.IMAGES, "digits"), (DataKind.TOKENS, "shakespeare-char"))
RESIDUAL_WORKLOAD = "mnist5k"
NEEDS_RESIDUAL_BLOCKS = frozenset({"stochastic_depth", "progressive_growing"})


@dataclass(frozen=True)
class PlainFunction:
    """A function (or class) of `algospeed.functional` that does the method's work in a user's own loop."""

    name: str
    signature: str
    summary: str


def example_workload(method: str, kinds: frozenset[DataKind], origin: str = "built-in") -> str | None:
    """A workload the method runs on as it is: one its own plugin registers for its data, else an embedded
    one; None where none has its kind of data."""
    if origin != "built-in":
        own = (name for name in WORKLOADS.names() if WORKLOADS.origin(name) == origin)
        found = next((name for name in own if WORKLOADS.get(name).kind() in kinds), None)
        if found is not None:
            return found
    if method in NEEDS_RESIDUAL_BLOCKS:
        return RESIDUAL_WORKLOAD
    return next((workload for kind, workload in EXAMPLE_WORKLOADS if kind in kinds), None)


def plain_functions(module: str) -> tuple[PlainFunction, ...]:
    """The public names of `algospeed.functional` defined in the method's module `module`."""
    found = []
    for name in functional.__all__:
        item = getattr(functional, name)
        if getattr(item, "__module__", None) != module:
            continue
        doc = inspect.getdoc(item) or ""
        found.append(PlainFunction(name, f"{name}{_bare_signature(item)}", doc.split("\n\n")[0].replace("\n", " ")))
    return tuple(found)


def _bare_signature(item: object) -> inspect.Signature:
    """The signature without annotations (under postponed evaluation they print as quoted strings)."""
    signature = inspect.signature(item)  # type: ignore[arg-type]
    parameters = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty)
