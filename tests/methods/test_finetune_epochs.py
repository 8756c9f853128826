"""finetune's fractional epochs: round(epochs x steps per epoch) optimizer steps, cosine over them."""

from __future__ import annotations

import pytest

from unlearnkit.methods import finetune as ft
from unlearnkit.methods import forget_run, make_hparams
from unlearnkit.training.data import steps_per_epoch


@pytest.fixture()
def counted(monkeypatch):
    """Counts every optimizer step of finetune, and the schedule length it was given."""
    seen = {"steps": 0, "total": []}
    real_step, real_from = ft.Trainer.step, ft.Trainer.from_config.__func__

    def step(self, loss):
        seen["steps"] += 1
        return real_step(self, loss)

    def from_config(cls, model, cfg, total_steps, **kw):
        seen["total"].append(total_steps)
        return real_from(cls, model, cfg, total_steps, **kw)

    monkeypatch.setattr(ft.Trainer, "step", step)
    monkeypatch.setattr(ft.Trainer, "from_config", classmethod(from_config))
    return seen


def _per_epoch(run) -> int:
    import json

    counts = json.loads((run / "split.json").read_text())["counts"]
    return steps_per_epoch(counts["retain"], make_hparams("finetune").batch_size)


@pytest.mark.parametrize("epochs", [0.5, 1.0, 1.5])
def test_fractional_epochs_run_that_share_of_the_steps(digits_run, tmp_path, counted, epochs):
    out = tmp_path / "ft"
    forget_run(digits_run, "finetune", "random:0.1", out, hparams={"epochs": epochs})
    per_epoch = _per_epoch(out)
    assert per_epoch >= 4  # digits: enough steps for half an epoch to differ from one
    assert counted["steps"] == round(epochs * per_epoch) == counted["total"][0]


def test_half_an_epoch_is_half_the_steps_of_one(digits_run, tmp_path, counted):
    forget_run(digits_run, "finetune", "random:0.1", tmp_path / "one", hparams={"epochs": 1})
    one = counted["steps"]
    forget_run(digits_run, "finetune", "random:0.1", tmp_path / "half", hparams={"epochs": 0.5})
    assert counted["steps"] - one == round(one / 2)


def test_cost_is_the_epochs_and_the_shipped_integer_values_still_load():
    hp = make_hparams("finetune", {"epochs": 1})  # what the shipped digits entries hold
    assert hp.epochs == 1.0 and isinstance(hp.epochs, float)
    assert ft.Finetune().cost(make_hparams("finetune", {"epochs": 0.4}), {}, None) == pytest.approx(0.4)
    assert ft.finetune_steps(0.001, 10) == 1  # never zero steps
