"""The open flow's synthesis targets and what their netlists' cells count as.

:data:`TARGETS` comes from the device catalogue (``llmloom.hw.devices``): each target's family,
capacity and Yosys command, its part and nextpnr arguments; :data:`CELL_MAP` is the family's
cell table, :func:`count_resources` applies it to a netlist's cell counts.

* ``ice40-up5k``: ``synth_ice40 -dsp``, then ``nextpnr-ice40 --up5k --package sg48``;
* ``ecp5-25f`` / ``ecp5-45f`` / ``ecp5-85f``: ``synth_ecp5``, then ``nextpnr-ecp5`` (package
  CABGA381, speed grade 6, the ULX3S's parts);
* ``xcup``: ``synth_xilinx -family xcup``, Xilinx UltraScale+ area only (nextpnr-xilinx is not on
  PyPI): an estimate with a 7-series-like netlist, not a Vivado result.
"""

from __future__ import annotations

import dataclasses
import re

from ..hw.devices import DEVICES, FAMILIES, SYNTH_TARGETS, device_name

__all__ = ["Target", "TARGETS", "get_target", "CELL_MAP", "count_resources"]


@dataclasses.dataclass(frozen=True)
class Target:
    """A synthesis target: a device (or a family for area estimates) and how to build for it.

    ``capacity`` is the device's ``lut``/``ff``/``dsp``/``bram`` count in the units of
    :class:`~llmloom.flows.synth.SynthResult` (BRAM in the family's block: SB_RAM40_4K, DP16KD,
    RAMB36E2).
    """

    name: str
    family: str                 # ice40 | ecp5 | xcup
    device: str
    synth: str                  # the Yosys synthesis command, without -top/-json
    pnr: tuple | None           # nextpnr executable and device arguments, or None
    default_mhz: float          # the --freq given to nextpnr when the caller gives none
    capacity: dict
    note: str = ""


def _target(t):
    dev = DEVICES[t.device]
    return Target(t.name, dev.family, t.part, FAMILIES[dev.family].synth, t.pnr, t.default_mhz,
                  dev.capacity, t.note)


#: The open flow's targets, from the device catalogue (``llmloom.hw.devices``): the device's
#: family, capacity and Yosys command, the part and nextpnr arguments of the target.
TARGETS: dict[str, Target] = {name: _target(t) for name, t in SYNTH_TARGETS.items()}


def get_target(name):
    """The :class:`Target` called ``name``, or a one-line ``ValueError`` listing the valid
    ones."""
    if isinstance(name, Target):
        return name
    if name not in TARGETS and name.lower() not in FAMILIES and device_name(name) in TARGETS:
        name = device_name(name)     # an old spelling of one device: ice40up5k, up5k (not ecp5)
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; valid targets: {', '.join(TARGETS)}")
    return TARGETS[name]


# ---- cell types → resources -------------------------------------------------------------------
#: Per family: resource → {cell type (or regex): weight}, the catalogue's ``Family.cells``
#: (an ECP5 CCU2C carry cell is two LUT4s, an 18 Kb Xilinx block RAM half a RAMB36E2, ...).
CELL_MAP = {name: fam.cells for name, fam in FAMILIES.items()}


def count_resources(family, cells):
    """``{lut, ff, dsp, bram}`` from a ``{cell type: count}`` dict of a synthesised netlist."""
    out = {}
    for resource, table in CELL_MAP[family].items():
        total = 0.0
        for cell, count in cells.items():
            name = cell.lstrip("\\")
            for pattern, weight in table.items():
                if re.fullmatch(pattern, name):
                    total += weight * count
                    break
        out[resource] = int(total) if float(total).is_integer() else total
    return out
