"""Plugins: a user's own workload and method, by path, in train, methods, workloads and studies (local
workers, Ray, a SIGKILL and a resume), with the plugin's source hash beside every result."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from algospeed.cli import main
from algospeed.core.callback import Callback
from algospeed.methods.registry import METHODS
from algospeed.plugins import PluginError, load_plugin, unload_plugin
from algospeed.study.report import analyse, write_report
from algospeed.study.runner import run_study
from algospeed.study.spec import validate_study_spec
from algospeed.study.store import STORE_NAME
from algospeed.workloads.registry import WORKLOADS

REPO = Path(__file__).resolve().parents[1]
PLUGIN = textwrap.dedent(
    '''
    """A user's own workload and method, in one file."""
    import torch
    from torch import nn

    from algospeed.core.callback import Method
    from algospeed.core.data_kind import DataKind
    from algospeed.methods.registry import register
    from algospeed.taxonomy.axes import How, Place, What, When, Where
    from algospeed.workloads.base import Splits, Workload
    from algospeed.workloads.optimizers import ADAMW
    from algospeed.workloads.registry import register_workload

    SCALE = 2.0


    def load(options):
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(512, 6, generator=generator)
        targets = (inputs[:, 0] + inputs[:, 1] > 0).long()
        return Splits(inputs[:384], targets[:384], inputs[384:], targets[384:])


    register_workload(
        Workload(
            name="toy",
            description="two of six features decide the class",
            load=load,
            model=lambda options, classes: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, classes)),
            data_kind=DataKind.TABULAR,
            target=0.8,
            budget="4ep",
            eval_interval="1ep",
            batch_size=32,
            optimizer=ADAMW,
            lr=1e-2,
        )
    )


    @register("scale_inputs")
    class ScaleInputs(Method):
        """Multiply every input by `factor` (a toy method)."""

        place = Place(where=(Where.DATA,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
        data_kinds = frozenset({DataKind.TABULAR})

        def __init__(self, factor: float = SCALE) -> None:
            self.factor = factor

        def on_after_dataloader(self, state) -> None:
            state.batch = state.batch.replace(inputs=state.batch.inputs * self.factor)
    '''
)


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Path]:
    """The plugin file, unloaded again afterwards (so no other test sees its method or workload)."""
    path = tmp_path / "lab" / "my_speedups.py"
    path.parent.mkdir()
    path.write_text(PLUGIN)
    yield path
    unload_plugin(str(path))


def _study(plugin: Path, tmp_path: Path) -> Path:
    file = tmp_path / "study.yaml"
    study = {
        "name": "mine",
        "plugins": [str(plugin.relative_to(tmp_path))],  # relative to the study file
        "workload": "toy",
        "arms": {"baseline": [], "scaled": ["scale_inputs:factor=3"]},
        "budgets": ["12ba", "24ba"],
        "seeds": 2,
        "eval_interval": "0.5dur",
        "currency": "steps",
    }
    file.write_text(yaml.safe_dump(study))
    return file


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_train_methods_and_workloads_take_a_plugin(plugin: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code = main(["train", "--plugin", str(plugin), "--workload", "toy", "--methods", "scale_inputs", "--budget", "8ba",
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["plugins"] == {str(plugin): load_plugin(str(plugin)).sha256}
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0  # the saved plugin is loaded again
    capsys.readouterr()
    assert main(["methods", "--plugin", str(plugin)]) == 0
    listed = capsys.readouterr().out
    assert "scale_inputs" in listed and "my_speedups.py" in listed
    assert main(["workloads", "--plugin", str(plugin)]) == 0
    assert "toy" in capsys.readouterr().out


def test_a_changed_plugin_refuses_to_resume_and_changes_run_keys(plugin: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "--plugin", str(plugin), "--workload", "toy", "--budget", "8ba", "--out", str(out), "--quiet"]
    assert main(args) == 0
    spec = validate_study_spec(yaml.safe_load(_study(plugin, tmp_path).read_text()) | {"plugins": [str(plugin)]})
    keys = {run.key for run in spec.grid()}
    plugin.write_text(PLUGIN.replace("SCALE = 2.0", "SCALE = 2.5"))
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 2
    assert "changed since it was recorded" in _one_line_error(capsys)
    edited = validate_study_spec(yaml.safe_load(_study(plugin, tmp_path).read_text()) | {"plugins": [str(plugin)]})
    assert keys.isdisjoint(run.key for run in edited.grid())


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("1 / 0\n", "failed to import: ZeroDivisionError: division by zero (line 1)"),
        ("def broken(:\n", "failed to import: SyntaxError"),
        (
            "from algospeed.methods.registry import register\n"
            "from algospeed.methods.optimization.ema import EMA\n"
            "register('ema')(type('MyEMA', (EMA,), {}))\n",
            "method 'ema' shadows the built-in method",
        ),
        (
            PLUGIN + "\nregister('scale_inputs')(type('Again', (ScaleInputs,), {}))\n",
            "method 'scale_inputs' is registered twice",
        ),
        (
            PLUGIN.replace('name="toy"', 'name="mnist1d"'),
            "workload 'mnist1d' shadows the built-in workload",
        ),
    ],
)
def test_a_bad_plugin_is_one_line_exit_2_and_nothing_written(tmp_path: Path, capsys, source: str, message: str) -> None:
    bad = tmp_path / "bad_plugin.py"
    bad.write_text(source)
    before = set(METHODS.names()), set(WORKLOADS.names())
    out = tmp_path / "run"
    try:
        assert main(["train", "--plugin", str(bad), "--workload", "digits", "--budget", "2ba", "--out", str(out)]) == 2
        error = _one_line_error(capsys)
        assert "bad_plugin.py" in error and message in error
        assert not out.exists()
        assert (set(METHODS.names()), set(WORKLOADS.names())) == before  # a failed plugin leaves nothing registered
    finally:
        unload_plugin(str(bad))


def test_a_missing_plugin_file_or_module_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["workloads", "--plugin", str(tmp_path / "nowhere.py")]) == 2
    assert "nowhere.py: no such file" in _one_line_error(capsys)
    assert main(["methods", "--plugin", "no_such_package.speedups"]) == 2
    assert "no_such_package.speedups" in _one_line_error(capsys)


def test_two_plugins_registering_one_name_are_refused(plugin: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin.py"
    twin.write_text(PLUGIN.replace('name="toy"', 'name="toy2"'))
    load_plugin(str(plugin))
    with pytest.raises(
        PluginError, match=r"twin\.py: method 'scale_inputs' is registered twice \(already registered by"
    ):
        load_plugin(str(twin))
    assert "toy2" not in WORKLOADS


def test_a_method_that_cannot_act_on_the_workloads_data_is_refused_up_front(plugin: Path, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "--plugin", str(plugin), "--workload", "toy", "--methods", "blurpool", "--out", str(out)]
    assert main(args) == 2
    error = _one_line_error(capsys)
    assert "method 'blurpool' acts on images, signals; workload 'toy' holds tabular" in error
    assert not out.exists()
    assert main(["train", "--plugin", str(plugin), "--workload", "digits", "--methods", "scale_inputs",
                 "--out", str(out)]) == 2  # fmt: skip
    assert "method 'scale_inputs' acts on tabular; workload 'digits' holds images" in _one_line_error(capsys)


def test_a_misspelt_handler_raises_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="on_batch_ends handles no event; did you mean on_batch_end"):

        class Typo(Callback):
            def on_batch_ends(self, state) -> None:
                pass


def _completed(folder: Path) -> int:
    try:
        with sqlite3.connect(f"file:{folder / STORE_NAME}?mode=ro", uri=True, timeout=30) as db:
            return db.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_a_plugin_study_runs_on_two_workers_survives_sigkill_and_its_report_names_the_plugin(
    plugin: Path, tmp_path: Path
) -> None:
    study, out = _study(plugin, tmp_path), tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "algospeed.cli", "study", str(study), "--workers", "2", "--out", str(out)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while _completed(out) < 2:
        assert time.monotonic() < deadline and process.poll() is None, "the study did not start"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert _completed(out) < 8
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert _completed(out) == 8
    digest = load_plugin(str(plugin)).sha256
    page = (out / "report.html").read_text()
    assert "my_speedups.py" in page and digest in page
    assert digest in (out / "summary.md").read_text()

    plugin.unlink()  # the report and compare need none of the plugin's code
    unload_plugin(str(plugin))
    write_report(out)
    assert main(["compare", str(out), str(out)]) == 0
    assert analyse(out).judging.metric == "accuracy"


@pytest.mark.slow
def test_a_plugin_study_on_ray_matches_local_workers(plugin: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    spec = validate_study_spec(yaml.safe_load(_study(plugin, tmp_path).read_text()) | {"plugins": [str(plugin)]})
    local = run_study(spec, tmp_path / "local", workers=2)
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO / "src")}},
        )
        remote = run_study(spec, tmp_path / "ray", executor="ray")
    finally:
        ray.shutdown()

    def curves(store) -> dict[str, list[tuple]]:
        return {run.key: [(p.step, p.train_loss, p.metrics) for p in store.points(run.key)] for run in store.runs()}

    assert len(curves(local)) == 8 and curves(local) == curves(remote)
    assert remote.meta("manifest")["plugins"][0]["sha256"] == load_plugin(str(plugin)).sha256
