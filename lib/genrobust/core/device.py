"""The device work runs on when the caller names none: the CUDA GPU if torch sees one, else the CPU. Every room
asks here (training, evaluation, generation, ablations), so none imports the training loop to learn it."""
from __future__ import annotations

import torch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
