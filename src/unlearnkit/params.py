"""One declaration per setting: its default, its valid range and (optionally) its search range.

A hyperparameter or config field is declared once, next to its default:

    lr: float = param(0.02, gt=0, search=(1e-4, 0.1), log=True)
    epochs: int = param(1, ge=1, search=(1, 5))
    schedule: str = param("cosine", choices=("cosine", "onecycle"))
    use_mask: bool = param(True, search=[True, False])

The same declaration serves three readers, so they can never disagree:
- `check_fields` range-checks a filled-in dataclass before any output exists (finite, sign,
  bounds, choices) with a one-line error naming the setting;
- `search_space` hands the tuner (`unlearnkit tune`, Optuna) the ranges to sample;
- `describe` prints the rule in `unlearnkit methods NAME` and the docs.

`search` is a pair ``(low, high)`` for a numeric range (with `log` for a log-uniform one) or a
list of values for a categorical choice; a field without `search` is fixed during tuning.
`search_if=(field, value)` declares that the method reads the field only when another categorical
field takes that value: tuning samples it only then, and `unlearn` warns a user who sets it otherwise; `search_kinds=("class",)` only in searches for those scenario kinds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from unlearnkit.errors import UnlearnkitError

_META_KEY = "unlearnkit.param"


@dataclass(frozen=True)
class ParamSpec:
    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    lt: float | None = None  # value < lt
    choices: tuple | None = None  # the value must be one of these
    search: tuple | list | None = None  # (low, high) numeric range, or a list of categorical values
    log: bool = False  # sample the numeric search range log-uniformly
    doc: str = ""
    # (field, value): searched only in trials where that (tunable, categorical) field takes that value,
    # e.g. ssd's fixed alpha only when its alpha search is off. Elsewhere the field keeps its default.
    search_if: tuple[str, Any] | None = None
    # Scenario kinds (`tuning.scenarios.KINDS`) whose searches sample the field; None: every kind.
    # A field with no effect on the other kinds (a class margin on a random forget set) keeps its
    # default there, so the sampler spends no trials on a dimension that changes nothing.
    search_kinds: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ validity

    def violation(self, value: Any) -> str | None:
        """The rule `value` breaks (e.g. "> 0"), or None when it is valid."""
        if self.choices is not None:
            return None if value in self.choices else f"one of {', '.join(map(str, self.choices))}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return "a finite number"
        rule = self.rule()
        ok = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
              and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        return None if ok else rule

    def rule(self) -> str:
        """The valid range in words: "> 0", "in [0, 1]", "in (0, 1)", "any finite number"."""
        if self.choices is not None:
            return f"one of {', '.join(map(str, self.choices))}"
        low = (f"[{_fmt(self.ge)}" if self.ge is not None else f"({_fmt(self.gt)}" if self.gt is not None else None)
        high = (f"{_fmt(self.le)}]" if self.le is not None else f"{_fmt(self.lt)})" if self.lt is not None else None)
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">= " if low[0] == "[" else "> ") + low[1:]
        if high:
            return ("<= " if high[-1] == "]" else "< ") + high[:-1]
        return "any finite number"

    # ------------------------------------------------------------------ search

    @property
    def tunable(self) -> bool:
        return self.search is not None

    def search_description(self) -> str:
        if self.search is None:
            return "fixed"
        if isinstance(self.search, list):
            text = "{" + ", ".join(map(str, self.search)) + "}"
        else:
            low, high = self.search
            text = f"[{_fmt(low)}, {_fmt(high)}]" + (" log" if self.log else "")
        if self.search_if is not None:
            field_name, value = self.search_if
            text += f" if {field_name}={str(value).lower() if isinstance(value, bool) else value}"
        if self.search_kinds is not None:
            text += f" ({', '.join(self.search_kinds)} only)"
        return text


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def param(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
          lt: float | None = None, choices: Sequence | None = None, search: tuple | list | None = None,
          log: bool = False, doc: str = "", search_if: tuple[str, Any] | None = None,
          search_kinds: Sequence[str] | None = None) -> Any:
    """A dataclass field carrying its valid range and search range (see the module docstring)."""
    spec = ParamSpec(ge, gt, le, lt, tuple(choices) if choices is not None else None,
                     list(search) if isinstance(search, list) else (tuple(search) if search is not None else None),
                     log, doc, tuple(search_if) if search_if is not None else None,
                     tuple(search_kinds) if search_kinds is not None else None)
    if spec.search_if is not None and (spec.search is None or len(spec.search_if) != 2):
        raise TypeError(f"search_if needs a search range and a (field, value) pair, got {search_if!r}")
    if spec.search_kinds is not None and (spec.search is None or not spec.search_kinds or isinstance(search_kinds, str)):
        raise TypeError(f"search_kinds needs a search range and a non-empty list of scenario kinds, got {search_kinds!r}")
    if isinstance(spec.search, tuple) and len(spec.search) != 2:
        raise TypeError(f"search must be (low, high) or a list of values, got {search!r}")
    return field(default=default, metadata={_META_KEY: spec})


def spec_of(f: dataclasses.Field) -> ParamSpec:
    """A field's declaration; undeclared fields get the empty spec (still checked for finiteness)."""
    return f.metadata.get(_META_KEY, ParamSpec())


def specs(cls_or_obj: Any) -> dict[str, ParamSpec]:
    return {f.name: spec_of(f) for f in dataclasses.fields(cls_or_obj)}


def check_fields(obj: Any, prefix: str = "") -> None:
    """Raise a one-line error for the first field of `obj` (a dataclass) outside its declared range.

    Nested dataclasses are checked recursively, their keys written `section.key`. NaN and
    infinities are never valid (a comparison with NaN is always false, so `x < 0` checks pass it).
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_fields(value, key + ".")
            continue
        broken = spec_of(f).violation(value)
        if broken is not None:
            raise UnlearnkitError(f"{key}={value!r} is out of range: it must be {broken}")


def search_space(cls_or_obj: Any, kind: str | None = None) -> dict[str, ParamSpec]:
    """The tunable fields (those declared with `search`), in declaration order; with `kind`, only
    those a search for that scenario kind samples (`search_kinds`)."""
    return {name: s for name, s in specs(cls_or_obj).items()
            if s.tunable and (kind is None or s.search_kinds is None or kind in s.search_kinds)}


def check_search_space(cls_or_obj: Any, owner: str) -> None:
    """Every search range must lie inside its valid range (and log ranges above zero): a
    declaration error caught by the registry tests, not at tuning time."""
    from unlearnkit.tuning.scenarios import KINDS  # noqa: PLC0415  (no Optuna: only the kinds' names)

    space = search_space(cls_or_obj)
    for name, s in space.items():
        if s.search_if is not None:
            field_name, value = s.search_if
            ctrl = space.get(field_name)
            if (ctrl is None or not isinstance(ctrl.search, list) or value not in ctrl.search or ctrl.search_if is not None
                    or not set(s.search_kinds or KINDS) <= set(ctrl.search_kinds or KINDS)):
                raise TypeError(f"{owner}.{name}: search_if names {field_name}={value!r}, which must be a value in the "
                                "categorical search list of another, unconditional tunable field searched for the same kinds")
        unknown = sorted(set(s.search_kinds or ()) - set(KINDS))
        if unknown:
            raise TypeError(f"{owner}.{name}: search_kinds names unknown scenario kinds {unknown}; known: {', '.join(KINDS)}")
        values = s.search if isinstance(s.search, list) else list(s.search)
        for v in values:
            broken = s.violation(v)
            if broken is not None:
                raise TypeError(f"{owner}.{name}: search value {v!r} is outside its valid range ({broken})")
        if isinstance(s.search, tuple):
            low, high = s.search
            if not low < high:
                raise TypeError(f"{owner}.{name}: search range needs low < high, got {s.search}")
            if s.log and low <= 0:
                raise TypeError(f"{owner}.{name}: a log search range must be > 0, got {s.search}")


def describe(cls_or_obj: Any) -> list[dict[str, Any]]:
    """One row per field: name, default, valid range, search range, doc — for tables and docs."""
    defaults = cls_or_obj if not isinstance(cls_or_obj, type) else None
    rows = []
    for f in dataclasses.fields(cls_or_obj):
        s = spec_of(f)
        default = getattr(defaults, f.name) if defaults is not None else (
            f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
        # A flag has no numeric range: "any finite number" would be wrong in the tables.
        valid = "true or false" if isinstance(default, bool) and s.choices is None else s.rule()
        rows.append({"name": f.name, "default": default, "valid": valid, "search": s.search_description(),
                     "doc": s.doc})
    return rows
