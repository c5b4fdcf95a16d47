"""The README tells the truth about its code: every Python example runs as it is shown, and every
`algospeed` command line in it is one the CLI accepts (its subcommand, options and their types)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from algospeed.cli import app

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def _blocks(language: str) -> list[str]:
    return [body for kind, body in BLOCK.findall(README) if kind == language]


def _commands() -> list[list[str]]:
    """Each `algospeed ...` invocation in the README's shell blocks (also after `&&`), without comments."""
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and Path(words[0]).name == "algospeed":
                    commands.append(words[1:])
    return commands


PYTHON = _blocks("python")
COMMANDS = _commands()


def test_the_readme_has_examples_to_check() -> None:
    assert len(PYTHON) >= 2 and len(COMMANDS) >= 15


def _parse(command, args: list[str], parent=None) -> None:
    """Parse `args` as the CLI would, down to the subcommand, without running it (typer's click API)."""
    context = command.make_context(parent.info_name if parent else "algospeed", list(args), parent=parent)
    if hasattr(command, "resolve_command"):  # a group: the rest names a subcommand
        protected = getattr(context, "_protected_args", None) or getattr(context, "protected_args", [])
        rest = [*protected, *context.args]
        if rest:
            name, sub, remaining = command.resolve_command(context, rest)
            assert sub is not None, f"no subcommand {name!r}"
            _parse(sub, remaining, context)


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_every_readme_command_is_accepted_by_the_cli(args: list[str]) -> None:
    _parse(get_command(app), args)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_every_readme_python_example_runs(index: int, tmp_path: Path) -> None:
    code = PYTHON[index]
    first = code.splitlines()[0]
    name = first[2:].strip() if first.startswith("# ") and first.endswith(".py") else f"example_{index}.py"
    (tmp_path / name).write_text(code)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, name], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "an example should print what it found"


def test_the_command_check_rejects_what_the_cli_would() -> None:
    with pytest.raises(Exception, match="No such option: --budgett"):
        _parse(get_command(app), ["train", "--budgett", "20ep"])
    with pytest.raises(Exception, match="valid integer"):
        _parse(get_command(app), ["train", "--seed", "many"])
    with pytest.raises(Exception, match="No such command 'tarin'"):
        _parse(get_command(app), ["tarin"])
    with pytest.raises(Exception, match="No such option: --gaps-only"):
        _parse(get_command(app), ["taxonomy", "--gaps-only"])


@pytest.mark.parametrize("block", _blocks("yaml"))
def test_every_readme_study_file_is_a_valid_study(block: str) -> None:
    from algospeed.study.spec import validate_study_spec

    data = yaml.safe_load(block)
    spec = validate_study_spec(data, "README study")
    assert spec.grid() and (spec.tuning is None or len(spec.trials()) == spec.tuning.trials * len(spec.arms))


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    test_command = next(line for block in _blocks("bash") for line in block.splitlines() if "pytest" in line)
    ci = (REPO / ".ci" / "run").read_text()
    assert test_command.strip() in ci.splitlines()
