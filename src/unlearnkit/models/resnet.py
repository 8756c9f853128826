"""The seed's CIFAR ResNet-18: torchvision's resnet18 with a 3x3 stride-1 stem and no max-pool.

Module and parameter names match torchvision's `resnet18` exactly, so at width 64 a
torchvision state_dict (with its stem conv swapped for a 3x3 one) loads unchanged.
`width` scales every stage (64 -> 64/128/256/512); small widths make CPU training practical.
"""

from __future__ import annotations

import torch
from torch import nn

from unlearnkit.models.registry import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            # Same layout as torchvision (downsample.0 = conv, downsample.1 = bn) for state_dict parity.
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, layers: tuple[int, ...], num_classes: int, in_channels: int = 3, width: int = 64,
                 flip_tta: bool = False):
        super().__init__()
        self.flip_tta = flip_tta
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)  # CIFAR stem: keep 32x32
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        planes = [width, 2 * width, 4 * width, 8 * width]
        in_planes = width
        for i, (n_blocks, p) in enumerate(zip(layers, planes)):
            stride = 1 if i == 0 else 2
            blocks = []
            for b in range(n_blocks):
                blocks.append(BasicBlock(in_planes, p, stride if b == 0 else 1))
                in_planes = p
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            # Zero-init the last BN of each residual branch: each block starts as identity,
            # which lets short schedules (our CPU presets) train fast (Goyal et al. 2017).
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip_tta and not self.training:
            # Test-time augmentation (as airbench reports): in eval mode the model's output is the
            # mean logit over the image and its mirror. Training is unchanged; the weights are the
            # same (state_dict keys too), only inference costs two passes.
            return 0.5 * (self._features_to_logits(x) + self._features_to_logits(x.flip(3)))
        return self._features_to_logits(x)

    def _features_to_logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("resnet18")
def resnet18(num_classes: int, in_channels: int = 3, width: int = 64, flip_tta: bool = False) -> ResNet:
    """CIFAR ResNet-18 (the seed's model at width=64, 11.2M parameters); `flip_tta`: eval-mode
    output averaged with the horizontally mirrored image."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels=in_channels, width=width, flip_tta=flip_tta)
