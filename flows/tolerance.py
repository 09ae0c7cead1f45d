"""How far a measured or estimated value may be from its reference: the one tolerance scheme of
the flows, for synthesis results held to their stored baselines (``flows.synth_baselines``)
and for resource estimates held to synthesis (``flows.resources``)."""

from __future__ import annotations

import dataclasses

__all__ = ["Tolerance"]

_KINDS = ("abs", "rel", "either", "min_rel")


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """``abs``: |value − reference| ≤ ``value``; ``rel``: ≤ ``value`` × |reference|;
    ``either``: within ``value`` relative or ``floor`` absolute, whichever is looser (small
    counts); ``min_rel``: not below (1 − ``value``) × reference, any amount above (a clock
    frequency may improve)."""

    kind: str
    value: float
    floor: float = 0.0

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"tolerance kind {self.kind!r} is not allowed; allowed: "
                             + " | ".join(_KINDS))

    def allows(self, value, reference):
        """Whether ``value`` is within this tolerance of ``reference``."""
        err = abs(value - reference)
        if self.kind == "abs":
            return err <= self.value
        if self.kind == "rel":
            return err <= self.value * abs(reference)
        if self.kind == "either":
            return err <= max(self.value * abs(reference), self.floor)
        return value >= (1 - self.value) * reference

    def __str__(self):
        if self.kind == "abs":
            return f"±{self.value:g}"
        if self.kind == "rel":
            return f"±{self.value:.0%}"
        if self.kind == "either":
            return f"±{self.value:.0%} or ±{self.floor:g}"
        return f"at most {self.value:.0%} below"
