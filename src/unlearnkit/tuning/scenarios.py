"""Scenario kinds a search tunes for, the tuning seeds, and the forget set of each tuning seed.

A tuned default is for a KIND of request, not one forget set: `random` (a random share of the
members), `class` (one whole class) and `class-share` (a share of one class, `class:cat:0.5`). Each
tuning forget set has its own seed — its own original model, split and, for the class kinds, its
own class — so the search cannot fit one draw.
Forget requests map onto these for the defaults lookup (`kind_of`): `ids:` files are arbitrary
member subsets and take the `random` entry; `subclass:` requests select fine classes as `class:`
does and take the same entries. A kind with no entry of its own for a method and preset falls
back to the entry of a kind whose target is the same (`FALLBACK_KIND`), and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from unlearnkit.data.splits import FORGET_SPECS, class_fraction, class_token
from unlearnkit.errors import UnlearnkitError

# The bench and leaderboards evaluate on seeds 0, 1, 2, ...; tuning uses seeds from 100 on, so
# tuned defaults are never evaluated on their own tuning forget sets (the search refuses lower seeds).
FIRST_TUNING_SEED = 100
EVALUATION_SEEDS = range(0, FIRST_TUNING_SEED)


@dataclass(frozen=True)
class Kind:
    name: str
    default_arg: str | None  # e.g. "0.1" for random; None: the kind takes no argument
    check_arg: Callable[[str], None]
    spec: Callable[[str | None, int, tuple[str, ...]], str]  # (arg, seed, class names) -> forget spec for that tuning seed
    describe: str


def _check_fraction(arg: str) -> None:
    try:
        ok = 0 < float(arg) < 1
    except ValueError:
        ok = False
    if not ok:
        raise UnlearnkitError(f"--forget random:{arg}: the tuning kind takes a fraction of the members in (0, 1), e.g. random:0.1")


def _is_share(arg: str) -> bool:
    try:
        return 0 < float(arg) < 1
    except ValueError:
        return False


def _no_arg(arg: str) -> None:
    hint = f", or --forget class-share:{arg} for that share of one class" if _is_share(arg) else ""
    raise UnlearnkitError(
        f"--forget class:{arg}: tune for the kind, not one class — write --forget class "
        f"(each tuning seed forgets a different whole class){hint}"
    )


def _check_share(arg: str) -> None:
    if not _is_share(arg):
        raise UnlearnkitError(
            f"--forget class-share:{arg}: the tuning kind takes the share of one class to forget, in (0, 1), e.g. class-share:0.5"
        )


KINDS: dict[str, Kind] = {
    "random": Kind("random", "0.1", _check_fraction, lambda arg, seed, classes: f"random:{arg}",
                   "a random share of the members (ids: files use this entry too, and class shares where no class-share entry exists)"),
    # Tuning seed s forgets class s mod C: consecutive seeds forget different classes.
    "class": Kind("class", None, _no_arg, lambda arg, seed, classes: f"class:{class_token(classes, seed % len(classes), by='index')}",
                  "one whole class (subclass: requests of whole fine classes use this entry too)"),
    # Tuning seed s forgets that share of class s mod C; the rest of the class stays in retain.
    "class-share": Kind("class-share", "0.5", _check_share,
                        lambda arg, seed, classes: f"class:{class_token(classes, seed % len(classes), by='index')}:{arg}",
                        "a share of one class, the rest of it kept (class: and subclass: requests with a fraction below 1)"),
}

# Where a preset has no entry of a request's own kind for a method, the entry of this kind applies.
# A class share's forgotten samples should score as held-out samples of a class the model still
# knows — the `random` kind's target (before `class-share` existed, the only entry such requests took).
FALLBACK_KIND = {"class-share": "random"}

# Forget-spec prefixes whose requests take the defaults of a tuning kind. `subclass:` selects as
# `class:` does, on the fine labels the model is trained on (data/splits.py `_subclasses`): its
# retrained reference never predicts the forgotten fine class, so it is a class request (and a share
# of it, like `class:cat:0.5`, a class-share one: `kind_of`).
LOOKUP_KIND = {"random": "random", "ids": "random", "class": "class", "subclass": "class"}

# How `Split.with_forget` joins the requests of a chain (an unlearned run's split records
# "class:3 + random:50": forget class 3 first, then 50 more samples from that run).
CHAIN_SEPARATOR = " + "


def latest_request(forget_spec: str) -> str:
    """The last request of a chained forget spec ("class:3 + class:5" -> "class:5"); a single spec as it is.

    The request being served is the latest one: the earlier ones are already done (their samples
    are in the parent's forget set), so its kind alone picks the defaults. A request may itself
    contain the separator (an `ids:` file path with " + " in it), so the latest request is the
    shortest tail that starts with a known spec prefix.
    """
    parts = forget_spec.split(CHAIN_SEPARATOR)
    for i in range(len(parts) - 1, 0, -1):
        tail = CHAIN_SEPARATOR.join(parts[i:])
        if tail.partition(":")[0] in FORGET_SPECS:
            return tail
    return forget_spec


def parse_kind(text: str) -> tuple[Kind, str | None]:
    """`random`, `random:0.1`, `class` or `class-share:0.5` -> (kind, its argument); bad kinds are one-line errors."""
    name, sep, arg = text.strip().partition(":")
    if name == "ids":
        raise UnlearnkitError(
            f"--forget {text}: an ids: file is one forget set, not a kind to tune for; ids: requests use the random "
            "entry, so tune with --forget random:FRACTION"
        )
    if name not in KINDS:
        raise UnlearnkitError(f"--forget {text}: unknown scenario kind {name!r}; tune for one of: {', '.join(KINDS)} (e.g. random:0.1)")
    kind = KINDS[name]
    if sep:
        kind.check_arg(arg)
        return kind, arg
    return kind, kind.default_arg


def kind_of(forget_spec: str | None) -> str | None:
    """The tuning kind whose defaults a forget request takes (None: no tuned defaults apply).

    A `class` entry is tuned to remove whole classes (its retrained reference never predicts them);
    `class:cat:0.5` forgets half the cats and keeps the rest, so retraining still recognises cats and
    the forgotten half should score as held-out cats do. Class entries over-forget it (cifar10-cpu
    `class:cat:0.5`, seed 0, 2026-11-28: UA 71-100 with four of them where retraining has 42; mean
    gap 13.1 against 9.6 with the random entries; docs/benchmarks.md), so it is its own kind,
    `class-share`, whose lookup falls back to the `random` entry (`FALLBACK_KIND`). Such a set is
    not a fair sample of the members: methods forward its batches beside retain batches
    (`methods.common.class_concentrated`), and a random entry tuned on fair samples fits it badly.

    A chain (`Split.forget_spec` of an unlearned run, "class:3 + random:50") takes the kind of its
    latest request (`latest_request`): read whole, the text after its last ':' was parsed as a
    class share ("class:3 + class:5" failed, "random:0.1 + class:3" took the random entry).
    """
    if not forget_spec:
        return None
    request = latest_request(forget_spec)
    prefix, _, arg = request.partition(":")
    kind = LOOKUP_KIND.get(prefix)
    if kind == "class":  # class: and subclass: alike
        _, share = class_fraction(arg, request)  # the selector's own parsing (and its error for a bad share)
        if share is not None and share < 1:
            return "class-share"
    return kind


def lookup_kinds(kind: str) -> list[str]:
    """The kinds whose entries a request of `kind` takes, in order: its own, then its fallbacks."""
    out = [kind]
    while out[-1] in FALLBACK_KIND and FALLBACK_KIND[out[-1]] not in out:
        out.append(FALLBACK_KIND[out[-1]])
    return out


def tuning_seeds(first: int, count: int) -> list[int]:
    if count < 1:
        raise UnlearnkitError(f"--sets must be >= 1 tuning forget set, got {count}")
    if first < FIRST_TUNING_SEED:
        raise UnlearnkitError(
            f"--seed-start {first}: tuning seeds must be >= {FIRST_TUNING_SEED}; seeds {EVALUATION_SEEDS.start}-"
            f"{EVALUATION_SEEDS.stop - 1} are evaluation seeds (the bench and leaderboards use 0, 1, 2, ...)"
        )
    return list(range(first, first + count))
