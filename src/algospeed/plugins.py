"""Plugins: a Python file or an importable module that registers methods (`@register`) and
workloads (`register_workload`), named on the command line or in a study file.

    algospeed train --plugin lab/my_methods.py --workload mine --methods my_trick
    plugins: [lab/my_methods.py, mypackage.speedups]          # in a study file

A plugin is imported once per process, before anything is built, and every worker of a study loads
the same ones. The sha256 of its source is part of every run's fingerprint and of the study's
manifest, so a changed plugin never silently reuses results of its earlier code. A plugin that
cannot be found or imported, registers a name twice or shadows a built-in is a `PluginError`: one
line naming the plugin and the reason.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from algospeed.errors import UsageError
from algospeed.methods.registry import METHODS
from algospeed.registry import registering_as
from algospeed.workloads.registry import WORKLOADS

REGISTRIES = (METHODS, WORKLOADS)


class PluginError(UsageError):
    """A plugin that cannot be loaded (exit code 2)."""


@dataclass(frozen=True)
class Plugin:
    """A loaded plugin: `ref` is the absolute path of a file or the name of a module."""

    ref: str
    sha256: str

    @property
    def display(self) -> str:
        return display_ref(self.ref)


def is_file_ref(text: str) -> bool:
    """A path (`lab/x.py`, `./x.py`) rather than a module name (`mypackage.speedups`)."""
    return text.endswith(".py") or "/" in text or "\\" in text


def resolve_ref(text: str, base: Path | None = None) -> str:
    """A plugin reference as stored: the absolute path of a file (a relative one taken from `base`, by
    default the current folder), or a module name as it is."""
    text = str(text).strip()
    if not text:
        raise PluginError("a plugin reference is empty: give a file path or a module name")
    if not is_file_ref(text):
        return text
    path = Path(text).expanduser()
    return str((path if path.is_absolute() else (base or Path.cwd()) / path).resolve())


def display_ref(ref: str) -> str:
    """A plugin as a user reads it: a file relative to the current folder when below it."""
    if not is_file_ref(ref):
        return ref
    try:
        return str(Path(ref).relative_to(Path.cwd()))
    except ValueError:
        return ref


def source_files(ref: str) -> list[Path]:
    """The source files a plugin's hash covers: the file, a module's file, or every .py of a package."""
    if is_file_ref(ref):
        path = Path(ref)
        if not path.is_file():
            raise PluginError(f"plugin {display_ref(ref)}: no such file")
        return [path]
    try:
        found = importlib.util.find_spec(ref)
    except (ImportError, ValueError) as error:
        raise PluginError(f"plugin {ref}: cannot be imported ({error})") from None
    if found is None or found.origin is None:
        raise PluginError(f"plugin {ref}: no module of that name is importable (is its package installed?)")
    if found.submodule_search_locations:
        return sorted(p for location in found.submodule_search_locations for p in Path(location).rglob("*.py"))
    return [Path(found.origin)]


def source_digest(ref: str) -> str:
    """sha256 over the plugin's source files (names and contents)."""
    digest = hashlib.sha256()
    for path in source_files(ref):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


_LOADED: dict[str, Plugin] = {}


def load_plugin(text: str, base: Path | None = None) -> Plugin:
    """Import the plugin once per process (again if its source changed) and return its record."""
    ref = resolve_ref(text, base)
    sha = source_digest(ref)
    loaded = _LOADED.get(ref)
    if loaded is not None and loaded.sha256 == sha:
        return loaded
    if loaded is not None:  # the source changed: forget what the old code registered
        for registry in REGISTRIES:
            registry.remove_origin(ref)
    for registry in REGISTRIES:
        registry.ensure_builtins()  # so that shadowing a built-in is detected, whatever the order
    plugin = Plugin(ref, sha)
    if is_file_ref(ref) and _is_main_script(ref):
        _LOADED[ref] = plugin  # the running script itself: what it registers is registered already
        return plugin
    try:
        with registering_as(ref):
            _import(ref)
    except UsageError as error:
        for registry in REGISTRIES:
            registry.remove_origin(ref)
        raise PluginError(f"plugin {plugin.display}: {error}") from None
    except Exception as error:
        for registry in REGISTRIES:
            registry.remove_origin(ref)
        raise PluginError(f"plugin {plugin.display} failed to import: {_one_line(error)}") from None
    _LOADED[ref] = plugin
    return plugin


def load_plugins(texts: Iterable[str], base: Path | None = None) -> list[Plugin]:
    """Load every plugin in order; the first that fails is the error."""
    plugins: list[Plugin] = []
    for text in texts:
        plugin = load_plugin(text, base)
        if plugin.ref not in {p.ref for p in plugins}:
            plugins.append(plugin)
    return plugins


def check_plugins(recorded: dict[str, str]) -> None:
    """Load the plugins a run or study recorded and require their source to be unchanged."""
    for ref, sha in recorded.items():
        plugin = load_plugin(ref)
        if sha and plugin.sha256 != sha:
            raise PluginError(
                f"plugin {plugin.display} changed since it was recorded (sha256 {sha[:12]}... is now "
                f"{plugin.sha256[:12]}...): its results belong to the old code"
            )


def unload_plugin(text: str) -> None:
    """Forget a plugin and everything it registered (a notebook or a test that loaded one)."""
    ref = resolve_ref(text)
    for registry in REGISTRIES:
        registry.remove_origin(ref)
    _LOADED.pop(ref, None)
    if is_file_ref(ref):
        sys.modules.pop(_module_name(ref), None)


def fingerprint(plugins: Sequence[Plugin]) -> dict[str, str]:
    """ref -> sha256, as runs and studies record them."""
    return {plugin.ref: plugin.sha256 for plugin in plugins}


def _module_name(ref: str) -> str:
    return f"algospeed_plugin_{Path(ref).stem}_{hashlib.sha256(ref.encode()).hexdigest()[:10]}"


def _import(ref: str) -> None:
    if not is_file_ref(ref):
        importlib.import_module(ref)
        return
    name = _module_name(ref)
    sys.modules.pop(name, None)
    spec = importlib.util.spec_from_file_location(name, ref)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {display_ref(ref)}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered first, so that its dataclasses and pickling find it
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def _is_main_script(ref: str) -> bool:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path is not None and Path(path).resolve() == Path(ref)


def _one_line(error: BaseException) -> str:
    """The exception and where in the plugin it was raised, on one line."""
    where = ""
    if isinstance(error, SyntaxError):
        where = f" (line {error.lineno})"
    else:
        package = str(Path(__file__).resolve().parent)
        frames = [
            frame
            for frame in traceback.extract_tb(error.__traceback__)
            if not frame.filename.startswith((package, "<frozen"))
        ]
        if frames:
            where = f" (line {frames[-1].lineno})"
    message = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {message}{where}"
