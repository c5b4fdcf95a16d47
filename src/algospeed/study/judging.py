"""How a study judges its runs, fixed when it is created and stored with it, so that a report needs
none of the workload's or the methods' code (nor the plugins that define them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from algospeed.methods.registry import method_class
from algospeed.study.spec import StudySpec
from algospeed.workloads.registry import get_workload


@dataclass(frozen=True)
class Judging:
    """The quality metric, its direction and the target; and which methods of the arms do extra work."""

    metric: str
    higher_is_better: bool
    target: float
    extra_compute: tuple[str, ...] = ()
    anytime: tuple[str, ...] = ()  # methods whose every point is a finished run (no decaying schedule needed)

    @classmethod
    def of(cls, spec: StudySpec) -> Judging:
        metric = get_workload(spec.workload).metric
        methods = {method.name for arm in spec.arms.values() for method in arm.methods}
        return cls(
            metric=metric.name,
            higher_is_better=metric.higher_is_better,
            target=spec.target_quality,
            extra_compute=tuple(sorted(name for name in methods if method_class(name).extra_compute)),
            anytime=tuple(sorted(name for name in methods if getattr(method_class(name), "anytime", False))),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Judging:
        tuples = {key: tuple(data.get(key, ())) for key in ("extra_compute", "anytime")}
        return cls(**{**data, **tuples})
