import pytest

from unlearnkit.config import PRESETS, RunConfig, flatten, resolve_config
from unlearnkit.errors import UnlearnkitError


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_resolves_and_round_trips(name):
    cfg = resolve_config(name)
    assert cfg.preset == name
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_set_overrides_are_typed():
    cfg = resolve_config("digits", ["train.epochs=3", "train.lr=0.5", "train.flip=true", "data.labels_csv=none", "seed=7"])
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.flip, cfg.data.labels_csv, cfg.seed) == (3, 0.5, True, None, 7)
    assert isinstance(cfg.train.lr, float)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown setting 'train.epoch'.*train.epochs"),
        ("nope.x=1", "unknown setting 'nope.x'"),
        ("train.epochs=three", "train.epochs expects an integer, got 'three'"),
        ("train.epochs=2.5", "train.epochs expects an integer"),
        ("train.lr=fast", "train.lr expects a number"),
        ("train.flip=maybe", "train.flip expects true or false"),
        ("train=3", "'train' is a section"),
        ("train.epochs", "not KEY=VALUE"),
        ("train.schedule=linear", "train.schedule='linear' is not valid"),
        ("data.val_fraction=1.5", "data.val_fraction must be between 0 and 1"),
        ("train.epochs=0", "train.epochs must be > 0"),
        ("runtime.device=tpu", "runtime.device='tpu' is not valid"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(UnlearnkitError, match=message):
        resolve_config("digits", [override])


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(UnlearnkitError, match="unknown preset 'cifar11'.*cifar10-cpu"):
        resolve_config("cifar11")


def test_from_dict_rejects_unknown_keys_and_types():
    d = resolve_config("digits").to_dict()
    d["train"]["epochz"] = 3
    with pytest.raises(UnlearnkitError, match="unknown key 'epochz'"):
        RunConfig.from_dict(d)
    d = resolve_config("digits").to_dict()
    d["train"]["epochs"] = "ten"
    with pytest.raises(UnlearnkitError, match="config.train.epochs expects an integer"):
        RunConfig.from_dict(d)


def test_flatten_lists_every_leaf():
    flat = flatten(resolve_config("cifar10-cpu"))
    assert flat["model.width"] == 16 and flat["model.name"] == "resnet18"
    assert all("." in k or k in ("preset", "seed") for k in flat)
