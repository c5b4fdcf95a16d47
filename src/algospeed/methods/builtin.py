"""Imports every built-in method module (each module under `algospeed.methods.data`, `.model` and
`.optimization`) so that each registers itself; adding a method needs no edit here."""

from __future__ import annotations

import importlib
import pkgutil

import algospeed.methods.data
import algospeed.methods.model
import algospeed.methods.optimization

for package in (algospeed.methods.data, algospeed.methods.model, algospeed.methods.optimization):
    for module in pkgutil.iter_modules(package.__path__, prefix=f"{package.__name__}."):
        importlib.import_module(module.name)
