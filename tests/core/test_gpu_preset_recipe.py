"""The `cifar10-resnet18` recipe does what its preset says (issue #11's review of its 90.6% on a GPU).

Each test runs the code path of a GPU run on the CPU (the same functions: on CUDA only the
generator's device differs): augmentation per sample and per epoch, weight decay on every
parameter, BatchNorm's modes, the LR schedule, label smoothing, flip TTA and the normalisation
shared by training and evaluation.
"""

import pytest
import torch
import torch.nn.functional as F

from unlearnkit.config import resolve_config
from unlearnkit.models.resnet import resnet18
from unlearnkit.training import Normalizer, Runtime, TensorSet, Trainer, batches, predict_logits, run_epoch
from unlearnkit.training.data import steps_per_epoch
from unlearnkit.training.loop import cross_entropy_loss, epoch_batches

CFG = resolve_config("cifar10-resnet18")
RT = Runtime.from_config()  # the CPU here; channels_last as in the preset
IDENTITY = Normalizer((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _distinct_images(n: int, size: int = 12) -> TensorSet:
    """Images whose every pixel differs from its neighbours, so any shift or mirror is visible."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 255, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return TensorSet(images, torch.arange(n) % 10)


def _how_augmented(out: torch.Tensor, original: torch.Tensor, pad: int) -> tuple[int, int, bool]:
    """(dy, dx, flipped) of the crop window of the zero-padded image that `out` is."""
    padded = F.pad(original.float(), (pad, pad, pad, pad))
    h, w = original.shape[-2:]
    for flipped in (False, True):
        want = out.flip(-1) if flipped else out
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                if torch.equal(padded[:, dy : dy + h, dx : dx + w], want):
                    return dy, dx, flipped
    raise AssertionError("the augmented image is no crop (or mirrored crop) of its original")


def test_crop_and_flip_are_drawn_per_sample_and_per_epoch():
    assert (CFG.train.crop_padding, CFG.train.flip, CFG.train.cutout) == (4, True, 8)
    data = _distinct_images(64)  # crop and flip alone here (Cutout's squares: tests/core/test_cutout.py)
    seen: dict[int, list[tuple[int, int, bool]]] = {}
    for epoch in range(3):
        for b in epoch_batches(data, CFG.train.__class__(**{**CFG.train.__dict__, "batch_size": 32, "cutout": 0}), IDENTITY, RT,
                               seed=CFG.seed, tag="train", epoch=epoch):
            how = [_how_augmented((x * 255.0).round(), data.images[i], 4) for x, i in zip(b.x, b.index.tolist())]
            # Within one batch: many different windows and both flip states (not one draw per batch).
            assert len({(dy, dx) for dy, dx, _ in how}) > 10
            assert 0 < sum(f for *_, f in how) < len(how)
            for i, h in zip(b.index.tolist(), how):
                seen.setdefault(i, []).append(h)
    # Across epochs: a sample is augmented afresh (not once for the whole run).
    assert sum(len(set(v)) > 1 for v in seen.values()) > 0.8 * len(seen)


def test_weight_decay_reaches_every_parameter_at_the_presets_value():
    torch.manual_seed(0)
    model = resnet18(10, width=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lr, wd = CFG.train.lr, CFG.train.weight_decay
    assert (lr, wd, CFG.train.momentum, CFG.train.nesterov) == (0.4, 5e-4, 0.9, True)
    tr = Trainer.from_config(model, CFG.train, total_steps=1000)
    tr.optimizer.param_groups[0]["lr"] = lr  # past warm-up: the peak LR
    # A loss with zero gradient: the only update is the decay, p -= lr * (1 + momentum) * wd * p (Nesterov, step 1).
    tr.step(sum(p.sum() for p in model.parameters()) * 0.0)
    kinds = set()
    for n, p in model.named_parameters():
        expected = before[n] * (1 - lr * (1 + 0.9) * wd)
        assert torch.allclose(p.detach(), expected, rtol=1e-6, atol=1e-9), n
        kinds.add("bn" if "bn" in n or "downsample.1" in n else n.split(".")[-1])
    assert {"weight", "bias", "bn"} <= kinds  # conv/fc weights, the fc bias and BatchNorm's affine parameters


def test_batchnorm_trains_in_train_mode_and_predicts_in_eval_mode():
    modes = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = torch.nn.BatchNorm2d(3)
            self.fc = torch.nn.Linear(3 * 12 * 12, 10)

        def forward(self, x):
            modes.append(self.bn.training)
            return self.fc(torch.flatten(self.bn(x), 1))

    model = Spy().eval()  # whatever mode it comes in
    data = _distinct_images(64)
    tr = Trainer.from_config(model, CFG.train, total_steps=2)
    run_epoch(model, tr, batches(data, 32, IDENTITY, RT, seed=0, crop_padding=4, flip=True), cross_entropy_loss(0.1), RT)
    assert modes == [True, True]
    stats = model.bn.running_mean.clone()
    modes.clear()
    predict_logits(model, data, IDENTITY, RT, 16)
    assert modes == [False] * 4 and torch.equal(model.bn.running_mean, stats)  # eval: running stats used, not updated


def test_lr_schedule_is_the_presets_warm_up_then_linear_decay():
    assert (CFG.train.schedule, CFG.train.warmup_fraction, CFG.train.epochs, CFG.train.batch_size) == ("onecycle", 0.1, 45, 512)
    per_epoch = steps_per_epoch(45_000, CFG.train.batch_size)  # 88: 45k training images (val_fraction 0.1)
    total = CFG.train.epochs * per_epoch
    tr = Trainer.from_config(torch.nn.Linear(2, 2), CFG.train, total_steps=total)
    lr = [CFG.train.lr * tr.scheduler.lr_lambdas[0](s) for s in range(total)]
    warm = round(0.1 * total)
    assert lr[0] == pytest.approx(0.4 / warm) and lr[warm - 1] == pytest.approx(0.4) and max(lr) == pytest.approx(0.4)
    assert lr[warm + (total - warm) // 2] == pytest.approx(0.2, abs=0.01)
    assert lr[-1] == pytest.approx(0.4 / (total - warm), rel=0.01)  # the last step's LR: one step above zero
    assert all(a >= b for a, b in zip(lr[warm:], lr[warm + 1 :]))


def test_label_smoothing_is_the_standard_mixture_with_the_uniform_target():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 10)
    x, y = torch.randn(16, 4), torch.randint(0, 10, (16,))
    loss, stats = cross_entropy_loss(CFG.train.label_smoothing)(model, type("B", (), {"x": x, "y": y})())
    logp = model(x).log_softmax(1)
    target = torch.full_like(logp, 0.1 / 10).scatter_(1, y[:, None], 0.9 + 0.1 / 10)
    assert loss.item() == pytest.approx(-(target * logp).sum(1).mean().item(), rel=1e-6)
    assert stats["n"] == 16


def test_flip_tta_averages_the_mirror_in_eval_only():
    assert CFG.model.flip_tta
    torch.manual_seed(0)
    model = resnet18(10, width=4, flip_tta=True)
    plain = resnet18(10, width=4)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 16, 16)
    model.train(), plain.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(1)
    assert torch.equal(a, plain(x))  # training: one plain pass
    model.eval(), plain.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), 0.5 * (plain(x) + plain(x.flip(3))), atol=1e-6)


def test_evaluation_normalises_exactly_as_training_does():
    data = _distinct_images(8)
    norm = Normalizer.fit(data.images)
    train = next(batches(data, 8, norm, RT, seed=0))  # no augmentation: only shuffled
    evals = next(batches(data, 8, norm, RT))
    assert torch.equal(train.x, evals.x[train.index])
    assert train.x.mean(dim=(0, 2, 3)).abs().max() < 1e-5  # the training split's own statistics
