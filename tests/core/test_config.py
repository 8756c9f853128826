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
        ("train.schedule=linear", "train.schedule='linear' is out of range: it must be one of onecycle, cosine, multistep, constant"),
        ("data.val_fraction=1.5", r"data.val_fraction=1.5 is out of range: it must be in \(0, 1\)"),
        ("train.epochs=0", "train.epochs=0 is out of range: it must be >= 1"),
        # Non-finite values pass `x < 0` checks (NaN compares false): the declared ranges reject them.
        ("train.lr=inf", "train.lr=inf is out of range: it must be a finite number"),
        ("train.lr=1e4", r"train.lr=10000.0 is out of range: it must be in \(0, 10\]"),
        ("train.momentum=nan", "train.momentum=nan is out of range: it must be a finite number"),
        ("train.momentum=1", r"train.momentum=1.0 is out of range: it must be in \[0, 1\)"),
        ("train.weight_decay=nan", "train.weight_decay=nan is out of range"),
        ("train.weight_decay=-1e-4", "train.weight_decay=-0.0001 is out of range"),
        ("train.label_smoothing=2", r"train.label_smoothing=2.0 is out of range: it must be in \[0, 1\)"),
        ("train.warmup_fraction=1", "train.warmup_fraction=1.0 is out of range"),
        ("train.val_probe=-1", "train.val_probe=-1 is out of range: it must be >= 0"),
        ("model.width=0", "model.width=0 is out of range"),
        ("seed=-1", r"seed=-1 is out of range: it must be in \[0, 4294967295\]"),
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


def test_every_single_value_rule_is_declared_on_its_field():
    """validate's ranges come from the `param(...)` declarations (one place), not from lists beside them."""
    from unlearnkit.config import DataConfig, TrainConfig
    from unlearnkit.params import specs

    train, data = specs(TrainConfig), specs(DataConfig)
    assert train["lr"].rule() == "in (0, 10]" and train["label_smoothing"].rule() == "in [0, 1)"
    assert train["schedule"].choices == ("onecycle", "cosine", "multistep", "constant")
    assert data["val_fraction"].rule() == "in (0, 1)"
