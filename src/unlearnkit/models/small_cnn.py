"""A small CNN for tiny inputs such as the embedded 8x8 digits: trains in seconds on a CPU."""

from __future__ import annotations

from torch import nn

from unlearnkit.models.registry import register_model


@register_model("small_cnn")
def small_cnn(num_classes: int, in_channels: int = 1, width: int = 32) -> nn.Module:
    """conv-bn-relu x2, pool, conv-bn-relu, global pool, linear. Works for any input size >= 4."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(in_channels, width),
        *block(width, width),
        nn.MaxPool2d(2),
        *block(width, 2 * width),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )
