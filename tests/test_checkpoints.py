from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from algospeed.core.callback import Callback
from algospeed.core.checkpoint import list_checkpoints, read_checkpoint
from algospeed.errors import CheckpointError
from test_trainer import make_trainer

REPO = Path(__file__).resolve().parents[1]


class NoisyCounter(Callback):
    """Keeps state across steps and draws from the run's generator, so a bad resume shows."""

    name = "noisy_counter"

    def __init__(self) -> None:
        self.steps = 0
        self.total = torch.zeros(())

    def on_after_dataloader(self, state) -> None:
        inputs = state.batch.inputs
        noise = torch.randn(inputs.shape, generator=state.generator) * 0.1
        state.batch = state.batch.replace(inputs=inputs + noise)
        self.steps += 1
        self.total += noise.sum()

    def state_dict(self) -> dict:
        return {"steps": self.steps, "total": self.total.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.total = state["steps"], state["total"].clone()


def _run(loader, checkpoint_dir: Path, resume_from=None, **kwargs):
    counter = NoisyCounter()
    trainer = make_trainer(
        loader,
        "3ep",
        callbacks=[counter],
        eval_interval="1ep",
        checkpoint_dir=checkpoint_dir,
        checkpoint_interval="4ba",
        keep_checkpoints=100,
        fingerprint={"case": "resume"},
        **kwargs,
    )
    result = trainer.fit(resume_from=resume_from)
    return trainer, counter, result


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_resuming_mid_epoch_is_bit_identical_to_an_uninterrupted_run(tiny_loader, tmp_path: Path) -> None:
    full, full_counter, full_result = _run(tiny_loader, tmp_path / "full")
    saved = [p.name for p in list_checkpoints(tmp_path / "full")]
    assert saved == [f"ckpt-{s:09d}.pt" for s in (4, 8, 12, 16, 18)]
    _, meta = read_checkpoint(tmp_path / "full" / saved[1])
    assert meta["clock"]["epoch"] == 1 and meta["clock"]["sample_in_epoch"] == 32  # mid-epoch

    torch.manual_seed(1234)  # resumption must not depend on the global RNG at restart
    resumed, counter, result = _run(tiny_loader, tmp_path / "resumed", resume_from=tmp_path / "full" / saved[1])
    assert _same_weights(full.state.model, resumed.state.model)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            full.state.optimizer.state_dict()["state"][0].values(),
            resumed.state.optimizer.state_dict()["state"][0].values(),
            strict=True,
        )
    )
    assert (counter.steps, counter.total) == (full_counter.steps, full_counter.total)
    strip = lambda points: [(p.step, p.samples, p.flops, p.train_loss, p.metrics) for p in points]  # noqa: E731
    assert strip(result.points) == strip(full_result.points)


def test_resume_takes_the_latest_checkpoint_of_a_folder_and_a_finished_run_stays_finished(
    tiny_loader, tmp_path: Path
) -> None:
    full, _, result = _run(tiny_loader, tmp_path)
    again, _, again_result = _run(tiny_loader, tmp_path, resume_from=tmp_path)
    assert again_result.final.step == result.final.step == 18
    assert _same_weights(full.state.model, again.state.model)


def test_old_checkpoints_are_pruned_to_the_last_few(tiny_loader, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_loader, "3ep", checkpoint_dir=tmp_path, checkpoint_interval="2ba", keep_checkpoints=2)
    trainer.fit()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000016.pt", "ckpt-000000018.pt"]


def test_corrupt_foreign_and_missing_checkpoints_are_clear_errors(tiny_loader, tmp_path: Path) -> None:
    _run(tiny_loader, tmp_path)
    latest = list_checkpoints(tmp_path)[-1]
    corrupt = tmp_path / "corrupt" / "ckpt-000000001.pt"
    corrupt.parent.mkdir()
    corrupt.write_bytes(latest.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        make_trainer(tiny_loader).load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an algospeed checkpoint"):
        make_trainer(tiny_loader).load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="belongs to another run"):
        make_trainer(tiny_loader, fingerprint={"case": "other"}).load_checkpoint(latest)
    with pytest.raises(CheckpointError, match="does not exist"):
        make_trainer(tiny_loader).load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        make_trainer(tiny_loader).load_checkpoint((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_a_checkpoint_of_another_model_is_a_clear_error(tiny_loader, tmp_path: Path) -> None:
    _run(tiny_loader, tmp_path)
    trainer = make_trainer(tiny_loader, fingerprint={"case": "resume"}, callbacks=[NoisyCounter()])
    trainer.state.model[0] = torch.nn.Linear(8, 32)
    with pytest.raises(CheckpointError, match="does not match this run"):
        trainer.load_checkpoint(tmp_path)


def test_checkpoints_contain_only_what_weights_only_loading_accepts(tiny_loader, tmp_path: Path) -> None:
    _run(tiny_loader, tmp_path)
    payload = torch.load(list_checkpoints(tmp_path)[-1], weights_only=True)
    assert {"model", "optimizer", "callbacks", "rng_torch", "meta"} <= set(payload)


KILL_DURING_WRITE = textwrap.dedent(
    """
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    import algospeed.core.checkpoint as checkpoint
    from test_checkpoints import _run
    from conftest import *  # noqa
    from algospeed.core.data import InMemoryLoader

    real_save, calls = torch.save, []
    def dying_save(obj, handle):
        calls.append(1)
        if len(calls) == 3:  # the third checkpoint: write half of it, then die
            handle.write(b"half a checkpoint")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        real_save(obj, handle)
    checkpoint.torch.save = dying_save
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(96, 8, generator=generator)
    _run(InMemoryLoader(inputs, (inputs[:, 0] > 0).long(), batch_size=16, seed=0), __import__("pathlib").Path({out!r}))
    """
)


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_usable(tiny_loader, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    script = KILL_DURING_WRITE.format(tests=str(REPO / "tests"), out=str(out))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-2000:]
    assert [p.name for p in list_checkpoints(out)] == ["ckpt-000000004.pt", "ckpt-000000008.pt"]
    assert any(p.name.endswith(".tmp-" + p.name.rsplit("-", 1)[-1]) for p in out.iterdir() if p.name.startswith("."))
    full, _, _ = _run(tiny_loader, tmp_path / "full")
    resumed, _, result = _run(tiny_loader, out, resume_from=out)
    assert result.final.step == 18
    assert _same_weights(full.state.model, resumed.state.model)


def test_sigint_checkpoints_exits_cleanly_and_the_run_resumes_identically(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    common = ["--workload", "synthetic", "--budget", "25ep", "--quiet"]
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    command = [sys.executable, "-m", "algospeed.cli", "train", *common, "--checkpoint-every", "300ba"]
    process = subprocess.Popen([*command, "--out", str(interrupted)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list_checkpoints(interrupted / "checkpoints") and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted by SIGINT" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    assert not (interrupted / "summary.json").exists()
    _, meta = read_checkpoint(list_checkpoints(interrupted / "checkpoints")[-1])
    assert 0 < meta["clock"]["steps"] < 25 * 102

    subprocess.run([*command, "--out", str(interrupted), "--resume"], env=env, check=True, capture_output=True)
    subprocess.run([*command, "--out", str(reference)], env=env, check=True, capture_output=True)
    final = [
        torch.load(list_checkpoints(d / "checkpoints")[-1], weights_only=True)["model"]
        for d in (interrupted, reference)
    ]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[1])
