"""A method's search space (its `param(..., search=...)` declarations) as Optuna distributions,
and the cost budget that is part of the space."""

from __future__ import annotations

import math
import typing
from typing import Any

from unlearnkit.errors import UnlearnkitError
from unlearnkit.params import ParamSpec, search_space


def distributions(method: str, kind: str | None = None) -> dict[str, Any]:
    """{field: optuna distribution} in declaration order; a method without one is a user error.

    With `kind` (a scenario kind), only the fields a search for that kind samples (`search_kinds`):
    the others keep their defaults in every trial.
    """
    import optuna  # noqa: PLC0415

    from unlearnkit.methods.base import get_method  # noqa: PLC0415

    cls = get_method(method)
    if cls.exact:
        raise UnlearnkitError(
            f"method {method!r} is exact retraining, the reference every trial is scored against; tune an approximate method"
        )
    space = search_space(cls.Hparams, kind)
    if not space:
        raise UnlearnkitError(
            f"method {method!r} declares no search space (no hyperparameter has param(..., search=...)); "
            f"nothing to tune — see `unlearnkit methods {method}`"
        )
    hints = typing.get_type_hints(cls.Hparams)
    return {name: _distribution(optuna, spec, hints[name]) for name, spec in space.items()}


def _distribution(optuna, spec: ParamSpec, hint: Any):
    if isinstance(spec.search, list):
        return optuna.distributions.CategoricalDistribution(spec.search)
    low, high = spec.search
    # An int field samples integers; everything else numeric samples floats.
    make = optuna.distributions.IntDistribution if hint is int else optuna.distributions.FloatDistribution
    return make(low, high, log=spec.log)


def default_point(method: str, dists: dict[str, Any]) -> dict[str, Any]:
    """The paper defaults of the tunable fields that lie inside their search range (trial 0 of a search)."""
    from unlearnkit.methods.base import hparam_defaults  # noqa: PLC0415

    defaults = hparam_defaults(method)
    inactive = _switched_off(method, defaults)
    return {k: defaults[k] for k, d in dists.items() if k not in inactive and _contains(d, defaults[k])}


def start_point(method: str, dists: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A user's starting point (`--start`): tunable fields only, each valid and inside its search range."""
    from unlearnkit.methods.base import get_method, make_hparams  # noqa: PLC0415

    if not values:
        raise UnlearnkitError(f"--start is empty; give KEY=VALUE pairs of {method!r}'s tunable fields, e.g. lr=0.01,epochs=0.5")
    hp = make_hparams(method, values)  # unknown names, wrong types, invalid values: one-line errors
    point = {}
    for key in values:
        name = key.removeprefix("method.")
        if name not in dists:
            kinds = search_space(get_method(method).Hparams).get(name, ParamSpec()).search_kinds
            why = (f"searches {name!r} only for {' and '.join(kinds)} requests" if kinds
                   else f"does not search {name!r} (fixed)")
            raise UnlearnkitError(f"--start {name}: {method!r} {why}; tunable here: {', '.join(dists)}")
        value = getattr(hp, name)
        if not _contains(dists[name], value):
            raise UnlearnkitError(f"--start {name}={value!r} lies outside its search range {dists[name]!r}")
        point[name] = value
    for name, (ctrl, want) in conditions(method).items():
        if name in point and getattr(hp, ctrl) != want:  # a value the trial would never sample: say so, not drop it
            raise UnlearnkitError(f"--start {name}: {method!r} searches {name!r} only with {ctrl}={want}; add {ctrl}={want} "
                                  f"to the point or leave {name} out")
    return point


def filled_start(method: str, dists: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """The trial a `--start` point queues: its own values, every other tunable field at its paper default.

    A user who writes `--start retain_fraction=0.08` means "the paper's setting with this change";
    left partial, Optuna's sampler would draw every other field at random (cifar10-cpu, scrub: the
    optimiser, temperature and weights of that trial were TPE's, not the paper's). A field whose
    default lies outside its search range, or whose `search_if` condition the point switches off,
    is left to the sampler / left out, as in the paper-defaults trial.
    """
    from unlearnkit.methods.base import hparam_defaults  # noqa: PLC0415

    merged = {**hparam_defaults(method), **point}
    inactive = _switched_off(method, merged)
    return {k: merged[k] for k, d in dists.items() if k not in inactive and (k in point or _contains(d, merged[k]))}


def entry_point(method: str, dists: dict[str, Any], values: dict[str, Any]) -> dict[str, Any] | None:
    """The trial that tries a tuned entry's `values` in a search: its tunable fields (those its own
    settings switch on), the rest at their paper defaults; None when a value lies outside today's
    range (the space changed since the entry was made: the sampler covers the space instead)."""
    from unlearnkit.methods.base import hparam_defaults  # noqa: PLC0415

    merged = {**hparam_defaults(method), **values}
    inactive = _switched_off(method, merged)
    point = {k: v for k, v in values.items() if k in dists and k not in inactive}
    if not all(_contains(dists[k], v) for k, v in point.items()):
        return None
    return filled_start(method, dists, point)


def _switched_off(method: str, values: dict[str, Any]) -> set[str]:
    """Fields whose `search_if` condition `values` (a full setting) does not meet: not sampled, not queued."""
    return {k for k, (ctrl, want) in conditions(method).items() if values[ctrl] != want}


def _contains(dist, value) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def probe_budget(method: str, dists: dict[str, Any], cost_of, budget_ree: float, seed: int, draws: int = 256) -> dict[str, Any]:
    """Check that some of the space fits the budget before anything is trained.

    Draws `draws` random points (Optuna's RandomSampler) plus the defaults and reports the share
    within budget; when none is, the search would prune every trial, so that is a user error.
    """
    import optuna  # noqa: PLC0415

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    points = [default_point(method, dists)]
    for _ in range(draws):
        points.append(study.ask(dists).params)
    costs = [cost_of(p) for p in points]
    known = [c for c in costs if c is not None]
    if not known:
        return {"known": False, "share_within": None, "cheapest": None}
    within = sum(c <= budget_ree for c in known) / len(known)
    cheapest = min(known)
    if within == 0:
        raise UnlearnkitError(
            f"method {method!r}: none of {len(known)} sampled settings fits the cost budget of {budget_ree:.3g} REE "
            f"(cheapest {cheapest:.3g} REE); raise --budget or narrow its search range"
        )
    return {"known": True, "share_within": within, "cheapest": cheapest}


def nearest_within_budget(dists: dict[str, Any], values: dict[str, Any], cost_of, budget_ree: float,
                          steps: int = 40) -> dict[str, Any] | None:
    """The in-budget point nearest to an over-budget draw, moving one numeric field (None: no field can).

    Why: a skipped draw is recorded as a constraint violation, and an independent TPE pins the
    violation on each of the draw's values. A categorical option whose first draws happened to be
    costly (salun's `optimizer=dualoptim` with 2.8-5.3 forget passes on `cifar10-cpu`) was then never
    drawn again although its cheaper settings fit. The search runs this point next (while the draw's
    categorical values have run fewer than `objective.FIT_UNTIL` times), so every option is seen
    running within the budget. For each numeric field, each end of its range that brings the cost within
    budget is bisected towards the drawn value (log scale for log fields); the field that moves least
    (as a share of its range, on its sampling scale) wins. `cost_of` takes tunable values.
    """
    import optuna  # noqa: PLC0415

    best = None
    for name, dist in dists.items():
        if name not in values or isinstance(dist, optuna.distributions.CategoricalDistribution):
            continue
        for end in (dist.low, dist.high):
            if cost_of({**values, name: end}) > budget_ree:
                continue
            fits, over = end, values[name]
            for _ in range(steps):
                mid = _between(dist, fits, over)
                if mid in (fits, over):
                    break
                if cost_of({**values, name: mid}) <= budget_ree:
                    fits = mid
                else:
                    over = mid
            moved = abs(_unit(dist, values[name]) - _unit(dist, fits))
            if best is None or moved < best[0]:
                best = (moved, name, fits)
    return None if best is None else {**values, best[1]: best[2]}


def _between(dist, a, b):
    import optuna  # noqa: PLC0415

    if isinstance(dist, optuna.distributions.IntDistribution):
        return a + (b - a) // 2 if b > a else a - (a - b) // 2
    return math.sqrt(a * b) if dist.log else (a + b) / 2


def _unit(dist, value) -> float:
    f = math.log if dist.log else float
    return (f(value) - f(dist.low)) / ((f(dist.high) - f(dist.low)) or 1.0)


def conditions(method: str) -> dict[str, tuple[str, Any]]:
    """{field: (controlling field, value)} for the fields searched only under a condition (`search_if`)."""
    from unlearnkit.methods.base import get_method  # noqa: PLC0415

    return {name: spec.search_if for name, spec in search_space(get_method(method).Hparams).items() if spec.search_if}


def sample(trial, method: str, dists: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """One trial's point: the unconditional fields, then each conditional one whose condition holds.

    A field that has no effect in this trial (ssd's alpha while its alpha search is on) is not
    sampled, so TPE does not spend its model on it and the trial table shows what the run used.
    """
    conds = conditions(method)
    values = {name: suggest(trial, name, d) for name, d in dists.items() if name not in conds}
    for name, (ctrl, want) in conds.items():
        if name in dists and {**fixed, **values}.get(ctrl) == want:
            values[name] = suggest(trial, name, dists[name])
    return values


def suggest(trial, name: str, dist) -> Any:
    """Sample one value with the trial's public suggest_* call for this distribution's type."""
    import optuna  # noqa: PLC0415

    d = optuna.distributions
    calls = {
        d.FloatDistribution: lambda: trial.suggest_float(name, dist.low, dist.high, log=dist.log),
        d.IntDistribution: lambda: trial.suggest_int(name, dist.low, dist.high, log=dist.log),
        d.CategoricalDistribution: lambda: trial.suggest_categorical(name, dist.choices),
    }
    return calls[type(dist)]()
