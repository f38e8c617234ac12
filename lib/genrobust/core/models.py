"""Model registry and the generative classifier of Eq. 7.

Every model here takes float images x: (N, 3, 32, 32) in [0, 1] and normalizes them itself (``Normalize`` is the
first layer), so attacks, generation and evaluation all work in image space. A model returns (N, num_outputs):
binary models (one per class, the paper's d_k) have num_outputs=1; softmax models have num_outputs=K.

Registry (timm-style)::

    create_model("resnet18", num_outputs=1, width=0.5)   # the paper's "ResNet18Thinner"
    create_model("resnet18thin", num_outputs=1)          # width 0.75
    create_model("resnet50", num_outputs=10)             # softmax baseline of the paper profile
    create_model("small_cnn", num_outputs=1)             # smoke profile
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

# CIFAR-10 per-channel statistics of the training set (the usual values; used only to normalize inputs).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class ModelError(ValueError):
    """Unknown model name or bad model arguments, or a user's model that cannot be evaluated as given (one line:
    the problem and the fix)."""


class Normalize(nn.Module):
    """(x - mean) / std per channel; x: (N, 3, H, W) in [0, 1]."""

    def __init__(self, mean=CIFAR10_MEAN, std=CIFAR10_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


def _ch(base: int, width: float) -> int:
    """Channel count for a width multiplier (at least 4 so thin models stay valid)."""
    return max(4, int(round(base * width)))


# ----------------------------------------------------------------------------------------------------------------
# CIFAR-style ResNets (3x3 stem, no max-pool), as in Madry's robustness library and most AT papers.
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes * 4:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, block, num_blocks: Sequence[int], num_outputs: int, width: float = 1.0):
        super().__init__()
        self.normalize = Normalize()
        c0 = _ch(64, width)
        self.conv1 = nn.Conv2d(3, c0, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        cin = c0
        layers = []
        for i, (n, stride) in enumerate(zip(num_blocks, (1, 2, 2, 2))):
            planes = _ch(64 * 2**i, width)
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(block(cin, planes, s))
                cin = planes * block.expansion
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(cin, num_outputs)

    def forward(self, x):  # x: (N, 3, 32, 32) in [0, 1]
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)  # (N, num_outputs)


class SmallCNN(nn.Module):
    """A few-layer CNN with BatchNorm for the smoke profile (BN kept so BN-invariance tests are meaningful)."""

    def __init__(self, num_outputs: int, width: float = 1.0):
        super().__init__()
        c1, c2, c3 = _ch(16, width), _ch(32, width), _ch(64, width)
        self.normalize = Normalize()
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1, bias=False), nn.BatchNorm2d(c3), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.linear = nn.Linear(c3, num_outputs)

    def forward(self, x):
        return self.linear(self.features(self.normalize(x)))


# ----------------------------------------------------------------------------------------------------------------
# Registry
MODEL_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# Named widths from the paper (Fig. 5): aliases resolve to resnet18 at a fixed width.
WIDTH_ALIASES = {"resnet18thin": 0.75, "resnet18thinner": 0.5}


def register_model(name: str):
    def deco(fn):
        MODEL_REGISTRY[name] = fn
        return fn
    return deco


@register_model("resnet18")
def resnet18(num_outputs: int = 1, width: float = 1.0) -> nn.Module:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_outputs, width)


@register_model("resnet50")
def resnet50(num_outputs: int = 10, width: float = 1.0) -> nn.Module:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_outputs, width)


@register_model("small_cnn")
def small_cnn(num_outputs: int = 1, width: float = 1.0) -> nn.Module:
    return SmallCNN(num_outputs, width)


def model_names() -> list[str]:
    return sorted(MODEL_REGISTRY) + sorted(WIDTH_ALIASES)


def create_model(name: str, num_outputs: int = 1, width: float | None = None) -> nn.Module:
    """Build a registered model. ``width`` defaults to 1.0 (or the alias's width for resnet18thin/thinner)."""
    key = name.lower()
    if key in WIDTH_ALIASES:
        if width is not None and abs(width - WIDTH_ALIASES[key]) > 1e-9:
            raise ModelError(f"model {name!r} has fixed width {WIDTH_ALIASES[key]}; got width={width} "
                             f"(use model='resnet18' with width={width} instead)")
        key, width = "resnet18", WIDTH_ALIASES[key]
    if key not in MODEL_REGISTRY:
        raise ModelError(f"unknown model {name!r}; choose one of {model_names()}")
    width = 1.0 if width is None else float(width)
    if not (0.0 < width <= 8.0):
        raise ModelError(f"model width must be in (0, 8], got {width}")
    if int(num_outputs) < 1:
        raise ModelError(f"num_outputs must be >= 1, got {num_outputs}")
    return MODEL_REGISTRY[key](num_outputs=int(num_outputs), width=width)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------------
class GenerativeClassifier(nn.Module):
    """Eq. 7: g(x) = argmax_k d_k(x) + c_k, from K binary models d_k and calibration constants c (K,).

    ``forward`` returns the (N, K) logits d_k(x) + c_k, so any attack library can attack it as an ordinary
    classifier. Attacks that need only some d_k (Eq. 11 needs d_k alone, a margin z_t - z_y needs d_t and d_y)
    call :meth:`d` or :meth:`logits_for`, which run only the sub-models they touch.
    """

    def __init__(self, binary_models: Sequence[nn.Module], c: torch.Tensor | None = None):
        super().__init__()
        if len(binary_models) < 2:
            raise ModelError(f"a GenerativeClassifier needs K >= 2 binary models, got {len(binary_models)}")
        self.models = nn.ModuleList(binary_models)
        k = len(binary_models)
        c = torch.zeros(k) if c is None else torch.as_tensor(c, dtype=torch.float32).reshape(-1)
        if c.numel() != k:
            raise ModelError(f"calibration c has {c.numel()} entries for {k} binary models")
        self.register_buffer("c", c.clone())

    @property
    def num_classes(self) -> int:
        return len(self.models)

    def d(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """d_k(x): (N,) raw output of binary model k (no calibration)."""
        return self.models[k](x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.d(x, k) for k in range(self.num_classes)], dim=1) + self.c  # (N, K)

    def logits_for(self, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """z_{cls_i}(x_i) = d_{cls_i}(x_i) + c_{cls_i}: (N,), running each sub-model once on the examples that need it."""
        out = x.new_empty(x.shape[0])
        for k in torch.unique(cls).tolist():
            idx = (cls == k).nonzero(as_tuple=True)[0]
            out = out.index_put((idx,), self.d(x[idx], k) + self.c[k])
        return out


def class_logits(model: nn.Module, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """z_{cls_i}(x_i): (N,). Uses the cheap per-class path of a GenerativeClassifier, else a full forward + gather."""
    if isinstance(model, GenerativeClassifier):
        return model.logits_for(x, cls)
    return model(x).gather(1, cls.view(-1, 1))[:, 0]
