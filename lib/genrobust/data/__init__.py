"""CIFAR-10 (or the synthetic stand-in) as uint8 tensors with provenance, its splits, and the batches and
augmentations of training. Nothing here touches a global RNG; every write is atomic.

    base          classes, DataError, provenance types (DataSource, Splits)
    sources       locating and loading by source: batches | imagefolder (dir or zip) | synthetic | auto
    cifar_batches torchvision's python batches and their download
    imagefolder   image folder / zip decoding;  cache: the decoded-array cache
    synthetic     the learnable stand-in of tests and the smoke profile
    splits        validation split, subsets, Prepared / prepare_data
    batches       to_float, BinaryBatches (class k vs rest), augment
"""
from .base import AUGMENTATIONS, CLASSES, NUM_CLASSES, SOURCES, DataError, DataSource, Splits, describe_source
from .batches import BinaryBatches, augment, to_float
from .sources import default_search_paths, load, load_cifar10
from .splits import Prepared, prepare_data, stratified_split, subset_per_class
from .synthetic import SyntheticSpec, make_synthetic

__all__ = ["AUGMENTATIONS", "BinaryBatches", "CLASSES", "DataError", "DataSource", "NUM_CLASSES", "Prepared", "SOURCES",
           "Splits", "SyntheticSpec", "augment", "default_search_paths", "describe_source", "load", "load_cifar10", "make_synthetic",
           "prepare_data", "stratified_split", "subset_per_class", "to_float"]
