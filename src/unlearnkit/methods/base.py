"""The method interface and registry.

A method is one small module: a `Method` subclass with a hyperparameter dataclass (defaults
documented with their source paper) and a `run` that writes only what makes the method
different — its loss or its update. Optimiser, schedule, epochs loop, progress bar and device
come from `unlearnkit.training`; data come from the `MethodContext`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from torch import nn

from unlearnkit.config import TrainConfig, coerce
from unlearnkit.data.splits import Split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.params import check_fields, check_search_space
from unlearnkit.plugins import METHODS_GROUP, load_plugin, plugin_names
from unlearnkit.training.data import Normalizer, TensorSet
from unlearnkit.training.runtime import Runtime


@dataclass
class MethodContext:
    """Everything a method may use besides the model it edits."""

    split: Split  # with the forget set selected
    normalizer: Normalizer
    runtime: Runtime
    original: nn.Module  # frozen copy of the model before unlearning (eval mode, no grad): teachers use it
    recipe: TrainConfig  # the original run's training recipe (retrain reuses it)
    model_factory: Callable[[int], nn.Module]  # seed -> freshly initialised model on the device
    seed: int = 0
    checkpoint: Path | None = None  # where long methods (retrain) keep resumable state
    # What a method decided while it ran (ssd's searched alpha, the step a stop gate ended at):
    # `forget` writes it to metrics.json as "method_report", so a run says what it actually did.
    report: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, TensorSet] = field(default_factory=dict, repr=False)

    def data(self, part: str) -> TensorSet:
        """retain / forget / val / train / test as an on-device TensorSet (built once)."""
        if part == "test":
            # The test set is for the final evaluation only; a method that trains or tunes on it
            # would make its test accuracy meaningless.
            raise UnlearnkitError("methods may not use the test split; use the validation split (`val`) for held-out data")
        if part not in self._cache:
            p = self.split.part(part)
            if len(p.labels) == 0:
                raise UnlearnkitError(f"this method needs the {part!r} split, which is empty for this run")
            self._cache[part] = TensorSet.from_numpy(p.images, p.labels, self.runtime)
        return self._cache[part]

    @property
    def num_classes(self) -> int:
        return self.split.num_classes


class Method:
    """Subclass, set the class attributes, implement `run`, decorate with `@register_method`."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for `unlearnkit methods`
    paper: ClassVar[str]  # where the algorithm and the default hyperparameters come from
    exact: ClassVar[bool] = False  # True only for retraining from scratch
    # Raised when a code change alters what the method computes for hyperparameters it already had:
    # bench store keys and run records carry it (from 1 on), so results of the older code are
    # re-run, and an interrupted run of it is not resumed with the new code.
    revision: ClassVar[int] = 0
    # What each revision changed, one line per number 1..revision: shown beside a tuned entry that
    # was searched with an older revision (`unlearnkit methods NAME`, forget's warning).
    changes: ClassVar[dict[int, str]] = {}
    Hparams: ClassVar[type]  # a dataclass; every field has a default, declared with `unlearnkit.params.param`

    def run(self, model: nn.Module, ctx: MethodContext, hp) -> nn.Module:
        raise NotImplementedError

    def cost(self, hp, sizes: dict[str, int], recipe: TrainConfig) -> float | None:
        """Estimated cost in retain-epoch equivalents (REE: one forward+backward pass over retain).

        `sizes` holds the sample counts of `retain`, `forget` and `val`. The tuner keeps an
        approximate method's search inside its budget (a share of the recipe's `epochs` REE that
        retraining costs) with this estimate; None means unknown (no budget is enforced).
        """
        return None

    # Fields of a method with a forget objective (`dualoptim.OptimizerParams`) that only the shared
    # SGD reads: a method whose loss has no retain part leaves that SGD unstepped under dualoptim.
    dualoptim_inert: ClassVar[tuple[str, ...]] = ()

    def inert_fields(self, hp) -> dict[str, str]:
        """{field: why} for the hyperparameters that have no effect with these values (the others
        make them inert); `unlearn` warns when the user sets one. By default: the optimiser's
        (`dualoptim.optimizer_inert`) and each field whose `search_if=(field, value)` condition does
        not hold — the declaration that keeps it out of a search also says the method does not read it."""
        from unlearnkit.methods.dualoptim import optimizer_inert  # noqa: PLC0415
        from unlearnkit.params import specs  # noqa: PLC0415

        inert = {}
        for name, spec in specs(hp).items():
            if spec.search_if is not None and getattr(hp, spec.search_if[0]) != spec.search_if[1]:
                field, value = spec.search_if
                shown = str(value).lower() if isinstance(value, bool) else value
                inert[name] = f"only method.{field}={shown} reads it; set that too, or leave it out"
        return {**inert, **optimizer_inert(hp, self.dualoptim_inert)}


_METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    if cls.name in _METHODS:
        raise ValueError(f"method {cls.name!r} is registered twice")
    if not dataclasses.is_dataclass(cls.Hparams):
        raise TypeError(f"{cls.__name__}.Hparams must be a dataclass")
    check_search_space(cls.Hparams, f"method {cls.name!r}")  # a declaration error, caught at import
    _METHODS[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    # Installed plugins (entry point group unlearnkit.methods) follow the built-in methods.
    return list(_METHODS) + [n for n in plugin_names(METHODS_GROUP) if n not in _METHODS]


def get_method(name: str) -> type[Method]:
    if name not in _METHODS and not load_plugin(METHODS_GROUP, name, _METHODS, register_method):
        raise UnlearnkitError(f"unknown method {name!r}; choose one of: {', '.join(_METHODS)} (see `unlearnkit methods`)")
    return _METHODS[name]


def hparam_defaults(name: str) -> dict[str, object]:
    return dataclasses.asdict(get_method(name).Hparams())


def make_hparams(name: str, values: dict[str, object] | None = None):
    """The method's hyperparameters with `values` applied; unknown names and wrong types are user errors.

    Keys may be written `lr` or `method.lr` (the CLI's `--set method.lr=0.01`).
    """
    cls = get_method(name).Hparams
    hints = typing.get_type_hints(cls)
    hp = cls()
    for key, value in (values or {}).items():
        short = key.removeprefix("method.")
        if short not in hints:
            raise UnlearnkitError(
                f"method {name!r} has no hyperparameter {short!r}; valid: {', '.join(hints)} (see `unlearnkit methods {name}`)"
            )
        setattr(hp, short, coerce(value, hints[short], f"method.{short}"))
    # Ranges come from each field's one declaration (`param(...)`); `validate` adds the
    # cross-field rules a single range cannot express.
    check_fields(hp, "method.")
    check = getattr(hp, "validate", None)
    if check is not None:
        check()
    return hp
