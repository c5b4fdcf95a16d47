"""Every code example in a docstring runs and prints what it shows (doctest), and the study file example
in `algospeed.study.spec` is a valid study."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import textwrap
from pathlib import Path

import pytest

import algospeed
from algospeed.study.spec import load_study_spec


def _modules_with_examples() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(algospeed.__path__, prefix="algospeed.")]
    finder = doctest.DocTestFinder()
    return [
        name
        for name in names
        if any(test.examples for test in finder.find(importlib.import_module(name), name.rsplit(".", 1)[-1]))
    ]


EXAMPLES = _modules_with_examples()


def test_the_modules_with_examples_are_found() -> None:
    expected = {"algospeed.functional", "algospeed.methods", "algospeed.profile", "algospeed.study"}
    assert expected <= set(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_docstring_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_the_study_file_example_is_a_valid_study(tmp_path: Path) -> None:
    import algospeed.study.spec as spec_module

    doc = spec_module.__doc__ or ""
    example = textwrap.dedent(doc.split("A study file is YAML:", 1)[1].split('"""')[0])
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "my_methods.py").write_text('"""An empty plugin."""\n')
    file = tmp_path / "study.yaml"
    file.write_text(example)
    spec = load_study_spec(file)
    assert spec.name == "label-smoothing-vs-ema" and len(spec.grid()) == 3 * 3 * 3
    assert spec.plugins == [str((tmp_path / "lab" / "my_methods.py").resolve())]
