"""The plain API: unlearnkit.unlearn / unlearnkit.audit over any classifier and torch datasets."""

import re
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import unlearnkit as uk
from unlearnkit.errors import UnlearnkitError

REPO = Path(__file__).resolve().parents[2]


def tiny_model(classes=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, classes))


def tiny_sets(n=72, classes=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 6, 6, generator=g)
    y = torch.arange(n) % classes
    x[:, 0, :3, :3] += 2.0 * y[:, None, None]
    return (TensorDataset(x[:40], y[:40]), TensorDataset(x[40:48], y[40:48]), TensorDataset(x[48:60], y[48:60]),
            TensorDataset(x[60:], y[60:]))


@pytest.mark.parametrize("method", uk.list_methods())
def test_every_method_works_through_the_plain_api(method):
    retain, forget, val, _ = tiny_sets()
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kwargs = {"recipe": {"epochs": 1, "batch_size": 16}} if method == "retrain" else {}
    out = uk.unlearn(model, forget=forget, retain=DataLoader(retain, batch_size=16), val=val, method=method, **kwargs)
    assert out is not model and isinstance(out, nn.Sequential)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the input model was modified"
    changed = [k for k, v in out.state_dict().items() if v.is_floating_point() and not torch.equal(v.cpu(), before[k])]
    assert changed, f"{method} returned the model unchanged"
    with torch.no_grad():
        assert torch.isfinite(out.eval()(torch.randn(2, 1, 6, 6))).all()


class Negated(Dataset):
    """A dataset with a transform that matters: the model below only works on negated images."""

    def __init__(self, base):
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return -x, y


def _trained_on_negated(retain):
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = next(iter(DataLoader(Negated(retain), batch_size=len(retain))))
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _acc(model, dataset):
    x, y = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    with torch.no_grad():
        return 100.0 * (model(x).argmax(1) == y).float().mean().item()


def test_audit_sees_what_the_transforms_produce_and_writes_html(tmp_path):
    retain, forget, val, test = tiny_sets()
    model = _trained_on_negated(retain)
    with_tf, without = _acc(model, Negated(test)), _acc(model, test)
    assert with_tf > without + 20  # the transform changes the predictions, so the check below can fail
    report = uk.audit(model, forget=Negated(forget), retain=Negated(retain), test=Negated(test), val=Negated(val),
                      original=model, reference=tiny_model(), plots=False)
    assert report.accuracy["unlearned"]["test_acc"] == pytest.approx(with_tf)
    assert report.accuracy["original"]["test_acc"] == pytest.approx(with_tf)
    assert report.avg_gap is not None and report.avg_gap > 0  # the untrained reference differs
    assert report.to_dict()["accuracy"]["unlearned"]["n"] == {"retain": 40, "forget": 8, "val": 12, "test": 12}
    html = report.to_html(tmp_path / "audit.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "retrained" in html


def test_audit_without_reference_says_no_gap():
    retain, forget, _, test = tiny_sets()
    report = uk.audit(tiny_model(), forget=forget, retain=retain, test=test, plots=False)
    assert report.avg_gap is None and "no reference run" in report.verdict
    assert report.accuracy["unlearned"]["n"]["val"] == 12  # the test set doubles as non-members


def test_unlearnkit_audit_is_still_the_audit_package():
    assert isinstance(uk.audit, types.ModuleType)
    from unlearnkit.audit import audit, compare  # noqa: F401

    assert callable(uk.audit) and uk.audit.audit is audit


def test_run_directory_form_still_works():
    from unlearnkit.data import load_dataset, make_split
    from unlearnkit.models import create_model
    from unlearnkit.training import Normalizer, Runtime

    split = make_split(load_dataset("digits"), 0.2, 0).with_forget("random:20")
    model = create_model("small_cnn", split.num_classes, width=4)
    out = uk.unlearn(model, split, "finetune", normalizer=Normalizer.fit(split.part("train").images),
                     runtime=Runtime.from_config(), epochs=1)
    assert out is not model


def test_bad_input_is_one_line():
    retain, forget, _, _ = tiny_sets()
    model = tiny_model()

    class Pil(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return Image.fromarray(np.zeros((6, 6), np.uint8)), 0

    with pytest.raises(UnlearnkitError, match=r"forget\[0\] holds a Image image, not a tensor; add transforms.ToTensor"):
        uk.unlearn(model, forget=Pil(), retain=retain)
    with pytest.raises(UnlearnkitError, match="not a Split; for torch datasets call unlearn"):
        uk.unlearn(model, forget)
    with pytest.raises(UnlearnkitError, match="unlearn needs forget= and retain="):
        uk.unlearn(model, forget=forget)
    with pytest.raises(UnlearnkitError, match="has no hyperparameter 'nope'"):
        uk.unlearn(model, forget=forget, retain=retain, method="scrub", nope=1)
    bad = TensorDataset(torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 7]))
    with pytest.raises(UnlearnkitError, match="retain has label 7, outside the model's 3 outputs"):
        uk.unlearn(model, forget=forget, retain=bad)


def test_docs_api_example_runs(tmp_path, monkeypatch):
    """docs/api.md's example (a plain PyTorch script, then unlearnkit) runs as written."""
    text = (REPO / "docs" / "api.md").read_text()
    section = text.split("### Example", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "__main__"}
    exec(compile("\n".join(blocks), "docs/api.md", "exec"), scope)  # noqa: S102
    assert (tmp_path / "audit.html").is_file()
    assert scope["report"].avg_gap is not None
    assert scope["accuracy"](scope["model"], scope["test_set"]) > 80
