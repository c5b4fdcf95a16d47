from __future__ import annotations

import inspect

import pytest

from algospeed.errors import UsageError
from algospeed.methods.registry import method_class, method_names
from algospeed.methods.spec import MethodSpec, build_method, method_settings, parse_methods
from algospeed.run_spec import RunSpec


def test_methods_parse_in_order_with_their_settings() -> None:
    specs = parse_methods("label_smoothing, blurpool:replace_maxpools=false:blur_first=true,ema:decay=0.9")
    assert [s.name for s in specs] == ["label_smoothing", "blurpool", "ema"]
    assert specs[1].settings == {"replace_maxpools": "false", "blur_first": "true"}
    assert str(specs[2]) == "ema:decay=0.9"
    assert parse_methods("") == []


@pytest.mark.parametrize("text", ["ema:decay", "ema:=3", "mixup:alpha=1:beta"])
def test_malformed_settings_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match=r"settings .* expected KEY=VALUE"):
        parse_methods(text)


def test_an_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(UsageError, match="unknown method 'warp_drive'; valid methods: "):
        build_method(MethodSpec(name="warp_drive"))


def test_every_method_declares_typed_settings_a_place_and_a_card() -> None:
    for name in method_names():
        cls = method_class(name)
        assert cls.name == name
        for key, (kind, default) in method_settings(cls).items():
            assert default is not inspect.Parameter.empty, f"{name}.{key} needs a default"
            assert kind is not None
        card = cls.__doc__ or ""
        for label in ("Place:", "Helps:", "Hurts:", "Reference:"):
            assert label in card, f"{name}'s card lacks {label}"
        assert build_method(MethodSpec(name=name)).key == name


def test_every_method_setting_rejects_a_value_of_the_wrong_type() -> None:
    for name in method_names():
        for key, (kind, _) in method_settings(method_class(name)).items():
            if kind in (int, float, bool):
                with pytest.raises(UsageError, match=f"method '{name}' setting {key}="):
                    build_method(MethodSpec(name=name, settings={key: "not-a-number"}))


def test_unknown_settings_list_the_valid_ones() -> None:
    for name in method_names():
        with pytest.raises(UsageError, match=f"method '{name}' has no setting colour; valid settings: "):
            build_method(MethodSpec(name=name, settings={"colour": "red"}))


def test_a_run_spec_takes_methods_as_text_and_validates_them_up_front() -> None:
    with pytest.raises(ValueError, match="unknown method 'warp_drive'"):
        RunSpec(workload="digits", methods="warp_drive")
    assert RunSpec(workload="digits", methods="").methods == []


def test_every_method_sits_where_its_catalogue_entry_places_it() -> None:
    from algospeed.taxonomy.catalogue import entry_for_method

    def axes(place) -> tuple:
        return (set(place.where), set(place.what), place.how, set(place.when))

    for name in method_names():
        assert axes(method_class(name).place) == axes(entry_for_method(name)), name


def test_methods_that_do_extra_work_declare_it_for_the_fairness_checks() -> None:
    declared = {name for name in method_names() if method_class(name).extra_compute}
    assert declared == {"sam", "swa", "selective_backprop", "data_pruning", "curriculum", "whitening"}
