"""CIFAR-10's facts that every room shares: its class names and their count K (the paper's K binary models d_k,
one per class). Written once here; genrobust.data re-exports them beside its loaders."""
from __future__ import annotations

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
NUM_CLASSES = len(CLASSES)
