"""Where generation starts (Section 3.3.2): class-conditional seed images for the samples, and the test images and
their target classes for the counterfactuals; the same starts for both classifiers, deterministic in the seed.

Seeds (following [17], Santurkar et al.): for each class k a multivariate normal N(mu_k, Sigma_k + ridge * I) is
fitted to the class's training images (3072-d, [0, 1] pixel units; mean and full covariance, ridge 1e-4), sampled
from a ``torch.Generator`` seeded with ``gen.seed`` and clipped to [0, 1]. The same seeds go to both classifiers.
Sampling uses the centred images as the covariance's factor (:class:`ClassGaussian`): the same distribution as a
Cholesky factor of the 3072 x 3072 covariance, without forming it.

Counterfactuals: a seeded, class-balanced subset of ``gen.n_counterfactuals`` test images (default: as many as samples;
at most the test set), each image x (label y) attacked toward
t = (y + 1 + r) mod K with r uniform in {0, ..., K-2} from a seeded generator: a target uniform over the other
classes, fixed before any classifier is seen, so both classifiers get the same (x, t) pairs. With ``"next"`` the rule
is t = (y + 1) mod K.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..core.cifar10 import NUM_CLASSES
from ..core.config import GenConfig
from ..data.batches import to_float

__all__ = ["KINDS", "CF_TARGET_RULES", "class_counts", "ClassGaussian", "sample_seeds", "counterfactual_sources",
           "counterfactual_targets", "Generated", "starting_images", "starts_of"]

KINDS = ("samples", "counterfactuals")
CF_TARGET_RULES = ("random", "next")


# ---------------------------------------------------------------------------------------------------------------
# Seeds
def class_counts(n: int, num_classes: int = NUM_CLASSES) -> list[int]:
    """n split over the classes as evenly as possible (the first n mod K classes get one more)."""
    return [n // num_classes + (k < n % num_classes) for k in range(num_classes)]


class ClassGaussian:
    """N(mu, Sigma + ridge * I) fitted to images of one class (D = 3072 dims, [0, 1] pixel units), Sigma the
    maximum-likelihood covariance (1/n). Sampled exactly without forming the D x D covariance:
    x = mu + Xc^T z1 / sqrt(n) + sqrt(ridge) z2, z1 ~ N(0, I_n), z2 ~ N(0, I_D), Xc the centred images (n, D),
    whose covariance is Xc^T Xc / n + ridge * I = Sigma + ridge * I. Cost O(m n D) for m samples, against O(n D^2)
    for Sigma and O(D^3) for its Cholesky factor (:meth:`cholesky`, kept for checks)."""

    def __init__(self, x_uint8: torch.Tensor, *, ridge: float = 1e-4):
        if len(x_uint8) < 2:
            raise ValueError(f"ClassGaussian: need >= 2 images of the class, got {len(x_uint8)}")
        x = x_uint8.reshape(len(x_uint8), -1).double().div_(255.0)   # (n, D)
        self.mean = x.mean(0)                                         # (D,)
        self.centred = x - self.mean                                  # (n, D)
        self.ridge = float(ridge)

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def covariance(self) -> torch.Tensor:
        """Sigma + ridge * I: (D, D) float64."""
        cov = self.centred.T @ self.centred / len(self.centred)
        cov.diagonal().add_(self.ridge)
        return cov

    def cholesky(self) -> torch.Tensor:
        return torch.linalg.cholesky(self.covariance())

    def sample(self, m: int, generator: torch.Generator) -> torch.Tensor:
        """(m, D) float64 samples (not clipped)."""
        n = len(self.centred)
        z1 = torch.randn(m, n, generator=generator, dtype=torch.float64)
        z2 = torch.randn(m, self.dim, generator=generator, dtype=torch.float64)
        return self.mean + z1 @ self.centred / n ** 0.5 + self.ridge ** 0.5 * z2


def sample_seeds(x_uint8: torch.Tensor, y: torch.Tensor, counts: list[int], *, generator: torch.Generator,
                 ridge: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed images: counts[k] samples of class k's fitted normal (:class:`ClassGaussian`), clipped to [0, 1];
    class-major order. Returns (seeds (N, 3, 32, 32) float32 in [0, 1], labels (N,) int64)."""
    shape = x_uint8.shape[1:]
    xs, ys = [], []
    for k, m in enumerate(counts):
        if m == 0:
            continue
        xs.append(ClassGaussian(x_uint8[y == k], ridge=ridge).sample(m, generator).clamp(0.0, 1.0).float()
                  .reshape(m, *shape))
        ys.append(torch.full((m,), k, dtype=torch.int64))
    return torch.cat(xs), torch.cat(ys)


# ---------------------------------------------------------------------------------------------------------------
# Counterfactuals
def counterfactual_sources(y: torch.Tensor, n: int, *, seed: int, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Indices of a seeded class-balanced subset of n examples (class_counts(n)), class-major order."""
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for k, c in enumerate(class_counts(n, num_classes)):
        idx = torch.nonzero(y == k, as_tuple=True)[0]
        if c > len(idx):
            raise ValueError(f"counterfactuals: {c} test images of class {k} needed, only {len(idx)} available; "
                             f"lower gen.n_counterfactuals")
        out.append(idx[torch.randperm(len(idx), generator=g)[:c]])
    return torch.cat(out)


def counterfactual_targets(y: torch.Tensor, *, rule: str = "random", seed: int = 0,
                           num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Target class t != y per example: 'random': (y + 1 + r) mod K, r ~ U{0..K-2} (seeded); 'next': (y + 1) mod K."""
    if rule not in CF_TARGET_RULES:
        raise ValueError(f"unknown counterfactual target rule {rule!r}; choose one of {list(CF_TARGET_RULES)}")
    if rule == "next":
        return (y + 1) % num_classes
    r = torch.randint(0, num_classes - 1, y.shape, generator=torch.Generator().manual_seed(int(seed)))
    return (y + 1 + r) % num_classes


# ---------------------------------------------------------------------------------------------------------------
# The starts of one generation run
@dataclass
class Generated:
    """Everything one run of :func:`generate` made. Images: float (N, 3, 32, 32) in [0, 1], class-major.
    ``images[(kind, classifier, (steps, step_size))]``; ``checks``: one dict per cell."""
    seeds: torch.Tensor
    seed_y: torch.Tensor
    originals: torch.Tensor          # uint8 test images (N, 3, 32, 32) whose counterfactuals are made
    original_y: torch.Tensor
    cf_target: torch.Tensor
    images: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    chained: bool = False


def starting_images(gen: GenConfig, data) -> Generated:
    """The seeds (samples start from them) and the counterfactuals' test images and targets of ``gen``, with no
    images generated yet. Deterministic in gen.seed and the data: every job recomputes the same starts."""
    t0 = time.time()
    g = torch.Generator().manual_seed(gen.seed)
    seeds, seed_y = sample_seeds(data.train_x, data.train_y, class_counts(gen.n_samples, NUM_CLASSES), generator=g,
                                 ridge=gen.cov_ridge)
    src = counterfactual_sources(data.test_y, gen.n_counterfactuals or gen.n_samples, seed=gen.seed)
    originals, original_y = data.test_x[src], data.test_y[src]
    cf_target = counterfactual_targets(original_y, rule=gen.cf_target, seed=gen.seed)
    out = Generated(seeds, seed_y, originals, original_y, cf_target, seconds={"seeds": round(time.time() - t0, 1)})
    out.chained = all(s * a <= gen.eps for s, a in gen.pgd_configs)
    return out


def starts_of(generated: Generated, kind: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(starting images float (N, 3, 32, 32) in [0, 1], target classes (N,)) of ``kind`` on ``device``."""
    if kind == "samples":
        return generated.seeds.to(device), generated.seed_y.to(device)
    return to_float(generated.originals, device), generated.cf_target.to(device)
