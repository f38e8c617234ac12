"""genrobust: reproducible companion to *Generative Robust Classification* (Yin).

Modules, in the order data flows: config, data, models, attacks, objectives (Eq. 3, Eq. 9), train (and fused: all K
d_k in one vmapped step), calibrate (Eq. 7), evaluate, plots, report, results, runner. ``load_classifier(path)`` is
the evaluation contract.
"""
from . import (attacks, calibrate, config, data, evaluate, fused, models, objectives, paper, plots, report, results,
               runner, train)
from .results import load_classifier

__all__ = ["attacks", "calibrate", "config", "data", "evaluate", "fused", "models", "objectives", "paper", "plots",
           "report", "results", "runner", "train", "load_classifier"]
__version__ = "0.1.0"
