"""Input-transforming data methods: progressive resizing, MixUp, CutMix, Cutout and ColOut."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from algospeed.core.callback import Callback, check_composition
from algospeed.core.trainer import Trainer
from algospeed.errors import UsageError
from algospeed.methods.data.colout import colout_batch, kept_positions
from algospeed.methods.data.cutmix import cutmix_batch, cutmix_inputs, random_box
from algospeed.methods.data.cutout import cutout_batch, cutout_mask
from algospeed.methods.data.mixup import mix_targets, mixup_batch, mixup_inputs, sample_beta
from algospeed.methods.data.progressive_resizing import progressive_resize, progressive_size, resize_inputs
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.run_spec import RunSpec, build_trainer
from method_harness import assert_resumes_exactly

MNIST1D = {"workload": "mnist1d", "options": {"samples": 2000}}


class Probe(Callback):
    """Records, per step, the batch as loaded (it runs first at after_dataloader when listed after the
    methods), the generator's state before the methods used it, what the model saw and the targets
    the loss saw, and the FLOPs charged."""

    def __init__(self) -> None:
        self.loaded: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.generator_states: list[torch.Tensor] = []
        self.seen: list[torch.Tensor] = []
        self.loss_targets: list[torch.Tensor] = []
        self.progress: list[float] = []
        self.step_flops: list[float] = []
        self._flops = 0.0

    def on_after_dataloader(self, state: Any) -> None:
        self.loaded.append((state.batch.inputs.clone(), state.batch.targets.clone()))
        self.generator_states.append(state.generator.get_state())

    def on_before_forward(self, state: Any) -> None:
        self.seen.append(state.batch.inputs.clone())
        self.progress.append(state.progress)

    def on_before_loss(self, state: Any) -> None:
        self.loss_targets.append(state.batch.targets.clone())

    def on_batch_end(self, state: Any) -> None:
        self.step_flops.append(state.clock.flops - self._flops)
        self._flops = state.clock.flops


def fit_with(methods: str, *, budget: str, workload: str = "digits", **spec: Any) -> tuple[Trainer, Probe]:
    probe = Probe()
    trainer = build_trainer(
        RunSpec(workload=workload, budget=budget, methods=methods, device="cpu", **spec), callbacks=[probe]
    )
    trainer.fit()
    return trainer, probe


def replay(probe: Probe, step: int) -> torch.Generator:
    """A generator in the state the methods found at `step`, to recompute what they drew."""
    generator = torch.Generator()
    generator.set_state(probe.generator_states[step])
    return generator


def assert_usage_error(name: str, settings: dict[str, Any], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        build_method(MethodSpec(name=name, settings=settings))


# ------------------------------------------------------------------------- progressive resizing
def test_progressive_resizing_shrinks_signals_early_and_restores_full_length_late() -> None:
    _, probe = fit_with("progressive_resizing", budget="2ep", **MNIST1D)
    lengths = [shape[-1] for shape in (tuple(x.shape) for x in probe.seen)]
    assert lengths[0] == 20 and lengths[-1] == 40
    assert lengths == sorted(lengths) and all(length % 4 == 0 for length in lengths)
    assert len(set(lengths)) <= 6  # quantized: 20, 24, ..., 40
    final_phase = [length for length, p in zip(lengths, probe.progress, strict=True) if p >= 0.8]
    assert final_phase and set(final_phase) == {40}
    assert probe.step_flops[0] < 0.7 * probe.step_flops[-1]  # a half-length step really is cheaper
    for earlier, later in zip(probe.step_flops, probe.step_flops[1:], strict=False):
        assert earlier <= later


def test_progressive_resizing_resizes_images_bilinearly_and_cuts_flops() -> None:
    _, probe = fit_with("progressive_resizing:initial_scale=0.5", budget="30ba")
    shapes = {tuple(x.shape[2:]) for x in probe.seen}
    assert shapes == {(4, 4), (8, 8)}
    first = probe.loaded[0][0]
    expected = torch.nn.functional.interpolate(first, size=(4, 4), mode="bilinear", align_corners=False)
    assert torch.equal(probe.seen[0], expected)
    assert torch.equal(probe.seen[-1], probe.loaded[-1][0])  # full size at the end: untouched
    assert probe.step_flops[0] < probe.step_flops[-1]


def test_progressive_size_and_resize_functions() -> None:
    assert [progressive_size(40, p) for p in (0.0, 0.4, 0.79, 0.8, 1.0)] == [20, 28, 36, 40, 40]
    assert progressive_size(8, 0.0, initial_scale=0.25) == 4  # never below one multiple
    assert progressive_size(3, 0.0) == 3  # smaller than a multiple: left alone
    assert progressive_size(40, 0.0, multiple=1, initial_scale=0.3) == 12
    ramp = torch.linspace(0, 1, 40).view(1, 1, 40)
    resized = resize_inputs(ramp, (20,))
    assert resized.shape == (1, 1, 20) and torch.all(resized[0, 0, 1:] > resized[0, 0, :-1])
    constant = torch.full((2, 3, 8, 8), 0.5)
    assert torch.allclose(progressive_resize(constant, 0.0), torch.full((2, 3, 4, 4), 0.5))
    with pytest.raises(ValueError, match="inputs"):
        resize_inputs(torch.zeros(4, 10), (5,))


def test_progressive_resizing_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("progressive_resizing", tmp_path, budget="2ep", **MNIST1D)


def test_progressive_resizing_rejects_bad_settings() -> None:
    assert_usage_error("progressive_resizing", {"initial_scale": "1.5"}, "initial_scale must be in")
    assert_usage_error("progressive_resizing", {"finetune_fraction": "-0.1"}, "finetune_fraction")
    assert_usage_error("progressive_resizing", {"size_multiple": "0"}, "size_multiple")


# ----------------------------------------------------------------------------------- mixup
def test_mixup_mixes_inputs_and_targets_with_the_same_weight_and_partner() -> None:
    _, probe = fit_with("mixup:alpha=0.4", budget="6ba")
    for step in range(6):
        inputs, targets = probe.loaded[step]
        mixed, weight, permutation = mixup_inputs(inputs, 0.4, replay(probe, step))
        assert torch.equal(probe.seen[step], mixed)
        expected = mix_targets(targets, weight, permutation, 10)
        assert torch.equal(probe.loss_targets[step], expected)
        assert torch.allclose(expected.sum(dim=1), torch.ones(len(targets)))
    soft = torch.cat(probe.loss_targets)
    assert ((soft > 0) & (soft < 1)).any()  # really soft labels reached the loss


def test_mixup_functions() -> None:
    generator = torch.Generator().manual_seed(0)
    draws = torch.tensor([sample_beta(2.0, 2.0, generator) for _ in range(2000)])
    assert draws.min() > 0.0 and draws.max() < 1.0
    assert abs(draws.mean().item() - 0.5) < 0.02 and abs(draws.var().item() - 0.05) < 0.01  # Beta(2,2)
    skewed = torch.tensor([sample_beta(0.2, 0.2, generator) for _ in range(2000)])
    assert ((skewed < 0.1) | (skewed > 0.9)).float().mean() > 0.6  # Beta(0.2, 0.2) piles up at 0 and 1
    again = [sample_beta(0.5, 0.5, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert again[0] == again[1]
    inputs, targets = torch.randn(8, 1, 4, 4), torch.arange(8) % 3
    mixed, soft = mixup_batch(inputs, targets, classes=3, alpha=1.0, generator=torch.Generator().manual_seed(1))
    _, weight, permutation = mixup_inputs(inputs, 1.0, torch.Generator().manual_seed(1))
    assert torch.allclose(mixed, weight * inputs + (1 - weight) * inputs[permutation])
    assert torch.allclose(soft.sum(dim=1), torch.ones(8))


def test_mixup_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("mixup", tmp_path, budget="1ep")


def test_mixup_rejects_bad_settings_and_conflicts() -> None:
    assert_usage_error("mixup", {"alpha": "0"}, "alpha must be positive")
    with pytest.raises(UsageError, match="cannot be combined"):
        check_composition([build_method(MethodSpec(name="mixup")), build_method(MethodSpec(name="cutmix"))])


# ---------------------------------------------------------------------------------- cutmix
@pytest.mark.parametrize("spec", [{"workload": "digits"}, MNIST1D])
def test_cutmix_pastes_one_box_of_the_partner_and_mixes_labels_by_area(spec: dict[str, Any]) -> None:
    _, probe = fit_with("cutmix", budget="4ba", **spec)
    for step in range(4):
        inputs, targets = probe.loaded[step]
        mixed, weight, permutation = cutmix_inputs(inputs, 1.0, replay(probe, step))
        seen = probe.seen[step]
        assert torch.equal(seen, mixed)
        generator = replay(probe, step)  # redraw the box as cutmix_inputs does: weight, partner, box
        drawn = sample_beta(1.0, 1.0, generator)
        assert torch.equal(torch.randperm(len(inputs), generator=generator), permutation)
        box = random_box(tuple(inputs.shape[2:]), 1.0 - drawn, generator)
        region = (slice(None), slice(None), *(slice(begin, end) for begin, end in box))
        inside = torch.zeros_like(inputs, dtype=torch.bool)
        inside[region] = True
        assert torch.equal(seen[inside], inputs[permutation][inside])
        assert torch.equal(seen[~inside], inputs[~inside])
        assert weight == pytest.approx(1.0 - inside[0, 0].float().mean().item())
        assert torch.equal(probe.loss_targets[step], mix_targets(targets, weight, permutation, 10))


def test_cutmix_functions() -> None:
    box = random_box((8, 8), 0.25, torch.Generator().manual_seed(0))
    assert all(0 <= begin <= end <= 8 for begin, end in box)
    assert (box[0][1] - box[0][0]) * (box[1][1] - box[1][0]) <= 16
    ((begin, end),) = random_box((40,), 0.5, torch.Generator().manual_seed(0))
    assert end - begin <= 20
    inputs, targets = torch.arange(2 * 40.0).view(2, 1, 40), torch.tensor([0, 1])
    mixed, soft = cutmix_batch(inputs, targets, classes=2, alpha=1.0, generator=torch.Generator().manual_seed(5))
    changed = (mixed != inputs).any(dim=(0, 1))
    positions = changed.nonzero().flatten()
    if len(positions):
        assert torch.equal(positions, torch.arange(positions[0], positions[-1] + 1))  # one contiguous segment
    assert torch.allclose(soft.sum(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="inputs"):
        cutmix_inputs(torch.zeros(4, 3), 1.0)


def test_cutmix_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("cutmix", tmp_path, budget="1ep")


def test_cutmix_rejects_bad_settings() -> None:
    assert_usage_error("cutmix", {"alpha": "-1"}, "alpha must be positive")


# ---------------------------------------------------------------------------------- cutout
def test_cutout_zeroes_one_square_per_image_and_nothing_else() -> None:
    _, probe = fit_with("cutout:size=0.5", budget="4ba")
    for step in range(4):
        inputs, _ = probe.loaded[step]
        seen = probe.seen[step]
        assert torch.equal(seen, cutout_batch(inputs, 0.5, 1, replay(probe, step)))
        changed = seen != inputs
        assert torch.all(seen[changed] == 0)
        for sample in changed[:, 0]:
            rows, cols = sample.any(dim=1).nonzero().flatten(), sample.any(dim=0).nonzero().flatten()
            if len(rows):  # inside one box of side at most 4
                assert rows[-1] - rows[0] < 4 and cols[-1] - cols[0] < 4
        assert changed.any(dim=(1, 2, 3)).float().mean() > 0.5  # most images really lose a square


def test_cutout_functions() -> None:
    mask = cutout_mask(64, (8, 8), size=0.5, holes=1, generator=torch.Generator().manual_seed(0))
    counts = mask.sum(dim=(1, 2))
    assert counts.max() == 16 and counts.min() >= 4  # a clipped square keeps at least its quarter
    segments = cutout_mask(32, (40,), size=0.25, generator=torch.Generator().manual_seed(0))
    assert segments.sum(dim=1).max() == 10
    two = cutout_mask(16, (8, 8), size=0.25, holes=2, generator=torch.Generator().manual_seed(0))
    assert two.sum(dim=(1, 2)).max() <= 8 and two.sum(dim=(1, 2)).max() > 4
    inputs = torch.ones(4, 3, 8, 8)
    out = cutout_batch(inputs, 0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(inputs, torch.ones(4, 3, 8, 8))  # not in place
    assert torch.equal(out[:, 0], out[:, 2])  # the same hole across channels


def test_cutout_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("cutout", tmp_path, budget="1ep")


def test_cutout_rejects_bad_settings() -> None:
    assert_usage_error("cutout", {"size": "1.5"}, "size")
    assert_usage_error("cutout", {"holes": "0"}, "holes must be at least 1")


# ---------------------------------------------------------------------------------- colout
def test_colout_really_makes_images_smaller_and_cheaper() -> None:
    _, probe = fit_with("colout:p_row=0.25:p_col=0.25", budget="4ba")
    _, baseline = fit_with("", budget="4ba")
    for step in range(4):
        inputs, _ = probe.loaded[step]
        seen = probe.seen[step]
        assert seen.shape == (32, 1, 6, 6)
        generator = replay(probe, step)
        rows, cols = kept_positions(8, 0.25, generator), kept_positions(8, 0.25, generator)
        assert torch.equal(seen, inputs[:, :, rows][:, :, :, cols])
    assert probe.step_flops[0] < baseline.step_flops[0]


def test_colout_functions() -> None:
    signals = torch.arange(40.0).expand(2, 1, 40)
    out = colout_batch(signals, p_col=0.25, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 30) and torch.all(out[..., 1:] > out[..., :-1])  # order kept
    images = torch.arange(64.0).view(1, 1, 8, 8)
    smaller = colout_batch(images, p_row=0.5, p_col=0.0, generator=torch.Generator().manual_seed(0))
    assert smaller.shape == (1, 1, 4, 8)
    assert len(kept_positions(3, 0.9)) == 1
    with pytest.raises(ValueError, match="inputs"):
        colout_batch(torch.zeros(3, 4))


def test_colout_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("colout", tmp_path, budget="1ep")


def test_colout_rejects_bad_settings() -> None:
    assert_usage_error("colout", {"p_row": "1.0"}, "p_row")
