"""Frozen, validated block configurations.

Every block has one keyword-only frozen dataclass. It is the single source of truth that the
RTL generator, the golden model, the testbench, the analytical model and the resource report all
read. Construction validates every field and raises :class:`ConfigError` (a ``ValueError``)
whose message names the field, the bad value and what is allowed, in one line.
"""

from __future__ import annotations

import dataclasses
import math
import typing

__all__ = ["ConfigError", "BlockConfig", "Range", "Choice", "field_specs"]


class ConfigError(ValueError):
    """A configuration value is out of range. The message is one line, fit for a user."""


@dataclasses.dataclass(frozen=True)
class Range:
    """An allowed integer (or float) interval, inclusive; ``hi=None`` is unbounded."""

    lo: float
    hi: float | None = None

    def check(self, name, value):
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                isinstance(value, float) and math.isnan(value)):
            raise ConfigError(f"{name}={value!r} is not a number; allowed: {self}")
        if value < self.lo or (self.hi is not None and value > self.hi):
            raise ConfigError(f"{name}={value!r} is out of range; allowed: {self}")

    def __str__(self):
        return f"{self.lo}..{self.hi}" if self.hi is not None else f">= {self.lo}"


@dataclasses.dataclass(frozen=True)
class Choice:
    """An allowed set of values."""

    values: tuple

    def check(self, name, value):
        if value not in self.values:
            raise ConfigError(f"{name}={value!r} is not allowed; allowed: {self}")

    def __str__(self):
        return " | ".join(str(v).lower() if isinstance(v, bool) else str(v)
                          for v in self.values)


def spec(default, allowed, doc):
    """A dataclass field with its allowed values and a one-line description."""
    return dataclasses.field(default=default, metadata={"allowed": allowed, "doc": doc})


class BlockConfig:
    """Base of all block configs: per-field checks from metadata, then :meth:`_validate`.

    Subclasses are ``@dataclasses.dataclass(frozen=True, kw_only=True)`` and declare fields with
    :func:`spec`. Cross-field rules go in ``_validate``.
    """

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            want = hints.get(f.name)
            if want is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{f.name}={value!r} must be an integer")
            if want is bool and not isinstance(value, bool):
                raise ConfigError(f"{f.name}={value!r} must be true or false")
            allowed = f.metadata.get("allowed")
            if allowed is not None and value is not None:
                allowed.check(f.name, value)
        self._validate()

    def _validate(self):
        pass

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in names:
                raise ConfigError(
                    f"unknown config field {key!r} for {type(self).__name__}; "
                    f"fields: {', '.join(sorted(names))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Build from a plain dict (a JSON file), naming any unknown key."""
        names = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in names:
                raise ConfigError(
                    f"unknown config field {key!r} for {cls.__name__}; "
                    f"fields: {', '.join(sorted(names))}")
        return cls(**values)


def field_specs(cls):
    """``[(name, type name, default, allowed, doc)]`` of a config class, for ``llmloom blocks``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        t = hints.get(f.name)
        out.append((f.name, getattr(t, "__name__", str(t)), f.default,
                    f.metadata.get("allowed"), f.metadata.get("doc", "")))
    return out
