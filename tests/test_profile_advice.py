"""Advice from the taxonomy: the bottleneck mapping is valid data and names only methods that exist."""

from __future__ import annotations

import shlex

import pytest

from algospeed.methods.registry import method_names
from algospeed.methods.spec import build_method, parse_methods
from algospeed.profile.advice import advise, candidates, planned_links, remedies
from algospeed.profile.verdict import DATA_BOUND, KINDS
from algospeed.taxonomy.catalogue import packaged_catalogue


def test_every_verdict_has_advice_and_every_filter_matches_something() -> None:
    table = remedies()
    assert set(table) == set(KINDS)
    pool = candidates()
    for kind, remedy in table.items():
        for item in remedy.filters:
            assert any(item.matches(c) for c in pool), f"{kind}: filter {item} matches no method"
        for name in remedy.settings:
            assert name in method_names(), f"{kind}: settings for unknown method {name!r}"


@pytest.mark.parametrize("kind", KINDS)
def test_advice_names_only_registered_or_catalogued_methods(kind: str) -> None:
    registered = set(method_names())
    catalogued = {entry.id for entry in packaged_catalogue().entries}
    (section,) = advise([kind], workload="mnist5k")
    assert section.methods, f"no method advised for {kind}"
    seen_catalogued = False
    for method in section.methods:
        if method.implemented:
            assert not seen_catalogued, "implemented methods come first"
            assert method.name in registered
            assert method.command is not None
            argv = shlex.split(method.command)
            assert argv[:4] == ["algospeed", "train", "--workload", "mnist5k"]
            for spec in parse_methods(argv[argv.index("--methods") + 1]):
                build_method(spec)  # the suggested settings are valid
        else:
            seen_catalogued = True
            assert method.name in catalogued and method.command is None


def test_data_bound_advice_and_its_commands() -> None:
    (section,) = advise(
        [DATA_BOUND],
        workload="imagefolder",
        methods=["label_smoothing"],
        options={"path": "/data/x", "workers": 2},
        workload_options=["path", "size", "workers"],
    )
    first = section.methods[0]
    assert first.name == "data_echoing" and first.implemented
    assert first.command == (
        "algospeed train --workload imagefolder --option path=/data/x --option workers=2 "
        "--methods label_smoothing,data_echoing:factor=2"
    )
    commands = [command for _, command in section.other if command]
    assert "algospeed train --workload imagefolder --option path=/data/x --option workers=4" in commands
    (without_workers,) = advise([DATA_BOUND], workload="mnist5k", workload_options=["blocks_per_stage"])
    assert not any("workers=" in (command or "") for _, command in without_workers.other)


def test_methods_already_on_are_not_advised_again() -> None:
    (section,) = advise([DATA_BOUND], methods=["data_echoing:factor=3"])
    assert "data_echoing" not in [method.name for method in section.methods]


def test_registered_methods_find_their_catalogue_entry() -> None:
    catalogued = {entry.id for entry in packaged_catalogue().entries}
    assert set(planned_links().values()) <= catalogued
    by_name = {c.name: c for c in candidates()}
    assert by_name["bf16_autocast"].implemented and by_name["bf16_autocast"].mechanism == "low_precision"
    assert "bfloat16" not in by_name  # the entry bf16_autocast implements is not listed again
    assert by_name["data_echoing"].mechanism == "data_reuse"
    assert not by_name["rigl"].implemented


def test_unknown_verdict_is_a_usage_error() -> None:
    from algospeed.errors import UsageError

    with pytest.raises(UsageError, match="no advice for verdict"):
        advise(["slow"])
