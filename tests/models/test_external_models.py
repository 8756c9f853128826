"""torchvision:/timm: architectures: CIFAR stems, random init only, timm imported only when used.

(Every registered name, these included, also runs forward/backward in tests/core/test_models.py.)
"""

import subprocess
import sys

import pytest
import torch
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import create_model, list_models


def test_library_names_are_registered():
    names = list_models()
    for name in ("torchvision:resnet18", "torchvision:resnet50", "torchvision:vgg16_bn", "timm:vit_tiny_patch16_224"):
        assert name in names


@pytest.mark.parametrize("name", ["torchvision:resnet18", "torchvision:resnet50", "timm:resnet18"])
def test_resnets_get_the_cifar_stem(name):
    model = create_model(name, num_classes=10)
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(model.maxpool, nn.Identity)


def test_vgg_gets_the_cifar_head_and_keeps_32x32_outputs():
    model = create_model("torchvision:vgg16_bn", num_classes=10).eval()
    assert isinstance(model.classifier, nn.Linear) and model.classifier.in_features == 512
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_vit_uses_small_patches():
    pytest.importorskip("timm")
    model = create_model("timm:vit_tiny_patch16_224", num_classes=10)
    assert model.patch_embed.patch_size == (4, 4)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_any_library_name_resolves_and_unknown_ones_are_one_line_errors():
    model = create_model("torchvision:resnet34", num_classes=10)  # not registered: resolved by name
    assert isinstance(model.maxpool, nn.Identity)
    with pytest.raises(UnlearnkitError, match="torchvision has no classification model 'resnet99'"):
        create_model("torchvision:resnet99", num_classes=10)
    with pytest.raises(UnlearnkitError, match="no stem adapter for 1-channel"):
        create_model("torchvision:mobilenet_v2", num_classes=10, in_channels=1)


def test_weights_are_never_downloaded(monkeypatch):
    import torch.hub

    def refuse(*a, **k):
        raise AssertionError("a weights download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    create_model("torchvision:resnet18", num_classes=10)


def test_timm_is_imported_only_for_timm_names():
    code = ("import sys, unlearnkit, unlearnkit.models as m; m.create_model('torchvision:resnet18', 10); "
            "assert 'timm' not in sys.modules, 'timm imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_timm_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(UnlearnkitError, match=r"need the timm package; install it with `pip install unlearnkit\[timm\]`"):
        create_model("timm:vit_tiny_patch16_224", num_classes=10)
