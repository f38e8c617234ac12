"""The one import point of configs: every name a caller needs, from the three modules that own them.

    genrobust.core.schema    the mechanism: ConfigError, validated frozen-dataclass fields, replace, config_hash
    genrobust.core.sections  the ten sections (DataConfig ... SlurmConfig) composed into a Profile; from_dict,
                             apply_overrides, budget_values
    genrobust.core.profiles  the named presets smoke / cpu / gpu / paper as data; get_profile

A profile is data, not a code path: every notebook and command reads its settings from ``get_profile(name)`` and
applies validated overrides (papermill parameters) with ``apply_overrides``; an unknown key, a wrong type or an
out-of-range value fails with one line that names the key and what is allowed. Why each profile's sizes are what
they are: docs/profiles.md.
"""
from __future__ import annotations

from .profiles import CPU, GPU, PAPER, PROFILES, SMOKE, get_profile
from .schema import Config, ConfigError, config_hash, replace, to_dict
from .sections import (ALL_CLASSES, AUGMENTATIONS, CLASSIFIERS, DATA_SOURCES, SECTIONS, AblationConfig, CalibConfig,
                       DataConfig, EngineConfig, EvalConfig, GenConfig, ModelConfig, Profile, SlurmConfig,
                       SoftmaxConfig, TrainConfig, apply_overrides, budget_values, from_dict)

__all__ = [
    "ConfigError", "Config", "DataConfig", "ModelConfig", "TrainConfig", "SoftmaxConfig", "CalibConfig", "EvalConfig",
    "GenConfig", "AblationConfig", "EngineConfig", "SlurmConfig", "Profile", "SECTIONS", "PROFILES", "PAPER", "CPU",
    "GPU", "SMOKE", "get_profile", "apply_overrides", "replace", "to_dict", "from_dict", "config_hash",
    "budget_values", "ALL_CLASSES", "AUGMENTATIONS", "CLASSIFIERS", "DATA_SOURCES",
]
