"""Architectures of torchvision and timm by name: `torchvision:resnet50`, `timm:vit_tiny_patch16_224`.

Always randomly initialised (weights are never downloaded at run time; `unlearnkit import
--weights` brings trained ones). The field trains these nets on small images with a CIFAR
stem, which is what these builders make:

* ResNets (and ResNeXt, Wide ResNet): a 3x3 stride-1 first convolution and no max-pool, so
  a 32x32 image keeps its resolution into the first stage (He et al. 2016, sec. 4.2). Module
  names stay torchvision's, so a checkpoint of the seed's modified resnet18 loads as is.
* VGG: the feature stack as is (its max-pools round up, so inputs under 32x32 work), then a global average pool and one linear layer (512 ->
  classes) instead of the 7x7x512 -> 4096 -> 4096 ImageNet head (the CIFAR VGG of the
  unlearning literature, e.g. SalUn's vgg16_bn).
* ViTs (timm): patch size 4 at img_size 32 (64 tokens) with timm's dynamic image size, so any
  input size works (Dosovitskiy et al. 2021; the CIFAR setting of Lee et al. 2021).

Other names of either library build as the library defines them (a first layer for
`in_channels` != 3 only where a stem adapter knows the layer). timm is optional and imported
only when a `timm:` name is built. `width` is accepted (run configs always pass it) but not
used: these architectures fix their own widths.
"""

from __future__ import annotations

import importlib
from typing import Callable

from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.registry import register_model, register_resolver

# Registered (so listed and tested) names; any other name of either library resolves on use.
TORCHVISION_MODELS = ("resnet18", "resnet50", "vgg16_bn")
TIMM_MODELS = ("resnet18", "vit_tiny_patch16_224")
CIFAR_PATCH = 4
CIFAR_IMG_SIZE = 32


def _resnet_stem(model: nn.Module, in_channels: int) -> nn.Module:
    width = model.conv1.out_channels
    model.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def _vgg_stem(model: nn.Module, in_channels: int, num_classes: int) -> nn.Module:
    first = model.features[0]
    model.features[0] = nn.Conv2d(in_channels, first.out_channels, 3, padding=1)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    for m in model.features:
        if isinstance(m, nn.MaxPool2d):
            # Same output at 32x32 (every stage's size is even); smaller inputs stop shrinking at 1x1.
            m.ceil_mode = True
    last = [m for m in model.features if isinstance(m, nn.Conv2d)][-1]
    model.classifier = nn.Linear(last.out_channels, num_classes)
    return model


def _no_stem(name: str) -> Callable[[nn.Module, int, int], nn.Module]:
    def keep(model: nn.Module, in_channels: int, num_classes: int) -> nn.Module:
        if in_channels != 3:
            raise UnlearnkitError(
                f"model {name!r} has no stem adapter for {in_channels}-channel images; use 3-channel data or a "
                "ResNet/VGG/ViT architecture"
            )
        return model

    return keep


# Family (name prefix) -> stem adapter(model, in_channels, num_classes). Longest prefix wins.
_TORCHVISION_STEMS: dict[str, Callable[[nn.Module, int, int], nn.Module]] = {
    "resnet": lambda m, c, n: _resnet_stem(m, c),
    "resnext": lambda m, c, n: _resnet_stem(m, c),
    "wide_resnet": lambda m, c, n: _resnet_stem(m, c),
    "vgg": _vgg_stem,
}
# Family -> timm.create_model keyword arguments for small images; `_timm_resnet` patches the stem after.
_TIMM_KWARGS: dict[str, dict] = {
    "vit_": {"img_size": CIFAR_IMG_SIZE, "patch_size": CIFAR_PATCH, "dynamic_img_size": True},
    "deit_": {"img_size": CIFAR_IMG_SIZE, "patch_size": CIFAR_PATCH, "dynamic_img_size": True},
}
_TIMM_STEMS: dict[str, Callable[[nn.Module, int, int], nn.Module]] = {
    "resnet": lambda m, c, n: _resnet_stem(m, c) if isinstance(m.conv1, nn.Conv2d) else m,
}


def _family(name: str, table: dict):
    matches = [prefix for prefix in table if name.startswith(prefix)]
    return table[max(matches, key=len)] if matches else None


def torchvision_builder(name: str) -> Callable[..., nn.Module]:
    stem = _family(name, _TORCHVISION_STEMS) or _no_stem(f"torchvision:{name}")

    def build(num_classes: int, in_channels: int = 3, width: int | None = None) -> nn.Module:
        import torchvision  # noqa: PLC0415  (only when such a model is built: `import unlearnkit` stays light)

        if name not in torchvision.models.list_models(module=torchvision.models):
            raise UnlearnkitError(
                f"torchvision has no classification model {name!r}; see torchvision.models.list_models() "
                "(e.g. torchvision:resnet50, torchvision:vgg16_bn)"
            )
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        return stem(model, in_channels, num_classes)

    build.__doc__ = f"torchvision's {name} (random init) with a CIFAR stem; `width` is not used."
    return build


def _import_timm():
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise UnlearnkitError(
            "timm: models need the timm package; install it with `pip install unlearnkit[timm]` (or `pip install timm`)"
        ) from None


def timm_builder(name: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, in_channels: int = 3, width: int | None = None) -> nn.Module:
        timm = _import_timm()
        if not timm.is_model(name):
            raise UnlearnkitError(f"timm has no model {name!r}; see timm.list_models() (e.g. timm:vit_tiny_patch16_224)")
        kwargs = _family(name, _TIMM_KWARGS) or {}
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)
        stem = _family(name, _TIMM_STEMS)
        return stem(model, in_channels, num_classes) if stem else model

    build.__doc__ = f"timm's {name} (random init, never downloaded) sized for small images; `width` is not used."
    return build


register_resolver("torchvision", torchvision_builder)
register_resolver("timm", timm_builder)
for _name in TORCHVISION_MODELS:
    register_model(f"torchvision:{_name}")(torchvision_builder(_name))
for _name in TIMM_MODELS:
    register_model(f"timm:{_name}")(timm_builder(_name))
