"""Model surgery shared by the model methods: find modules and replace them in place."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def replace_modules(
    model: nn.Module,
    matches: Callable[[nn.Module], bool],
    build: Callable[[nn.Module], nn.Module],
    skip: tuple[type[nn.Module], ...] = (),
) -> int:
    """Replace every submodule for which `matches` is true by `build(submodule)`, in place; returns how many.

    Matches are collected first (outermost only: a matched module's children are not searched), so
    that a replacement that wraps the original is never matched again. The root itself is never
    replaced. A replacement takes the training mode of what it replaces. Modules of the `skip`
    types (earlier replacements) are neither matched nor searched.
    """
    targets: list[tuple[nn.Module, str, nn.Module]] = []

    def visit(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, skip):
                continue
            if matches(child):
                targets.append((parent, name, child))
            else:
                visit(child)

    visit(model)
    for parent, name, child in targets:
        setattr(parent, name, build(child).train(child.training))
    return len(targets)


def is_residual_block(module: nn.Module) -> bool:
    """A block whose output is `f(shortcut(x) + residual(x))`, with the two as separate submodules (the
    convention of `algospeed.workloads.models.ResidualBlock`)."""
    return isinstance(getattr(module, "residual", None), nn.Module) and isinstance(
        getattr(module, "shortcut", None), nn.Module
    )
