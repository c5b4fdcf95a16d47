"""Studies: arms x budgets x seeds on one workload, stored crash-safe, analysed and reported.

Everything a YAML study file says can be built in Python and run with `run`:

    >>> import tempfile
    >>> from algospeed.study import StudySpec, run
    >>> spec = StudySpec(workload="digits", arms={"baseline": [], "smooth": ["label_smoothing"]},
    ...                  budgets=["10ba", "20ba"], seeds=1, currency="steps")
    >>> report = run(spec, out=tempfile.mkdtemp(), workers=1)
    >>> sorted(report.summaries), report.judging.metric
    (['baseline', 'smooth'], 'accuracy')
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from algospeed.study.spec import StudySpec

if TYPE_CHECKING:
    from algospeed.study.report import StudyReport

__all__ = ["StudySpec", "run"]


def run(
    spec: StudySpec,
    *,
    plugins: Sequence[str | Path] = (),
    out: str | Path | None = None,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
) -> StudyReport:
    """Run every unfinished run of `spec` into `out` (default `studies/<name>`), write its report and
    return the analysis. `plugins` (files or modules) are added to the spec's own and loaded by every
    worker; a script that defines its own workload or method passes `plugins=[__file__]` and starts the
    study under `if __name__ == "__main__":`."""
    from algospeed.plugins import resolve_ref
    from algospeed.study.report import analyse, write_report
    from algospeed.study.runner import run_study
    from algospeed.study.spec import slug

    if plugins:
        extra = [resolve_ref(str(plugin)) for plugin in plugins]
        spec = StudySpec.model_validate({**spec.model_dump(mode="json"), "plugins": [*spec.plugins, *extra]})
    folder = Path(out) if out is not None else Path("studies") / slug(spec.name)
    run_study(spec, folder, workers=workers, executor=executor, address=address).close()
    write_report(folder)
    return analyse(folder)
