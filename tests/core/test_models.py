import pytest
import torch
import torchvision

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import create_model, list_models, model_kwargs


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("in_channels, size", [(1, 8), (3, 32)])
def test_every_model_runs_forward_and_backward(name, in_channels, size):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_channels=in_channels, width=8)
    x = torch.randn(4, in_channels, size, size)
    out = model(x)
    assert out.shape == (4, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_same_seed_same_weights(name):
    torch.manual_seed(3)
    a = create_model(name, num_classes=10)
    torch.manual_seed(3)
    b = create_model(name, num_classes=10)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _torchvision_cifar_resnet18(num_classes=10):
    tv = torchvision.models.resnet18(num_classes=num_classes)
    tv.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # the seed's two changes
    tv.maxpool = torch.nn.Identity()
    return tv


def test_resnet18_width64_matches_torchvision_exactly():
    ours = create_model("resnet18", num_classes=10, width=64)
    tv = _torchvision_cifar_resnet18()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tv.parameters()) == 11_173_962
    ours.load_state_dict(tv.state_dict(), strict=True)
    ours.eval(), tv.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), tv(x))


def test_width_scales_the_network():
    small = sum(p.numel() for p in create_model("resnet18", 10, width=16).parameters())
    big = sum(p.numel() for p in create_model("resnet18", 10, width=64).parameters())
    assert small < big / 10


def test_unknown_model_and_option():
    with pytest.raises(UnlearnkitError, match="unknown model 'resnet19'.*resnet18"):
        create_model("resnet19", 10)
    with pytest.raises(UnlearnkitError, match="model 'resnet18' has no option 'depth'"):
        create_model("resnet18", 10, depth=3)
    assert "width" in model_kwargs("resnet18")


def test_flip_tta_averages_the_mirror_in_eval_mode_only_and_keeps_the_weights():
    torch.manual_seed(0)
    plain = create_model("resnet18", 10, width=8)
    tta = create_model("resnet18", 10, width=8, flip_tta=True)
    tta.load_state_dict(plain.state_dict())  # same keys: a TTA model loads a plain checkpoint and back
    x = torch.randn(3, 3, 32, 32)
    plain.eval(), tta.eval()
    with torch.no_grad():
        expected = 0.5 * (plain(x) + plain(x.flip(3)))
        torch.testing.assert_close(tta(x), expected)
        torch.testing.assert_close(tta(x), tta(x.flip(3)))  # mirror-invariant by construction
        assert not torch.allclose(plain(x), plain(x.flip(3)))
    plain.train(), tta.train()
    torch.manual_seed(1)
    a = plain(x)
    torch.manual_seed(1)
    torch.testing.assert_close(tta(x), a)  # training sees one pass, unchanged


def test_flip_tta_on_a_model_without_it_is_a_user_error():
    with pytest.raises(UnlearnkitError, match="has no option 'flip_tta'"):
        create_model("small_cnn", 10, flip_tta=True)
