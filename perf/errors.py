"""Errors the analytical model raises at users: one line each, naming the bad value and what is
allowed (or, for a constraint, the need, the capacity and how far over)."""

from __future__ import annotations

from ..hw.config import ConfigError

__all__ = ["ConfigError", "UnknownNameError", "UntimedError", "ConstraintError", "unknown"]


class UnknownNameError(ConfigError):
    """A model, device, GPU, preset or quantisation name is not in the catalogue."""


class UntimedError(ConfigError):
    """A valid design the cycle model has no timing of (say, a bus width it does not walk):
    a caller may carry on without the prediction. Any other exception from a prediction is a
    bug, not this."""


class ConstraintError(ValueError):
    """A design breaks a device constraint (DSP, LUT, on-chip memory, channels, capacity...).

    Attributes
    ----------
    constraint : str
        What is broken, e.g. ``"dsp"`` or ``"uram@SLR1"``.
    need, have : float
        The design's need and the device's capacity, in the constraint's unit.
    """

    def __init__(self, message, *, constraint="", need=0.0, have=0.0):
        super().__init__(message)
        self.constraint = constraint
        self.need = need
        self.have = have


def unknown(kind, name, known):
    """An :class:`UnknownNameError` listing the known names."""
    return UnknownNameError(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")


def over_message(what, need, have, device, unit=""):
    """``design needs 9,800 DSP, device xcu280 has 9,024 (8.6% over)``."""
    pct = (need - have) / have * 100 if have else float("inf")
    return (f"design needs {_fmt(need)}{unit} {what}, device {device} has {_fmt(have)}{unit} "
            f"({pct:.1f}% over)")


def _fmt(x):
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"
