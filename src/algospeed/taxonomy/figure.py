"""A PNG heatmap of the where x what grid, drawn off-screen so it works on headless machines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from algospeed.errors import UsageError
from algospeed.taxonomy.axes import What, Where
from algospeed.taxonomy.queries import grid
from algospeed.taxonomy.schema import Entry


def heatmap(entries: Sequence[Entry], path: Path) -> Path:
    """Write the grid's counts as a PNG heatmap to `path` (its folder must exist)."""
    if path.suffix.lower() != ".png":
        raise UsageError(f"the figure is a PNG; give an output path ending in .png, not {path}")
    if not path.parent.is_dir():
        raise UsageError(f"output folder {path.parent} does not exist")
    # Imported here: matplotlib is slow to import and only this command needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = grid(entries)
    counts = [[len(table[(where, what)]) for what in What] for where in Where]
    figure = Figure(figsize=(8, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="viridis")
    axes.set_xticks(range(len(What)), [what.value for what in What])
    axes.set_yticks(range(len(Where)), [where.value for where in Where])
    axes.set_xlabel("what the method does")
    axes.set_ylabel("where it acts")
    axes.set_title(f"Training-speedup methods per cell ({len(entries)} catalogued)")
    brightest = max(max(row) for row in counts) or 1
    for row, values in enumerate(counts):
        for column, count in enumerate(values):
            colour = "black" if count > brightest / 2 else "white"
            axes.text(column, row, str(count), ha="center", va="center", color=colour)
    figure.colorbar(image, ax=axes, label="methods")
    figure.savefig(path, format="png", dpi=120)
    return path
