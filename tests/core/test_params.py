"""The one declaration of a setting: valid range, search range, and their checks."""

from dataclasses import dataclass

import pytest

from unlearnkit.errors import UnlearnkitError
from unlearnkit.params import check_fields, check_search_space, describe, param, search_space


@dataclass
class Example:
    lr: float = param(0.1, gt=0, search=(1e-3, 1.0), log=True)
    frac: float = param(0.5, ge=0, le=1)
    steps: int = param(3, ge=1, search=(1, 10))
    mode: str = param("a", choices=("a", "b"), search=["a", "b"])
    free: float = 1.0
    flag: bool = param(False, search=[False, True])


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("lr", 0.0, "> 0"), ("lr", -1.0, "> 0"), ("lr", float("nan"), "finite"), ("lr", float("inf"), "finite"),
    ("frac", 1.5, r"in \[0, 1\]"), ("steps", 0, ">= 1"), ("mode", "c", "one of a, b"), ("free", float("nan"), "finite"),
])
def test_out_of_range_values_name_the_setting_and_rule(field, value, rule):
    ex = Example()
    setattr(ex, field, value)
    with pytest.raises(UnlearnkitError, match=rf"^m\.{field}=.* is out of range: it must be .*{rule}"):
        check_fields(ex, "m.")


def test_valid_values_pass_and_search_space_lists_only_tunable_fields():
    check_fields(Example(lr=1e-5, frac=1.0, steps=100, mode="b"))
    space = search_space(Example)
    assert list(space) == ["lr", "steps", "mode", "flag"]
    assert space["lr"].log and space["lr"].search == (1e-3, 1.0)
    assert space["mode"].search == ["a", "b"]
    rows = {r["name"]: r for r in describe(Example)}
    assert rows["frac"]["valid"] == "in [0, 1]" and rows["frac"]["search"] == "fixed"
    assert rows["lr"]["search"] == "[0.001, 1] log"
    assert rows["flag"]["valid"] == "true or false" and rows["flag"]["search"] == "{False, True}"


@pytest.mark.parametrize("bad", [
    dict(default=0.1, gt=0, search=(0.0, 1.0)),  # search reaches an invalid value
    dict(default=0.1, gt=0, search=(1.0, 0.5)),  # low >= high
    dict(default=0.1, search=(-1.0, 1.0), log=True),  # log range through zero
])
def test_declaration_errors_are_caught(bad):
    @dataclass
    class Broken:
        x: float = param(**bad)

    with pytest.raises(TypeError):
        check_search_space(Broken, "Broken")


@dataclass
class Conditional:
    search_on: bool = param(False, search=[False, True])
    fixed_value: float = param(10.0, gt=0, search=(1.0, 100.0), log=True, search_if=("search_on", False))
    slack: float = param(0.02, ge=0, search=(0.0, 0.1), search_if=("search_on", True))


def test_a_conditional_search_range_names_its_condition():
    check_search_space(Conditional, "Conditional")
    rows = {r["name"]: r for r in describe(Conditional)}
    assert rows["fixed_value"]["search"] == "[1, 100] log if search_on=false"
    assert rows["slack"]["search"] == "[0, 0.1] if search_on=true"


@pytest.mark.parametrize("condition", [
    ("missing", True),  # no such field
    ("search_on", "yes"),  # not one of its search values
    ("fixed_value", 10.0),  # the controlling field is numeric, not categorical
])
def test_a_broken_search_condition_is_a_declaration_error(condition):
    @dataclass
    class Broken:
        search_on: bool = param(False, search=[False, True])
        fixed_value: float = param(10.0, gt=0, search=(1.0, 100.0), log=True)
        x: float = param(0.5, gt=0, search=(0.1, 1.0), search_if=condition)

    with pytest.raises(TypeError, match="search_if"):
        check_search_space(Broken, "Broken")


def test_a_condition_needs_a_search_range():
    with pytest.raises(TypeError, match="search_if"):
        param(1.0, search_if=("search_on", True))


@dataclass
class KindBound:
    lr: float = param(0.1, gt=0, search=(0.01, 1.0), log=True)
    margin: float = param(1.0, ge=0, search=(0.0, 6.0), search_kinds=("class",))


def test_a_kind_bound_field_is_searched_only_for_its_kinds():
    check_search_space(KindBound, "KindBound")
    assert list(search_space(KindBound)) == ["lr", "margin"]
    assert list(search_space(KindBound, "class")) == ["lr", "margin"]
    assert list(search_space(KindBound, "random")) == ["lr"]
    assert {r["name"]: r["search"] for r in describe(KindBound)}["margin"] == "[0, 6] (class only)"


def test_search_kinds_must_name_known_kinds_and_need_a_range():
    @dataclass
    class Unknown:
        margin: float = param(1.0, ge=0, search=(0.0, 6.0), search_kinds=("poison",))

    with pytest.raises(TypeError, match=r"unknown scenario kinds \['poison'\]"):
        check_search_space(Unknown, "Unknown")
    with pytest.raises(TypeError, match="search_kinds"):
        param(1.0, search_kinds=("class",))  # nothing to search
    with pytest.raises(TypeError, match="search_kinds"):
        param(1.0, search=(0.0, 2.0), search_kinds="class")  # a string is not a list of kinds


def test_a_condition_on_a_field_searched_for_fewer_kinds_is_a_declaration_error():
    # Under `random` the controlling field would not exist, so the condition could never be decided.
    @dataclass
    class Broken:
        mode: str = param("a", search=["a", "b"], search_kinds=("class",))
        x: float = param(0.5, gt=0, search=(0.1, 1.0), search_if=("mode", "b"))

    with pytest.raises(TypeError, match="search_if"):
        check_search_space(Broken, "Broken")
