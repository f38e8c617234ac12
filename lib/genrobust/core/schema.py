"""The config mechanism: fields with their allowed values, type and range checks on construction (ConfigError: one
line naming the key), replace, config_hash.

The config mechanism: how a frozen dataclass becomes a validated config. ``setting(...)`` declares a field with
its allowed values (choices, bounds); :class:`Config` checks every field's type and values on construction (and
then the class's own cross-field ``validate``); :func:`replace` changes fields by name; :func:`config_hash` names
a config by its content. Knows no section and no profile (genrobust.core.sections, genrobust.core.profiles).

A bad value fails with one line (:class:`ConfigError`) that names the key and what is allowed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import field
from typing import Optional

__all__ = ["ConfigError", "Config", "setting", "replace", "to_dict", "config_hash"]


class ConfigError(ValueError):
    """A bad configuration value; the message names the key and what is allowed."""


def setting(default, *, choices=None, lo=None, hi=None, lo_open=False, doc="", **kw):
    """A dataclass field with validation metadata. ``lo``/``hi`` bound numbers (and every number inside tuples);
    ``choices`` is a tuple, or a function returning one (read at validation: a registry's current entries)."""
    meta = {"choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open, "doc": doc}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for config defaults")
    return field(default=default, metadata=meta, **kw)


class Config:
    """Mixin: validation on construction. Subclasses are frozen dataclasses."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            name = f"{type(self).__name__.replace('Config', '').lower()}.{f.name}"
            value = _coerce(name, getattr(self, f.name), hints[f.name])
            object.__setattr__(self, f.name, value)
            _check_range(name, value, f.metadata)
        self.validate()

    def validate(self):  # cross-field checks in subclasses
        pass

    def retired_key(self, key: str, value) -> Optional[str]:
        """The error for ``key`` if it is a field this section once had (subclasses that retired fields say what
        replaced it), else None."""
        return None


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(name: str, value, tp):
    """Check ``value`` against the annotation ``tp``; allow int->float and list->tuple. Returns the coerced value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{name}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{name}: expected a list/tuple, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(name, v, args[0]) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{name}: expected {len(args)} items, got {value!r}")
        return tuple(_coerce(name, v, a) for v, a in zip(value, args))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


def _check_range(name, value, meta):
    if value is None:
        return
    if meta.get("choices") is not None:
        choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
        items = value if isinstance(value, tuple) else (value,)
        for v in items:
            if v not in choices:
                raise ConfigError(f"{name}: {v!r} is not allowed; choose from {list(choices)}")
    lo, hi = meta.get("lo"), meta.get("hi")
    nums = [v for v in _flatten(value) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for v in nums:
        if lo is not None and (v < lo or (meta.get("lo_open") and v == lo)):
            raise ConfigError(f"{name}: {v!r} is out of range; must be {'>' if meta.get('lo_open') else '>='} {lo}"
                              + (f" and <= {hi}" if hi is not None else ""))
        if hi is not None and v > hi:
            raise ConfigError(f"{name}: {v!r} is out of range; must be <= {hi}")


def _flatten(v):
    if isinstance(v, tuple):
        for x in v:
            yield from _flatten(x)
    else:
        yield v

def replace(cfg, **changes):
    """dataclasses.replace with a clear error for unknown keys (and for retired ones, what replaced them)."""
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(changes) - names)
    if unknown:
        prefix = type(cfg).__name__.replace("Config", "").lower()
        for u in unknown:
            retired = cfg.retired_key(u, changes[u]) if isinstance(cfg, Config) else None
            if retired:
                raise ConfigError(retired)
        raise ConfigError(f"unknown key(s) {', '.join(prefix + '.' + u for u in unknown)}; allowed: {sorted(names)}")
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def config_hash(cfg) -> str:
    """Short stable hash of a config (dataclass or dict): names run directories, so equal configs share results."""
    d = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    blob = json.dumps(_jsonable(d), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
