"""What a workload's inputs are, so that a method that cannot act on them is refused up front."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from algospeed.core.vocabulary import Vocabulary
from algospeed.errors import UsageError


class DataKind(Vocabulary):
    """The kind of inputs a workload's batches hold."""

    IMAGES = "images"  # (N, C, H, W) floating point
    SIGNALS = "signals"  # (N, C, L) floating point
    TOKENS = "tokens"  # (N, T) integer ids
    TABULAR = "tabular"  # (N, F) floating point features


ALL_KINDS = frozenset(DataKind)


def check_data_kind(methods: Sequence[Any], kind: DataKind, source: str) -> None:
    """A usage error naming the method and the data's `source` (e.g. "workload 'mnist1d'") when a method
    cannot act on `kind` of data."""
    for method in methods:
        kinds: Iterable[DataKind] = getattr(method, "data_kinds", ALL_KINDS)
        if kind not in kinds:
            accepted = ", ".join(sorted(k.value for k in kinds))
            raise UsageError(
                f"method {method.key!r} acts on {accepted}; {source} holds {kind.value}: they cannot be combined"
            )
