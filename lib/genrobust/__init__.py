"""genrobust: reproducible companion to *Generative Robust Classification* (Yin).

The package is seven rooms with one import direction (docs/layout.md):
core <- store <- data <- training <- measure <- {pipeline, reporting} <- cli and notebooks.
``load_classifier(path)`` is the evaluation contract; ``evaluate_model(model)`` runs notebook 03's protocol on
your own model. For notebooks, the modules they use most are also reachable
by short names (``gr.tables``, ``gr.plots``, ``gr.accuracy``, ``gr.generate``, ``gr.ablate``, ``gr.paper``...).
"""
from . import core, data, measure, pipeline, reporting, store, training
from .core import attacks, config, models, paper, registry
from .core.version import __version__
from .measure import ablate, accuracy, checks, claims, fid, generate, record
from .pipeline import classifiers, evaluation, generation, params
from .pipeline.own_model import evaluate_model
from .reporting import metrics_files, plots, report, tables
from .store import released
from .store.checkpoints import load_classifier, load_model
from .store.paths import results_dir
from .training import calibrate

__all__ = ["core", "store", "data", "training", "measure", "pipeline", "reporting", "attacks", "config", "models",
           "paper", "registry", "ablate", "accuracy", "checks", "claims", "record", "fid", "generate", "classifiers", "evaluation", "generation", "params",
           "metrics_files", "plots", "report", "tables", "calibrate", "load_classifier", "load_model", "results_dir",
           "evaluate_model", "released",
           "__version__"]
