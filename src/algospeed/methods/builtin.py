"""Imports every built-in method module (anything under `algospeed.methods` that is not
infrastructure) so that each registers itself; adding a method needs no edit here."""

from __future__ import annotations

import importlib
import pkgutil

import algospeed.methods as package

INFRASTRUCTURE = {"builtin", "registry", "spec", "common"}

for module in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
    if module.name.rsplit(".", 1)[-1] not in INFRASTRUCTURE:
        importlib.import_module(module.name)
