"""Cutout (train.cutout): the batched op, its generator use, its config field and the recipe hashes."""

import json
from pathlib import Path

import pytest
import torch

from helpers import assert_one_line_error, run_cli
from unlearnkit.config import LATE_FIELDS, RunConfig, flatten, resolve_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.training import Normalizer, Runtime, TensorSet, batches
from unlearnkit.training.augment import augment, random_crop, random_cutout, random_flip
from unlearnkit.training.data import cutout_fill
from unlearnkit.tuning import defaults

DEFAULTS_DIR = Path(defaults.__file__).resolve().parent
FILL = (10, 20, 30)


def _expected_mask(cy: torch.Tensor, cx: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """The clipped squares, one image at a time (the slow, obvious way)."""
    mask = torch.zeros(len(cy), h, w, dtype=torch.bool)
    for i, (y, x) in enumerate(zip(cy.tolist(), cx.tolist())):
        y0, x0 = y - size // 2, x - size // 2
        mask[i, max(0, y0) : max(0, min(h, y0 + size)), max(0, x0) : max(0, min(w, x0 + size))] = True
    return mask


@pytest.mark.parametrize("size", [1, 4, 5, 8])
def test_each_image_gets_one_clipped_square_at_the_drawn_centre(size):
    b, c, h, w = 64, 3, 8, 10
    x = torch.full((b, c, h, w), 200, dtype=torch.uint8)  # constant, and no channel equals its fill value
    out = random_cutout(x, size, torch.Generator().manual_seed(3), FILL)
    assert out.shape == x.shape and out.dtype == torch.uint8 and out.device == x.device
    # The centres as random_cutout draws them: rows, then columns, from the same seed.
    gen = torch.Generator().manual_seed(3)
    cy, cx = torch.randint(0, h, (b,), generator=gen), torch.randint(0, w, (b,), generator=gen)
    mask = _expected_mask(cy, cx, size, h, w)
    for ch, value in enumerate(FILL):
        assert torch.equal(out[:, ch] == value, mask)  # the fill exactly on the square, per channel
        assert torch.equal(out[:, ch] == 200, ~mask)  # the image untouched elsewhere
    # Clipped size: rows x columns of the square inside the image.
    y0, x0 = cy - size // 2, cx - size // 2
    rows = (y0 + size).clamp(max=h) - y0.clamp(min=0)
    cols = (x0 + size).clamp(max=w) - x0.clamp(min=0)
    assert torch.equal(mask.sum((1, 2)), rows * cols)
    assert (rows * cols < size * size).any() or size == 1  # some squares were clipped at the border
    assert len({(y, x) for y, x in zip(cy.tolist(), cx.tolist())}) > b // 2  # positions differ across images


def test_cutout_keeps_channels_last_layout_and_fills_zero_without_a_fill():
    x = torch.full((4, 3, 6, 6), 7, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
    out = random_cutout(x, 3, torch.Generator().manual_seed(0))
    assert out.is_contiguous(memory_format=torch.channels_last) and out.dtype == torch.uint8
    assert ((out == 0).sum((1, 2, 3)) > 0).all() and set(out.unique().tolist()) == {0, 7}


def test_same_seed_same_output_and_another_seed_differs():
    x = torch.randint(0, 256, (32, 3, 12, 12), dtype=torch.uint8)
    a = augment(x, 2, True, torch.Generator().manual_seed(5), cutout=6, fill=FILL)
    b = augment(x, 2, True, torch.Generator().manual_seed(5), cutout=6, fill=FILL)
    c = augment(x, 2, True, torch.Generator().manual_seed(6), cutout=6, fill=FILL)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, augment(x, 2, True, torch.Generator().manual_seed(5)))  # cutout changed something


@pytest.mark.parametrize("padding,flip", [(2, True), (0, True), (3, False)])
def test_cutout_zero_is_bit_identical_and_draws_nothing(padding, flip):
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    g_old, g_plain, g_new = (torch.Generator().manual_seed(11) for _ in range(3))
    old = random_crop(x, padding, g_old)  # what augment did before cutout existed
    old = random_flip(old, g_old) if flip else old
    plain = augment(x, padding, flip, g_plain)
    new = augment(x, padding, flip, g_new, cutout=0, fill=FILL)
    assert torch.equal(old, plain) and torch.equal(old, new)
    assert torch.equal(g_old.get_state(), g_plain.get_state()) and torch.equal(g_old.get_state(), g_new.get_state())
    g_on = torch.Generator().manual_seed(11)
    augment(x, padding, flip, g_on, cutout=2)
    assert not torch.equal(g_old.get_state(), g_on.get_state())  # the state check above can fail


def test_batches_fill_with_the_splits_mean_colour_and_default_to_no_cutout():
    rt = Runtime.from_config()
    images = torch.full((8, 3, 6, 6), 250, dtype=torch.uint8)
    data = TensorSet(images, torch.arange(8))
    norm = Normalizer((0.2, 0.5, 1.0), (1.0, 1.0, 1.0))
    assert cutout_fill(norm, torch.device("cpu")).tolist() == [51, 128, 255]  # round(mean * 255)
    plain = [bt.x for bt in batches(data, 4, norm, rt, seed=1)]
    assert plain and all(torch.equal(p, q.x) for p, q in zip(plain, batches(data, 4, norm, rt, seed=1, cutout=0)))
    for bt in batches(data, 4, norm, rt, seed=1, cutout=3):
        raw = (bt.x * 255 + torch.tensor(norm.mean).view(1, 3, 1, 1) * 255).round()  # back to uint8 units
        filled = raw[:, 0] != 250
        assert (filled.sum((1, 2)) > 0).all()
        assert torch.equal(raw[:, 0][filled], torch.full_like(raw[:, 0][filled], 51))
        assert torch.equal(raw[:, 1][filled], torch.full_like(raw[:, 1][filled], 128))


def test_a_cutout_larger_than_the_images_is_one_line_naming_the_setting():
    rt = Runtime.from_config()
    data = TensorSet(torch.zeros(8, 1, 6, 6, dtype=torch.uint8), torch.arange(8))
    with pytest.raises(UnlearnkitError, match=r"^train\.cutout=7 is larger than the 6x6 training images; use at most 6") as err:
        next(iter(batches(data, 4, Normalizer((0.0,), (1.0,)), rt, seed=1, cutout=7)))
    assert "\n" not in str(err.value)
    assert next(iter(batches(data, 4, Normalizer((0.0,), (1.0,)), rt, seed=1, cutout=6))).x.shape == (4, 1, 6, 6)


def test_cli_refuses_an_oversized_cutout_on_digits(capsys, tmp_path, cache_dir):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--out", out, "--set", "train.epochs=1", "--set", "train.cutout=9")
    assert_one_line_error(code, err, r"train\.cutout=9 is larger than the 8x8 training images")


def test_a_negative_cutout_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--out", str(out), "--set", "train.cutout=-1")
    assert_one_line_error(code, err, r"train\.cutout=-1 is out of range")
    assert not out.exists()
    with pytest.raises(UnlearnkitError, match=r"train\.cutout=-1 is out of range"):
        resolve_config("digits", ["train.cutout=-1"])


@pytest.mark.parametrize("preset", ["cifar10-cpu", "digits"])
def test_recorded_tuned_default_hashes_still_match_and_a_set_cutout_changes_them(preset):
    recorded = {e["recipe_hash"] for e in json.loads((DEFAULTS_DIR / f"{preset}.json").read_text())["entries"]}
    assert len(recorded) == 1
    cfg = resolve_config(preset)
    assert defaults.recipe_hash(cfg) in recorded
    assert "train.cutout" not in defaults.weight_recipe(cfg)
    cut = resolve_config(preset, ["train.cutout=8"])
    assert defaults.weight_recipe(cut)["train.cutout"] == 8
    assert defaults.recipe_hash(cut) not in recorded
    # A config.json dict (what resolve() is given for a stored run) hashes like the dataclass.
    assert defaults.recipe_hash(cfg.to_dict()) == defaults.recipe_hash(cfg)
    assert defaults.recipe_hash(cut.to_dict()) == defaults.recipe_hash(cut)


def test_recipe_leaves_late_fields_out_only_at_their_default():
    cfg = resolve_config("cifar10-cpu")
    assert "cutout" not in cfg.recipe()["train"] and "cutout" not in cfg.resume_recipe()["train"]
    assert cfg.to_dict()["train"]["cutout"] == 0  # config.json still records everything
    cut = resolve_config("cifar10-cpu", ["train.cutout=8"])
    assert cut.recipe()["train"]["cutout"] == 8 and cut.resume_recipe()["train"]["cutout"] == 8
    # The recipe of a run recorded before the field existed equals today's at the default.
    old = cfg.to_dict()
    del old["train"]["cutout"]
    old.pop("runtime")
    assert cfg.recipe() == old
    assert RunConfig.from_dict(cfg.to_dict()).recipe() == cfg.recipe()
    assert "cutout" in cfg.to_dict()["train"]  # recipe() did not mutate anything it shares


def test_late_fields_name_real_settings_with_their_defaults():
    flat = flatten(RunConfig())
    for key, default in LATE_FIELDS.items():
        assert key in flat and flat[key] == default and type(flat[key]) is type(default)


def test_training_epochs_use_the_configs_cutout():
    from unlearnkit.config import TrainConfig
    from unlearnkit.training.loop import epoch_batches

    rt = Runtime.from_config()
    data = TensorSet(torch.full((8, 1, 6, 6), 200, dtype=torch.uint8), torch.arange(8))
    norm = Normalizer((0.0,), (1.0,))
    on = [b.x for b in epoch_batches(data, TrainConfig(batch_size=4, crop_padding=0, flip=False, cutout=2), norm, rt, 0, "t", 0)]
    off = [b.x for b in epoch_batches(data, TrainConfig(batch_size=4, crop_padding=0, flip=False), norm, rt, 0, "t", 0)]
    assert all(((x == 0).sum((1, 2, 3)) > 0).all() for x in on)  # fill 0 = this split's mean colour
    assert all(torch.allclose(x, torch.full_like(x, 200 / 255)) for x in off)


@pytest.mark.parametrize("recorded_cutout", ["absent", 0])
def test_resume_accepts_a_run_recorded_before_or_at_the_default_and_refuses_another_cutout(tmp_path, recorded_cutout):
    from unlearnkit.runs import prepare_out_dir

    cfg = resolve_config("digits")
    saved = cfg.to_dict()
    if recorded_cutout == "absent":
        del saved["train"]["cutout"]  # a config.json written before train.cutout existed
    (tmp_path / "config.json").write_text(json.dumps(saved))
    # Past the config check: the next one finds the directory holds no split yet.
    with pytest.raises(UnlearnkitError, match="no split.json"):
        prepare_out_dir(tmp_path, resume=True, recipe=cfg.resume_recipe())
    with pytest.raises(UnlearnkitError, match=r"another config \(train\.cutout"):
        prepare_out_dir(tmp_path, resume=True, recipe=resolve_config("digits", ["train.cutout=4"]).resume_recipe())
