"""A learnable class-conditional stand-in for CIFAR-10 (tests and the smoke profile). NOT CIFAR-10, and never a
fallback: asking for CIFAR-10 and not finding it raises :class:`DataError`."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import IMAGE_SIZE, NAME_SYNTHETIC, DataError, DataSource, Splits

# Ten visually distinct (foreground, background) RGB pairs, one per class.
_SYN_COLOURS = (
    ((230, 40, 40), (20, 20, 90)),
    ((40, 200, 60), (90, 20, 20)),
    ((50, 90, 230), (200, 200, 60)),
    ((240, 220, 40), (30, 90, 30)),
    ((230, 120, 20), (20, 120, 150)),
    ((200, 50, 200), (40, 40, 40)),
    ((40, 220, 220), (120, 30, 90)),
    ((250, 250, 250), (100, 60, 20)),
    ((20, 20, 20), (180, 180, 200)),
    ((150, 90, 40), (60, 160, 110)),
)
_SYN_SHAPES = ("square", "disk", "hstripes", "vstripes", "cross", "triangle", "ring", "diagstripes", "checker", "xcross")
_SYN_NOISE_STD = 12.0  # gaussian pixel noise, in 0..255 units
_SYN_COLOUR_JITTER = 25  # per-image uniform colour jitter, +/- in 0..255 units


def make_synthetic(
    n_train_per_class: int = 500, n_test_per_class: int = 100, *, seed: int = 0, num_classes: int = 10
) -> Splits:
    """A learnable class-conditional stand-in for CIFAR-10 (tests, CI smoke runs). NOT CIFAR-10.

    Class c = a shape (square, disk, stripes, cross, ...) in foreground colour c on background colour c, at a
    random centre (8..24 px) and half-size (5..11 px), with per-image colour jitter and gaussian pixel noise.
    uint8 (N, 3, 32, 32), class-major order; deterministic in ``seed`` (local torch.Generator; the train set
    is drawn first, so it does not depend on ``n_test_per_class``).
    """
    if not 1 <= num_classes <= len(_SYN_SHAPES):
        raise DataError(f"make_synthetic: num_classes={num_classes}; use 1..{len(_SYN_SHAPES)}")
    if n_train_per_class < 0 or n_test_per_class < 0:
        raise DataError(f"make_synthetic: negative size ({n_train_per_class}, {n_test_per_class}); use counts >= 0")
    g = torch.Generator().manual_seed(int(seed))
    train_x, train_y = _synthetic_split(n_train_per_class, num_classes, g)
    test_x, test_y = _synthetic_split(n_test_per_class, num_classes, g)
    params = (
        ("generator", "genrobust.data.make_synthetic v1"),
        ("seed", int(seed)),
        ("n_train_per_class", int(n_train_per_class)),
        ("n_test_per_class", int(n_test_per_class)),
        ("num_classes", int(num_classes)),
        ("shapes", tuple(_SYN_SHAPES[:num_classes])),
        ("noise_std", _SYN_NOISE_STD),
        ("colour_jitter", _SYN_COLOUR_JITTER),
    )
    source = DataSource(kind="synthetic", name=NAME_SYNTHETIC, path=None, sha256=None, synthetic=True, extra=params)
    return Splits(train_x, train_y, test_x, test_y, source)


@dataclass(frozen=True)
class SyntheticSpec:
    """What the synthetic source draws (:func:`make_synthetic`'s sizes and seed): images per class of the train and
    test sets, and the seed. ``load("synthetic", synthetic=SyntheticSpec(...))``; the data config's
    synthetic_train_per_class, synthetic_test_per_class and seed fill it in prepare_data."""
    train_per_class: int = 500
    test_per_class: int = 100
    seed: int = 0

    def make(self) -> Splits:
        return make_synthetic(self.train_per_class, self.test_per_class, seed=self.seed)


def _synthetic_split(n_per_class: int, num_classes: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    coords = torch.arange(IMAGE_SIZE, dtype=torch.float32)
    yy, xx = coords.view(1, -1, 1), coords.view(1, 1, -1)  # (1, 32, 1), (1, 1, 32) pixel rows / columns
    for c in range(num_classes):
        n = n_per_class
        cy = torch.randint(8, 25, (n, 1, 1), generator=g).float()
        cx = torch.randint(8, 25, (n, 1, 1), generator=g).float()
        r = torch.randint(5, 12, (n, 1, 1), generator=g).float()  # half-size in pixels
        dy, dx = yy - cy, xx - cx  # (n, 32, 32) offsets from the centre
        inside = (dy.abs() <= r) & (dx.abs() <= r)
        shape = _SYN_SHAPES[c]
        if shape == "square":
            mask = inside
        elif shape == "disk":
            mask = dy**2 + dx**2 <= r**2
        elif shape == "hstripes":
            mask = inside & ((yy.long() // 2) % 2 == 0)
        elif shape == "vstripes":
            mask = inside & ((xx.long() // 2) % 2 == 0)
        elif shape == "cross":
            mask = inside & ((dy.abs() <= 1.5) | (dx.abs() <= 1.5))
        elif shape == "triangle":
            mask = inside & (dx.abs() <= (dy + r) / 2)
        elif shape == "ring":
            d2 = dy**2 + dx**2
            mask = (d2 <= r**2) & (d2 >= (r - 3).clamp(min=1) ** 2)
        elif shape == "diagstripes":
            mask = inside & (((yy + xx).long() // 2) % 2 == 0)
        elif shape == "checker":
            mask = inside & (((yy.long() // 3) + (xx.long() // 3)) % 2 == 0)
        else:  # xcross
            mask = inside & (((dy - dx).abs() <= 1.5) | ((dy + dx).abs() <= 1.5))
        fg_base, bg_base = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in _SYN_COLOURS[c])
        jitter = lambda: torch.randint(-_SYN_COLOUR_JITTER, _SYN_COLOUR_JITTER + 1, (n, 3, 1, 1), generator=g).float()
        fg, bg = fg_base + jitter(), bg_base + jitter()
        img = torch.where(mask.unsqueeze(1), fg, bg)  # (n, 3, 32, 32)
        img = img + _SYN_NOISE_STD * torch.randn(img.shape, generator=g)
        xs.append(img.round().clamp(0, 255).to(torch.uint8))
        ys.append(torch.full((n,), c, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys)
