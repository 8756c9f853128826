import math

import numpy as np
import pytest
import torch

from unlearnkit.config import RuntimeConfig, TrainConfig, resolve_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.training import DivergedError, Normalizer, Runtime, TensorSet, Trainer, batches, fit, predict_logits, run_epoch
from unlearnkit.training import loop as loop_module
from unlearnkit.training import runtime as runtime_module
from unlearnkit.training.augment import random_crop, random_flip
from unlearnkit.training.loop import lr_factor


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.uint8).view(2, 3, 6, 6)
    out = random_crop(x, 2, gen)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy : dy + 6, dx : dx + 6] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_flip_flips_about_half_and_only_horizontally():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (400, 1, 4, 4), dtype=torch.uint8)
    out = random_flip(x, gen)
    flipped = [(torch.equal(o, xi.flip(2))) for o, xi in zip(out, x)]
    same = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 150 < sum(flipped) < 250


def test_normalizer_is_computed_from_data():
    images = np.zeros((10, 2, 4, 4), np.uint8)
    images[:, 1] = 255
    images[:5, 0] = 255
    n = Normalizer.fit(images)
    assert n.mean == pytest.approx((0.5, 1.0))
    x = n(torch.from_numpy(images))
    assert x[:, 0].mean().item() == pytest.approx(0.0, abs=1e-6)


def test_batches_cover_the_data_in_eval_and_drop_ragged_in_training():
    rt = Runtime.from_config()
    data = TensorSet(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.arange(10))
    norm = Normalizer((0.0,), (1.0,))
    eval_idx = torch.cat([b.index for b in batches(data, 4, norm, rt)])
    assert eval_idx.tolist() == list(range(10))
    train_idx = [b.index for b in batches(data, 4, norm, rt, seed=1)]
    assert [len(i) for i in train_idx] == [4, 4]
    again = [b.index for b in batches(data, 4, norm, rt, seed=1)]
    assert all(torch.equal(a, b) for a, b in zip(train_idx, again))


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "multistep", "constant"])
def test_lr_schedules(schedule):
    f = [lr_factor(s, 100, schedule, 0.2) for s in range(100)]
    assert max(f) == pytest.approx(1.0)
    if schedule in ("onecycle", "cosine"):
        assert f[0] < 0.1 and f[-1] < 0.06 and f.index(max(f)) == 19
    if schedule == "multistep":  # no milestones: warm-up, then flat
        assert f[0] < 0.1 and f[19:] == [1.0] * 81


def test_multistep_divides_the_lr_by_ten_at_each_milestone_epoch():
    # The cifar10-salun recipe: x0.1 at epochs 91 and 136 of 182, no warm-up, per-step schedule.
    cfg = resolve_config("cifar10-salun").train
    assert (cfg.schedule, cfg.milestones, cfg.warmup_fraction, cfg.nesterov) == ("multistep", "91,136", 0.0, False)
    per_epoch = 175  # 45,000 // 256
    tr = Trainer.from_config(torch.nn.Linear(2, 2), cfg, total_steps=cfg.epochs * per_epoch)
    lr = lambda epoch, step=0: cfg.lr * tr.scheduler.lr_lambdas[0](epoch * per_epoch + step)  # noqa: E731
    assert [lr(0), lr(90, per_epoch - 1), lr(91)] == pytest.approx([0.1, 0.1, 0.01])
    assert [lr(135, per_epoch - 1), lr(136), lr(181, per_epoch - 1)] == pytest.approx([0.01, 0.001, 0.001])


@pytest.mark.parametrize("text", ["91;136", "136,91", "0,50", "91,182"])
def test_bad_milestones_are_one_line_user_errors(text):
    with pytest.raises(UnlearnkitError, match="train.milestones"):
        resolve_config("cifar10-salun", {"train.milestones": text})


def _counting_loss(values):
    """A loss_fn returning the next of `values` (on a real graph) and device-tensor stats."""
    it = iter(values)

    def loss_fn(model, batch):
        out = model(batch)
        loss = out.sum() * 0 + next(it)
        return loss, {"correct": (out[:, 0] > -1e9).sum(), "n": len(batch), "extra": torch.tensor(2.0)}

    return loss_fn


def test_run_epoch_sums_tensor_stats_on_the_device_and_reads_them_back(monkeypatch):
    monkeypatch.setattr(loop_module, "SYNC_SECONDS", 0.0)  # read back after every step: the progress path too
    model = torch.nn.Linear(3, 2)
    tr = Trainer(model, lr=0.01, total_steps=4)
    stats = run_epoch(model, tr, [torch.randn(5, 3) for _ in range(4)], _counting_loss([1.0, 2.0, 3.0, 4.0]),
                      Runtime.from_config(RuntimeConfig(device="cpu")))
    assert stats.loss == pytest.approx(2.5) and stats.acc == 100.0 and stats.samples == 20
    assert stats.extra == {"extra": pytest.approx(2.0)}


@pytest.mark.parametrize("sync_seconds", [0.0, 3600.0])
def test_a_non_finite_loss_raises_at_the_next_read_back(monkeypatch, sync_seconds):
    # Steps do not sync; a NaN is caught at the next read-back, at the latest at the end of the epoch.
    monkeypatch.setattr(loop_module, "SYNC_SECONDS", sync_seconds)
    model = torch.nn.Linear(3, 2)
    tr = Trainer(model, lr=0.01, total_steps=3)
    with pytest.raises(DivergedError, match="loss became nan"):
        run_epoch(model, tr, [torch.randn(5, 3) for _ in range(3)], _counting_loss([1.0, math.nan, 1.0]),
                  Runtime.from_config(RuntimeConfig(device="cpu")))


def test_trainer_mask_freezes_weights_including_weight_decay():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    mask = {"weight": (torch.rand(3, 4) > 0.5).float(), "bias": torch.zeros(3)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tr = Trainer(model, lr=0.5, total_steps=5, weight_decay=0.1, grad_mask=mask)
    for _ in range(5):
        tr.step(model(torch.randn(8, 4)).pow(2).mean())
    frozen = mask["weight"] == 0
    assert torch.equal(model.weight[frozen], before["weight"][frozen])
    assert torch.equal(model.bias, before["bias"])
    assert not torch.equal(model.weight[~frozen], before["weight"][~frozen])


def _toy(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = torch.randint(0, 100, (n, 1, 6, 6), generator=g, dtype=torch.uint8)
    images[labels == 1, :, :3] += 120  # learnable: bright top half = class 1
    return TensorSet(images, labels)


def test_fit_learns_is_deterministic_and_resumes_identically(tmp_path):
    from unlearnkit.models import create_model

    rt = Runtime.from_config()
    data = _toy()
    norm = Normalizer.fit(data.images)
    cfg = TrainConfig(epochs=4, batch_size=32, lr=0.05, crop_padding=1, flip=True)

    def run(checkpoint=None, epochs=None):
        torch.manual_seed(0)
        model = rt.model(create_model("small_cnn", 2, in_channels=1, width=8))
        c = TrainConfig(**{**cfg.__dict__, "epochs": epochs or cfg.epochs})
        hist = fit(model, data, c, rt, norm, seed=5, val=data, checkpoint=checkpoint)
        return model, hist

    a, hist = run()
    assert hist[-1]["val_acc"] > 90
    b, _ = run()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    # Interrupted after 2 of 4 epochs (the schedule already spans 4), then resumed.
    ckpt = tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    model = rt.model(create_model("small_cnn", 2, in_channels=1, width=8))

    class Kill(Exception):
        pass

    def stop_after_two(history):
        if len(history) == 2:
            raise Kill

    with pytest.raises(Kill):
        fit(model, data, cfg, rt, norm, seed=5, checkpoint=ckpt, on_epoch=stop_after_two)
    resumed, hist = run(checkpoint=ckpt)
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), resumed.state_dict().values()))


def test_predict_logits_restores_training_mode():
    rt = Runtime.from_config()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 2)).train()
    out = predict_logits(model, _toy(10), Normalizer((0.0,), (1.0,)), rt, batch_size=3)
    assert out.shape == (10, 2) and model.training


def test_val_probe_logs_a_fixed_subset_per_epoch_and_final_metrics_use_all_of_val(tmp_path, cache_dir):
    import json

    from unlearnkit.config import resolve_config
    from unlearnkit.training.pipeline import train

    res = train(resolve_config("digits", {"train.epochs": 2, "train.val_probe": 50}), tmp_path / "r")
    log = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert all("val_probe_acc" in r and "val_acc" not in r for r in log)
    # 50 samples: every accuracy is a multiple of 2%
    assert all(abs(r["val_probe_acc"] / 2 - round(r["val_probe_acc"] / 2)) < 1e-9 for r in log)
    # ...while the final val_acc counts every held-out sample (for this split it is not a multiple of 2%)
    assert abs(res.metrics["val_acc"] / 2 - round(res.metrics["val_acc"] / 2)) > 1e-9
    assert res.metrics["wall_seconds_this_session"] >= res.metrics["loop_seconds_this_session"] >= res.metrics["train_seconds"]
    # peak memory (max RSS on a CPU, allocated GPU memory on CUDA) is recorded like the methods record it
    run_json = json.loads((tmp_path / "r" / "run.json").read_text())
    assert res.metrics["peak_memory_mb"] > 0 and run_json["peak_memory_mb"] == res.metrics["peak_memory_mb"]


def test_compile_trains_the_same_model_as_eager():
    # runtime.compile=true: torch.compile (inductor, C++ on this CPU) of a tiny model; the module keeps
    # its type and state_dict keys, and a few steps land where eager steps land (up to float reordering).
    def train_once(compile_):
        rt = Runtime.from_config(RuntimeConfig(device="cpu", precision="fp32", channels_last=False, compile=compile_))
        torch.manual_seed(0)
        model = rt.model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 2)))
        cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, crop_padding=0, flip=False)
        fit(model, _toy(64), cfg, rt, Normalizer((0.0,), (1.0,)), seed=1)
        return rt, model

    rt, compiled = train_once(True)
    _, eager = train_once(False)
    assert rt.compile and "compiled" in rt.describe() and type(compiled) is type(eager)
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    for a, b in zip(compiled.state_dict().values(), eager.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compile_without_a_compiler_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(runtime_module.shutil, "which", lambda name: None)
    with pytest.raises(UnlearnkitError, match=r"runtime.compile=true needs a C\+\+ compiler"):
        Runtime.from_config(RuntimeConfig(device="cpu", compile=True))
