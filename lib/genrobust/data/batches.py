"""to_float, BinaryBatches (class k vs rest), augmentations; DeviceBinaryBatches (the same draws on a GPU: training
set uploaded once, sampling and crop/flip on the device)

What a training step draws: float images from uint8 (:func:`to_float`), the balanced class-k-vs-rest batches of
d_k (:class:`BinaryBatches`; :class:`DeviceBinaryBatches` draws them on a GPU), and per-image augmentation
(:func:`augment`, on whatever device the images are). All randomness comes from an explicit
``torch.Generator``; no global RNG is read or written."""
from __future__ import annotations

import math
from typing import Iterator

import torch

from .base import AUGMENTATIONS, DataError, check_labels

def to_float(x: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) in 0..255 -> float32 in [0, 1] on ``device`` (moved as uint8: 4x less traffic)."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8:
        raise DataError(f"to_float: expected a uint8 image tensor, got {getattr(x, 'dtype', type(x))}; pass Splits.train_x/test_x")
    return x.to(device, non_blocking=True).float().div_(255.0)


class BinaryBatches:
    """Balanced batches for the class-k detector d_k: half positives (class k), half negatives (other classes).

    Negatives follow p_0 = p_\\k: uniform over the non-k *examples* (so each other class appears in proportion
    to its frequency). One epoch = one pass over a fresh permutation of the positives; negatives are drawn
    without replacement within the epoch (if the epoch needs more negatives than exist, further independent
    permutations are appended). Yields (x_pos, x_neg), each uint8 (batch_size // 2, 3, 32, 32); with
    drop_last=False the last pair may be smaller (still equal sizes). All randomness comes from ``generator``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        k: int,
        batch_size: int,
        *,
        generator: torch.Generator,
        drop_last: bool = True,
    ):
        check_labels(y, "BinaryBatches")
        if len(x) != len(y):
            raise DataError(f"BinaryBatches: x has {len(x)} images but y has {len(y)} labels; pass matching x and y")
        if batch_size < 2 or batch_size % 2:
            raise DataError(f"BinaryBatches: batch_size={batch_size} must be even and >= 2 (half positives, half negatives)")
        if not isinstance(generator, torch.Generator):
            raise DataError("BinaryBatches: generator must be a torch.Generator; pass torch.Generator().manual_seed(seed)")
        y_cpu = y.detach().cpu()
        self.pos_idx = torch.nonzero(y_cpu == k, as_tuple=True)[0]
        self.neg_idx = torch.nonzero(y_cpu != k, as_tuple=True)[0]
        if len(self.pos_idx) == 0 or len(self.neg_idx) == 0:
            raise DataError(
                f"BinaryBatches: class {k} has {len(self.pos_idx)} positives and {len(self.neg_idx)} negatives; "
                f"both must be > 0 (check k and the labels)"
            )
        self.x, self.k, self.batch_size, self.half = x, int(k), int(batch_size), int(batch_size) // 2
        self.generator, self.drop_last = generator, drop_last

    def __len__(self) -> int:
        n_pos = len(self.pos_idx)
        return n_pos // self.half if self.drop_last else math.ceil(n_pos / self.half)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g, half = self.generator, self.half
        gdev = g.device
        pos = self.pos_idx[torch.randperm(len(self.pos_idx), generator=g, device=gdev).cpu()]
        n_batches = len(self)
        n_pos_used = n_batches * half if self.drop_last else len(pos)
        perms, have = [], 0
        while have < n_pos_used:
            perms.append(self.neg_idx[torch.randperm(len(self.neg_idx), generator=g, device=gdev).cpu()])
            have += len(self.neg_idx)
        neg = torch.cat(perms) if perms else self.neg_idx[:0]
        idx_device = self.x.device
        for b in range(n_batches):
            lo, hi = b * half, min((b + 1) * half, n_pos_used)
            yield self.x[pos[lo:hi].to(idx_device)], self.x[neg[lo:hi].to(idx_device)]


def augmented(batches, policy: str, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
    """Each (x_pos, x_neg) of ``batches`` through :func:`augment` (positives first, then negatives, both from
    ``generator``, right after the batch is drawn): the order of draws of the per-class training path."""
    for x_pos, x_neg in batches:
        yield augment(x_pos, policy, generator), augment(x_neg, policy, generator)


DEVICE_AUGMENTATIONS = ("none", "crop_flip")  # the policies DeviceBinaryBatches draws on the device


class DeviceBinaryBatches:
    """:class:`BinaryBatches`' distribution with every draw on the images' device (a GPU: no host sync, no copy).

    x: uint8 (N, 3, 32, 32) already on the device (uploaded once, shared by the K classes); y: (N,) labels. Per
    epoch, one draw of the run's ``generator`` (a CPU generator: the one last.pt saves) seeds a generator on the
    device, which draws the permutation of the positives, the negatives (without replacement within the epoch,
    further permutations appended as needed) and the augmentation (:func:`augment`, crop_flip or none; its draws
    are vectorized per batch). Yields augmented (x_pos, x_neg), uint8 (batch_size // 2, 3, 32, 32) each, on the
    device. The same distribution as ``augmented(BinaryBatches(...))``, not the same stream.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, k: int, batch_size: int, policy: str, *,
                 generator: torch.Generator):
        check_labels(y, "DeviceBinaryBatches")
        if len(x) != len(y):
            raise DataError(f"DeviceBinaryBatches: x has {len(x)} images but y has {len(y)} labels")
        if batch_size < 2 or batch_size % 2:
            raise DataError(f"DeviceBinaryBatches: batch_size={batch_size} must be even and >= 2")
        if policy not in DEVICE_AUGMENTATIONS:
            raise DataError(f"DeviceBinaryBatches: {policy} runs per image on the CPU; the device path draws "
                            f"{', '.join(DEVICE_AUGMENTATIONS)} (set engine.data_on_device='off')")
        y = y.to(x.device)
        self.pos_idx = torch.nonzero(y == k, as_tuple=True)[0]
        self.neg_idx = torch.nonzero(y != k, as_tuple=True)[0]
        if len(self.pos_idx) == 0 or len(self.neg_idx) == 0:
            raise DataError(f"DeviceBinaryBatches: class {k} has {len(self.pos_idx)} positives and "
                            f"{len(self.neg_idx)} negatives; both must be > 0")
        self.x, self.half, self.policy, self.generator = x, int(batch_size) // 2, policy, generator

    def __len__(self) -> int:
        return len(self.pos_idx) // self.half

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dev, half, n = self.x.device, self.half, len(self)
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))  # the run's CPU generator: no sync
        g = torch.Generator(device=dev).manual_seed(seed)
        pos = self.pos_idx[torch.randperm(len(self.pos_idx), generator=g, device=dev)]
        reps = -(-n * half // len(self.neg_idx))  # permutations of the negatives the epoch needs
        neg = torch.cat([self.neg_idx[torch.randperm(len(self.neg_idx), generator=g, device=dev)]
                         for _ in range(reps)])
        for b in range(n):
            sl = slice(b * half, (b + 1) * half)
            yield augment(self.x[pos[sl]], self.policy, g), augment(self.x[neg[sl]], self.policy, g)


def augment(x: torch.Tensor, policy: str, generator: torch.Generator) -> torch.Tensor:
    """Per-image random augmentation of uint8 (N, 3, 32, 32) -> uint8 (N, 3, 32, 32).

    * ``"none"``: returns ``x`` itself (no copy).
    * ``"crop_flip"``: zero-pad 4 px (as torchvision's RandomCrop(32, padding=4)), random 32x32 crop, horizontal
      flip with p=0.5; vectorized over the batch.
    * ``"autoaugment_cutout"``: the standard CIFAR pipeline of the AutoAugment paper: crop_flip, then
      torchvision AutoAugment(CIFAR10 policy) per image, then Cutout: one 16x16 square set to 0 (black, in
      uint8 pixel space) at a uniformly random centre per image, clipped at the borders.

    All randomness comes from ``generator``; AutoAugment samples from the global torch RNG, so it runs inside
    ``torch.random.fork_rng`` seeded from ``generator``: the caller's global RNG state is left untouched.
    """
    if policy not in AUGMENTATIONS:
        raise DataError(f"unknown augmentation policy {policy!r}; use one of {', '.join(AUGMENTATIONS)}")
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise DataError(f"augment: expected uint8 (N, 3, H, W) images, got {getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}; pass Splits.train_x")
    if policy == "none":
        return x
    out = _crop_flip(x, generator)
    if policy == "autoaugment_cutout":
        out = _autoaugment(out, generator)
        out = _cutout(out, generator, size=16)
    return out


def _rand_ints(high: int, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    # drawn on the generator's device (the device's own for DeviceBinaryBatches: the move is a no-op); a host
    # generator's draws move without waiting for the device (non_blocking: a blocking copy is a host sync)
    return torch.randint(0, high, (n,), generator=generator, device=generator.device).to(device, non_blocking=True)


def _crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))  # zeros, (N, 3, H+2p, W+2p)
    oy = _rand_ints(2 * pad + 1, n, generator, x.device)  # crop offsets in 0..2p
    ox = _rand_ints(2 * pad + 1, n, generator, x.device)
    flip = _rand_ints(2, n, generator, x.device).bool()
    rows = oy[:, None] + torch.arange(h, device=x.device)  # (N, H) source rows
    ar = torch.arange(w, device=x.device)
    cols = ox[:, None] + torch.where(flip[:, None], w - 1 - ar, ar)  # (N, W) source columns, reversed if flipped
    out = torch.gather(padded, 2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad))
    return torch.gather(out, 3, cols[:, None, None, :].expand(n, c, h, w))


def _autoaugment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    from torchvision.transforms import AutoAugment, AutoAugmentPolicy  # slow import, needed by this policy only

    aa = AutoAugment(AutoAugmentPolicy.CIFAR10)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    # AutoAugment draws its parameters from the global *CPU* generator (even for CUDA tensors); seed only that
    # one (torch.manual_seed would also reseed CUDA) inside fork_rng, which restores it afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return torch.stack([aa(img) for img in x])  # per image: AutoAugment on a batch would share one op


def _cutout(x: torch.Tensor, generator: torch.Generator, size: int) -> torch.Tensor:
    n, _, h, w = x.shape
    cy = _rand_ints(h, n, generator, x.device)[:, None]
    cx = _rand_ints(w, n, generator, x.device)[:, None]
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_y = (ys >= cy - size // 2) & (ys < cy + size - size // 2)  # (N, H); out-of-image part is just clipped
    in_x = (xs >= cx - size // 2) & (xs < cx + size - size // 2)  # (N, W)
    mask = in_y[:, :, None] & in_x[:, None, :]  # (N, H, W)
    return x.masked_fill(mask[:, None], 0)
