"""Inside a method, eval-mode passes run one view; the unlearned model keeps the flip test-time augmentation.

A model built with `flip_tta` averages eval-mode logits over the image and its mirror. Methods'
eval-mode passes (teachers, Fisher, saliency, probes) are statistics of the network, and their
cost estimates count one pass each; a method that ran the mirror too would cost up to twice its
estimate (measured on cifar10-cpu before this rule: ssd 1.8x, bad_teacher 1.6x, gan 1.4x).
"""

from __future__ import annotations

import pytest
import torch

from unlearnkit.config import resolve_config
from unlearnkit.methods import list_methods, unlearn
from unlearnkit.methods.base import get_method
from unlearnkit.models.resnet import ResNet
from unlearnkit.training.pipeline import load_run, train

APPROXIMATE = [m for m in list_methods() if not get_method(m).exact]
CASES = [(m, {}) for m in APPROXIMATE] + [("ssd", {"alpha_search": True, "probe_samples": 50})]


@pytest.fixture(scope="module")
def tta_run(tmp_path_factory):
    """A tiny ResNet with flip TTA on digits (a second or two)."""
    out = tmp_path_factory.mktemp("runs") / "digits-tta"
    train(resolve_config("digits", {"train.epochs": 2, "model.name": "resnet18", "model.width": 4,
                                    "model.flip_tta": True}), out)
    return load_run(out)


class _Views:
    """Counts eval-mode forwards of every ResNet and how many of them also ran the mirror."""

    def __init__(self, monkeypatch):
        self.eval_forwards = 0
        self.mirrored = 0
        forward = ResNet.forward

        def counting(model, x):
            if not model.training:
                self.eval_forwards += 1
                self.mirrored += bool(model.flip_tta)
            return forward(model, x)

        monkeypatch.setattr(ResNet, "forward", counting)


@pytest.mark.parametrize(("method", "hparams"), CASES)
def test_methods_run_eval_passes_on_one_view_and_return_a_model_with_tta(tta_run, monkeypatch, method, hparams):
    views = _Views(monkeypatch)
    split = tta_run.split.with_forget("random:0.1")
    model = tta_run.load_model()
    out = unlearn(model, split, method, normalizer=tta_run.normalizer, runtime=tta_run.runtime,
                  recipe=tta_run.config.train, model_factory=tta_run.fresh_model, seed=0, **hparams)
    assert views.mirrored == 0, f"{method}: {views.mirrored} of {views.eval_forwards} eval-mode passes ran the mirror too"
    assert out.flip_tta and model.flip_tta, f"{method}: the flip TTA flag was not restored"


def test_the_unlearned_model_averages_the_mirror_again(tta_run):
    """Its eval-mode output is the mean over the image and its mirror, as the original's is."""
    split = tta_run.split.with_forget("random:0.1")
    out = unlearn(tta_run.load_model(), split, "ssd", normalizer=tta_run.normalizer, runtime=tta_run.runtime,
                  recipe=tta_run.config.train, model_factory=tta_run.fresh_model, seed=0).eval()
    x = torch.randn(3, out.conv1.in_channels, 8, 8, device=next(out.parameters()).device)
    with torch.no_grad():
        one, mirror, both = out._features_to_logits(x), out._features_to_logits(x.flip(3)), out(x)
    assert torch.allclose(both, 0.5 * (one + mirror), atol=1e-5)
    assert not torch.allclose(both, one), "a non-symmetric input should change with the mirror view"
