"""The data-loading bottleneck, reproduced on this machine.

Each training sample goes through a real CPU augmentation (a random affine warp with `grid_sample`,
repeated to a calibrated cost per sample) in a map-style dataset, loaded by a `torch.utils.data.DataLoader`
with 0, 1 or 2 worker processes, with and without data echoing. Each configuration trains the workload's model
for a few steps under the profiler; the table and the plot show throughput, the share of time spent
waiting for data, and the verdict, so one sees where the step becomes data-bound and how more workers
or echoing move that point.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from algospeed.core.batch import Batch
from algospeed.core.data import Loader, batch_bounds, epoch_permutation
from algospeed.core.device import resolve_device
from algospeed.core.trainer import Trainer
from algospeed.errors import UsageError
from algospeed.profile.phases import DATA, H2D
from algospeed.profile.profiler import Profiler
from algospeed.profile.schedule import ProfileSchedule
from algospeed.profile.verdict import DATA_BOUND

FILES = ("bottlenecks.png", "bottlenecks.md", "bottlenecks.csv")


def _numbers(text: str, kind: type, name: str, least: float) -> tuple[Any, ...]:
    try:
        values = tuple(kind(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < least:
        raise UsageError(f"--{name} must be a comma-separated list of numbers of at least {least:g}, got {text!r}")
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Grid:
    """The configurations to run: augmentation cost (ms of CPU work per sample) x workers x echo factor."""

    costs: tuple[float, ...] = (0.0, 1.0, 4.0)
    workers: tuple[int, ...] = (0, 1, 2)
    echo: tuple[int, ...] = (1, 2)
    steps: int = 20
    skip: int = 5

    @classmethod
    def parse(cls, *, costs: str, workers: str, echo: str, steps: int, skip: int) -> Grid:
        if skip < 0 or steps < skip + 2:
            raise UsageError(f"--steps must be at least --skip + 2 (one warmup and one measured step), got {steps}")
        return cls(
            costs=_numbers(costs, float, "costs", 0),
            workers=_numbers(workers, int, "workers", 0),
            echo=_numbers(echo, int, "echo", 1),
            steps=steps,
            skip=skip,
        )


# ------------------------------------------------------------------------------------ the pipeline
def warp(sample: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random small rotation, scale and shift of one sample (C, H, W) or (C, L), by `grid_sample`."""
    image = sample.unsqueeze(0) if sample.dim() == 3 else sample.reshape(1, sample.shape[0], 1, -1)
    angle, scale, dx, dy = (torch.rand(4, generator=generator) - 0.5) * torch.tensor([0.5, 0.2, 0.2, 0.2])
    cos, sin = torch.cos(angle) * (1 + scale), torch.sin(angle) * (1 + scale)
    theta = torch.stack([torch.stack([cos, -sin, dx]), torch.stack([sin, cos, dy])]).unsqueeze(0)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, align_corners=False).reshape(sample.shape)


class AugmentedSamples(Dataset):
    """An in-memory split whose every sample is warped `repeats` times on the CPU when loaded."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, repeats: int, seed: int = 0) -> None:
        self.inputs, self.targets, self.repeats, self.seed = inputs, targets, repeats, seed
        self.loads = 0

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.inputs[index]
        if self.repeats:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index * 7919 + self.loads)
            for _ in range(self.repeats):
                sample = warp(sample, generator)
        self.loads += 1
        return sample, self.targets[index]


def seconds_per_warp(sample: torch.Tensor, trials: int = 200) -> float:
    """The median time of one warp of `sample` on one thread (as in a loader worker)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)
        for _ in range(20):
            warp(sample, generator)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(trials // 5):
                warp(sample, generator)
            times.append((time.perf_counter() - start) / (trials // 5))
        return statistics.median(times)
    finally:
        torch.set_num_threads(threads)


class WorkerLoader:
    """Shuffled batches of a map-style dataset, loaded by `workers` processes started for each epoch.

    Like `DatasetLoader`, but its workers belong to the epoch's iterator alone, so they stop as soon
    as the training loop lets go of it (not when the garbage collector gets round to it).
    """

    def __init__(self, dataset: Dataset, batch_size: int, workers: int, seed: int = 0) -> None:
        self.dataset, self.batch_size, self.workers, self.seed = dataset, batch_size, workers, seed
        self.drop_last = True

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = epoch_permutation(len(self), self.seed, epoch)
        batches = []
        while (bounds := batch_bounds(len(self), start, self.batch_size, self.drop_last)) is not None:
            begin, start = bounds
            batches.append(order[begin:start].tolist())
        for data in DataLoader(self.dataset, batch_sampler=batches, num_workers=self.workers):
            yield Batch.of(data)


class RepeatingLoader:
    """Yields each batch of `inner` `factor` times (data echoing without resumption), for when the
    registered `data_echoing` method is not available."""

    def __init__(self, inner: Loader, factor: int) -> None:
        self.inner, self.factor = inner, factor

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    @property
    def drop_last(self) -> bool:
        return self.inner.drop_last

    def __len__(self) -> int:
        return self.factor * len(self.inner)

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        for batch in self.inner.iter_epoch(epoch, start // self.factor):
            for _ in range(self.factor):
                yield batch


def echo_method(factor: int) -> tuple[list[Any], str]:
    """The registered `data_echoing` method with this factor, or nothing and a note when it is missing."""
    from algospeed.methods.registry import method_names
    from algospeed.methods.spec import MethodSpec, build_method

    if "data_echoing" in method_names():
        return [build_method(MethodSpec(name="data_echoing", settings={"factor": factor}))], "data_echoing method"
    return [], "own repeating loader (data_echoing is not registered)"


# ------------------------------------------------------------------------------------ the runs
def _workers(count: int) -> str:
    return f"{count} worker{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class Cell:
    """One configuration's measurements: `data_wait` is the share of training time spent waiting for the
    loader, `worker_cpu` the loader workers' share of all CPU time (on CPU training they compete with
    it for the cores), `data_share` the data part of the verdict (both together)."""

    cost_ms: float
    workers: int
    echo: int
    step_ms: float
    samples_per_second: float
    fresh_samples_per_second: float
    data_wait: float
    worker_cpu: float
    data_share: float
    verdict: str

    @property
    def data_bound(self) -> bool:
        return self.verdict == DATA_BOUND


@dataclass
class BottleneckResult:
    """All cells, with what they ran on."""

    workload: str
    device: str
    machine: str
    threads: int
    batch_size: int
    grid: Grid
    warp_ms: float
    echo_via: str
    cells: list[Cell] = field(default_factory=list)
    seconds: float = 0.0

    def cell(self, cost: float, workers: int, echo: int) -> Cell | None:
        return next((c for c in self.cells if (c.cost_ms, c.workers, c.echo) == (cost, workers, echo)), None)

    def findings(self) -> list[str]:
        """Where each loader configuration turns data-bound, and how far the mitigations move throughput."""
        lines = []
        for workers in self.grid.workers:
            for echo in self.grid.echo:
                row = [c for c in self.cells if (c.workers, c.echo) == (workers, echo)]
                bound = next((c for c in row if c.data_bound), None)
                label = f"{_workers(workers)}, " + (f"echo x{echo}" if echo > 1 else "no echoing")
                if bound is None:
                    lines.append(f"{label}: never data-bound in this grid")
                else:
                    lines.append(
                        f"{label}: data-bound from {bound.cost_ms:g} ms/sample (data {100 * bound.data_share:.0f}% "
                        f"of training time: waiting {100 * bound.data_wait:.0f}%, workers' CPU "
                        f"{100 * bound.worker_cpu:.0f}% of all CPU time)"
                    )
        heaviest = max(self.grid.costs)
        base = self.cell(heaviest, min(self.grid.workers), min(self.grid.echo))
        at_heaviest = [c for c in self.cells if c.cost_ms == heaviest]
        if base is not None and at_heaviest and base.samples_per_second > 0:
            best = max(at_heaviest, key=lambda c: c.samples_per_second)
            lines.append(
                f"at {heaviest:g} ms/sample, {_workers(best.workers)} with echo x{best.echo} trains "
                f"{best.samples_per_second / base.samples_per_second:.2f}x the samples/s of "
                f"{_workers(base.workers)} without echoing ({best.samples_per_second:,.0f} vs "
                f"{base.samples_per_second:,.0f}); echoed samples are repeats, so fresh samples/s is "
                f"{best.fresh_samples_per_second:,.0f}"
            )
        return lines

    def markdown(self) -> str:
        out = io.StringIO()
        out.write(f"# Data-loading bottleneck: {self.workload}\n\n")
        out.write(
            f"{self.device} ({self.machine}), {self.threads} torch threads, batch {self.batch_size}, "
            f"{self.grid.steps} steps per configuration ({self.grid.steps - self.grid.skip - 1} measured); "
            f"augmentation = random affine warps at {self.warp_ms:.3f} ms each; echoing via {self.echo_via}; "
            f"took {self.seconds:.0f} s.\n\n"
        )
        out.write(
            "| augment ms/sample | workers | echo | step ms | samples/s | fresh samples/s | data wait "
            "| workers' CPU | data share | verdict |\n"
        )
        out.write("|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|\n")
        for c in self.cells:
            out.write(
                f"| {c.cost_ms:g} | {c.workers} | {c.echo} | {c.step_ms:.1f} | {c.samples_per_second:,.0f} | "
                f"{c.fresh_samples_per_second:,.0f} | {100 * c.data_wait:.0f}% | {100 * c.worker_cpu:.0f}% | "
                f"{100 * c.data_share:.0f}% | {c.verdict} |\n"
            )
        out.write(
            "\ndata wait: share of training time the loop waited for a batch; workers' CPU: the loader "
            "processes' share of all CPU time (on a CPU they take cores from training); data share: the "
            "data part of the verdict, both together.\n"
        )
        out.write("\n## Findings\n\n")
        for line in self.findings():
            out.write(f"- {line}\n")
        return out.getvalue()

    def csv(self) -> str:
        out = io.StringIO()
        names = list(asdict(self.cells[0])) if self.cells else [f for f in Cell.__dataclass_fields__]
        writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for c in self.cells:
            writer.writerow(asdict(c))
        return out.getvalue()


def run_grid(
    workload_name: str,
    grid: Grid,
    *,
    batch_size: int | None = None,
    device: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> BottleneckResult:
    """Train every configuration of `grid` briefly under the profiler."""
    from algospeed.profile.peak import device_name
    from algospeed.workloads.base import Splits, class_count
    from algospeed.workloads.registry import get_workload

    started = time.perf_counter()
    workload = get_workload(workload_name)
    options = workload.resolve_options({})
    data = workload.load(options)
    if not isinstance(data, Splits):
        raise UsageError(f"workload {workload_name!r} loads from files; bottlenecks needs one held in memory")
    target = resolve_device(device)
    batch = batch_size or workload.batch_size
    if batch <= 0 or batch > len(data.train_targets):
        raise UsageError(f"batch size {batch} must be between 1 and the {len(data.train_targets)} training samples")
    per_warp = seconds_per_warp(data.train_inputs[0])
    _, echo_via = echo_method(2)
    result = BottleneckResult(
        workload=workload_name,
        device=str(target),
        machine=device_name(target),
        threads=torch.get_num_threads(),
        batch_size=batch,
        grid=grid,
        warp_ms=per_warp * 1e3,
        echo_via=echo_via,
    )
    classes = class_count(data)
    for cost in grid.costs:
        repeats = round(cost / 1e3 / per_warp)
        for workers in grid.workers:
            for echo in grid.echo:
                cell = _run_cell(workload, options, data, classes, target, batch, grid, cost, repeats, workers, echo)
                result.cells.append(cell)
                progress(
                    f"augment {cost:g} ms/sample, {workers} workers, echo x{echo}: {cell.samples_per_second:,.0f} "
                    f"samples/s, data {100 * cell.data_share:.0f}% (waiting {100 * cell.data_wait:.0f}%), "
                    f"{cell.verdict}"
                )
    result.seconds = time.perf_counter() - started
    return result


def _run_cell(
    workload: Any,
    options: dict[str, Any],
    data: Any,
    classes: int,
    device: torch.device,
    batch: int,
    grid: Grid,
    cost: float,
    repeats: int,
    workers: int,
    echo: int,
) -> Cell:
    dataset = AugmentedSamples(data.train_inputs, data.train_targets, repeats)
    loader: Loader = WorkerLoader(dataset, batch, workers)
    callbacks: list[Any] = []
    if echo > 1:
        callbacks, _ = echo_method(echo)
        if not callbacks:
            loader = RepeatingLoader(loader, echo)
    torch.manual_seed(0)
    model = workload.model(options, classes)
    trainer = Trainer(
        model,
        loader,
        optimizer=workload.make_optimizer(),
        budget=f"{grid.steps}ba",
        loss_fn=workload.loss,
        forward=workload.forward,
        callbacks=callbacks,
        device=device,
    )
    schedule = ProfileSchedule(skip_first=grid.skip, warmup=1, active=grid.steps - grid.skip - 1)
    profiler = Profiler(schedule).attach(trainer)
    try:
        trainer.fit()
        profile = profiler.report()
    finally:
        profiler.detach()
    assert profile.verdict is not None
    return Cell(
        cost_ms=cost,
        workers=workers,
        echo=echo,
        step_ms=profile.step_ms,
        samples_per_second=profile.samples_per_second,
        fresh_samples_per_second=profile.samples_per_second / echo,
        data_wait=profile.train_share(DATA, H2D),
        worker_cpu=profile.worker_cpu_fraction,
        data_share=profile.verdict.shares[DATA_BOUND],
        verdict=profile.verdict.kind,
    )


# ------------------------------------------------------------------------------------ outputs
def plot(result: BottleneckResult, path: Path) -> None:
    """Throughput and data-wait share against augmentation cost, a line per workers x echo."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for w_index, workers in enumerate(result.grid.workers):
        for echo in result.grid.echo:
            row = sorted((c for c in result.cells if (c.workers, c.echo) == (workers, echo)), key=lambda c: c.cost_ms)
            if not row:
                continue
            style = dict(
                color=colors[w_index % len(colors)],
                linestyle="-" if echo == 1 else "--",
                label=_workers(workers) + (f", echo x{echo}" if echo > 1 else ""),
            )
            costs = [c.cost_ms for c in row]
            left.plot(costs, [c.samples_per_second for c in row], marker="o", **style)
            right.plot(costs, [100 * c.data_share for c in row], marker="o", **style)
            bound = [c for c in row if c.data_bound]
            left.scatter(
                [c.cost_ms for c in bound],
                [c.samples_per_second for c in bound],
                s=120,
                facecolors="none",
                edgecolors="black",
                zorder=3,
            )
    left.set(
        xlabel="CPU augmentation per sample (ms)",
        ylabel="training samples/s",
        title=f"{result.workload}: throughput (circled: data-bound)",
    )
    right.set(
        xlabel="CPU augmentation per sample (ms)",
        ylabel="data share of training time (%)",
        title="data: waiting, plus workers' CPU on a CPU",
        ylim=(0, 100),
    )
    right.axhline(5, color="grey", linewidth=0.8, linestyle=":")
    left.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_outputs(result: BottleneckResult, folder: Path) -> list[Path]:
    """Write the plot, the markdown table and the CSV into `folder`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create {folder}: {error.strerror}") from None
    png, md, csv_path = (folder / name for name in FILES)
    plot(result, png)
    md.write_text(result.markdown(), encoding="utf-8")
    csv_path.write_text(result.csv(), encoding="utf-8")
    return [png, md, csv_path]
