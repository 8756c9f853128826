"""Review fixes in the plain API: a TrainConfig recipe, the seed and the device are checked like
their CLI forms, before any data are read. Each test failed before its fix."""

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import unlearnkit as uk
from unlearnkit.config import TrainConfig
from unlearnkit.errors import UnlearnkitError


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


class Untouchable(Dataset):
    """A dataset that fails if read: the checks must come before the data are."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        raise AssertionError("the data were read before the bad argument was refused")


def _sets():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(24, 1, 6, 6, generator=g), torch.arange(24) % 3
    return TensorDataset(x[:16], y[:16]), TensorDataset(x[16:], y[16:])


@pytest.mark.parametrize("recipe, pattern", [
    (TrainConfig(epochs=0), r"train.epochs=0 is out of range: it must be >= 1"),
    (TrainConfig(lr=-1.0), r"train.lr=-1.0 is out of range"),
    (TrainConfig(epochs="1", batch_size="8"), None),  # coerced like {"epochs": "1"}: valid
    (TrainConfig(epochs="x"), r"train.epochs expects an integer, got 'x'"),
    ({"epochs": 0}, r"train.epochs=0 is out of range"),
    (["epochs", 1], r"recipe= is a list; pass a TrainConfig or a dict"),
])
def test_a_train_config_recipe_is_validated_like_the_dict_form(recipe, pattern):
    if pattern is None:
        retain, forget = _sets()
        out = uk.unlearn(_model(), forget=forget, retain=retain, method="retrain", recipe=recipe, device="cpu")
        assert isinstance(out, nn.Sequential)
        return
    with pytest.raises(UnlearnkitError, match=pattern) as err:
        uk.unlearn(_model(), forget=Untouchable(), retain=Untouchable(), method="retrain", recipe=recipe, device="cpu")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, True])
def test_a_bad_seed_is_refused_like_the_cli(seed):
    with pytest.raises(UnlearnkitError, match=r"unlearn: seed=.* is not valid; give an integer in \[0, 2\*\*64 - 1\]"):
        uk.unlearn(_model(), forget=Untouchable(), retain=Untouchable(), method="finetune", seed=seed, device="cpu")
    with pytest.raises(UnlearnkitError, match=r"audit: seed=.* is not valid"):
        uk.audit(_model(), forget=Untouchable(), retain=Untouchable(), test=Untouchable(), seed=seed, device="cpu")


def test_a_bad_or_absent_device_is_one_line_naming_the_argument(monkeypatch):
    with pytest.raises(UnlearnkitError, match=r"^device='cuda:x' is not valid; use auto, cpu, cuda, cuda:N"):
        uk.unlearn(_model(), forget=Untouchable(), retain=Untouchable(), method="finetune", device="cuda:x")
    if not torch.backends.mps.is_available():
        with pytest.raises(UnlearnkitError, match=r"^device='mps' but MPS .* use device='cpu'"):
            uk.unlearn(_model(), forget=Untouchable(), retain=Untouchable(), method="finetune", device="mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", torch.backends.cuda.matmul.allow_tf32)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", torch.backends.cudnn.allow_tf32)
    with pytest.raises(UnlearnkitError, match=r"^device='cuda:2' but this machine has 2 CUDA device\(s\)"):
        uk.unlearn(_model(), forget=Untouchable(), retain=Untouchable(), method="finetune", device=torch.device("cuda", 2))


class _Scaled(nn.Module):
    """A model with a parameter of its own (like a ViT's position embedding): no reset_parameters covers it."""

    def __init__(self):
        super().__init__()
        self.body = _model()
        self.temperature = nn.Parameter(torch.tensor(5.0))

    def forward(self, x):
        return self.body(x) / self.temperature


def test_retrain_refuses_a_parameter_it_cannot_reinitialise_and_takes_a_factory():
    retain, forget = _sets()
    with pytest.raises(UnlearnkitError, match=r"cannot re-initialise parameter 'temperature' .*model_factory=") as err:
        uk.unlearn(_Scaled(), forget=forget, retain=retain, method="retrain", recipe={"epochs": 1}, device="cpu")
    assert "\n" not in str(err.value)
    made = []

    def fresh(seed):
        made.append(seed)
        torch.manual_seed(seed)
        return _Scaled()

    out = uk.unlearn(_Scaled(), forget=forget, retain=retain, method="retrain", recipe={"epochs": 1}, device="cpu",
                     model_factory=fresh)
    assert made == [0] and isinstance(out, _Scaled)  # one fresh model, from the run's seed
    # A model whose every parameter has a reset_parameters() needs no factory.
    assert isinstance(uk.unlearn(_model(), forget=forget, retain=retain, method="retrain", recipe={"epochs": 1},
                                 device="cpu"), nn.Sequential)
