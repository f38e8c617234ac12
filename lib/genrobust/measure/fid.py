"""FID and KID's public surface (Tab. 2): the names of the five fid_* modules below, re-exported.

FID (Heusel et al. 2017) with pytorch-fid's InceptionV3 (pool3, 2048-d), without a network, and KID beside it:
the public surface of five modules, one job each (callers write ``from genrobust.measure import fid`` and
``fid.inception(...)``, ``fid.fid(ref, feats)``; tests patch the module that owns a name):

* :mod:`~genrobust.measure.fid_weights`: where the Inception's weights come from (``find_weights``, offline);
* :mod:`~genrobust.measure.fid_network`: the network from those weights (TorchScript -> pytorch-fid, batch norms
  folded);
* :mod:`~genrobust.measure.fid_features`: features of uint8 images and their on-disk caches (``inception``,
  ``cached_features``, ``reference_statistics``);
* :mod:`~genrobust.measure.fid_stats`: the numbers from features: mean and covariance, Fréchet distance, FID, KID;
  the errors and warnings;
* :mod:`~genrobust.measure.fid_subsample`: replicates of an FID difference by paired half-subsampling (Tab. 2's
  verdict evidence).
"""
from __future__ import annotations

from .fid_features import PREPROCESS_VERSION, Inception, cached_features, inception, quantize, reference_features, \
    reference_statistics
from .fid_network import convert_torchscript_state_dict, fid_inception_structure, fold_batchnorm, load_torchscript
from .fid_stats import FEATURE_DIM, FIDError, FIDValue, FIDWarning, Stats, check_rank, fid, frechet_distance, \
    frechet_distance_stats, kid, statistics
from .fid_subsample import Resampler, half_size, paired_subsampling
from .fid_weights import PYTORCH_FID_FILE, SOURCES, WEIGHTS_ENV, Weights, fid_helper_weights_file, find_weights

__all__ = [
    "FIDError", "FIDWarning", "SOURCES", "WEIGHTS_ENV", "PYTORCH_FID_FILE", "FEATURE_DIM", "PREPROCESS_VERSION",
    "Weights", "find_weights", "fid_helper_weights_file", "convert_torchscript_state_dict", "fid_inception_structure",
    "load_torchscript", "fold_batchnorm", "Inception", "inception", "quantize", "statistics", "Stats",
    "frechet_distance", "frechet_distance_stats", "FIDValue", "fid", "kid", "cached_features", "reference_features",
    "reference_statistics", "check_rank", "Resampler", "half_size", "paired_subsampling",
]
