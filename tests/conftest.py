"""Shared fixtures: one seed for all randomness, simulator availability, the slow marker."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# One BLAS thread per test process: the suite runs two pytest workers on two cores, and BLAS
# threads on top of them oversubscribe the machine (SmolLM2's float64 greedy run took 32 s
# instead of 2 s). Set before NumPy loads OpenBLAS; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest

_TESTS = Path(__file__).resolve().parent
SEED = int(os.environ.get("LLMLOOM_SEED", "20261125"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


#: The test folders from the heaviest tests (HDL simulations, Verilator builds, the CLI's runs)
#: to the lightest: run in this order, the long tests start first and the run ends on short
#: ones, so neither of ./dev test's two workers idles long at the end waiting for the other's
#: last long test (with --dist worksteal, which hands an idle worker the other's queued tests).
_HEAVY_FIRST = ("sim", "flows", "hw", "perf", "boards")


def _weight_rank(item):
    try:
        top = item.path.resolve().relative_to(_TESTS).parts[0]
    except ValueError:                      # a test file outside tests/
        return len(_HEAVY_FIRST)
    return _HEAVY_FIRST.index(top) if top in _HEAVY_FIRST else len(_HEAVY_FIRST)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_weight_rank)            # stable: each file's tests keep their order
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (a fast equivalent runs by default)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng(request):
    """A generator seeded from the one project seed and the test's name (stable per test)."""
    salt = sum(map(ord, request.node.nodeid))
    return np.random.default_rng([SEED, salt])


def simulator_available(sim):
    from llmloom.sim.tools import tool_env
    if sim == "amaranth":
        return True
    tool = "iverilog" if sim == "icarus" else "verilator"
    return shutil.which(tool, path=tool_env()["PATH"]) is not None


@pytest.fixture(params=["icarus", "verilator"])
def hdl_sim(request):
    """Each cocotb simulator; missing ones fail in CI (which installs them) and skip elsewhere."""
    return _required(request.param)


def _required(sim):
    """``sim``, or the test fails (in CI, which installs every simulator) or skips."""
    if not simulator_available(sim):
        if os.environ.get("CI"):
            pytest.fail(f"{sim} is not installed; CI must install it")
        pytest.skip(f"{sim} is not installed")
    return sim


@pytest.fixture
def verilator_sim():
    """Verilator, for a test whose check needs it (a reference run, the fast stall-free run);
    missing, it fails in CI and skips elsewhere, as :func:`hdl_sim`."""
    return _required("verilator")


@pytest.fixture
def icarus_sim():
    """Icarus, for a test run on one simulator only (the smallest case of a slow bench);
    missing, it fails in CI and skips elsewhere, as :func:`hdl_sim`."""
    return _required("icarus")


class _GarbagePadding:
    """A block harness whose input rows carry random values in the padding lanes of each
    row's last beat (the lanes past ``length``), as a producer that does not zero them would
    send: a block that pads rows must give the same outputs as with zeros there."""

    def __init__(self, harness, length, rng):
        self._inner, self._length, self._rng = harness, length, rng

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def drive(self, cfg, tensors):
        from llmloom.sim.streams import _data_geometry

        drive = self._inner.drive(cfg, tensors)
        comp = self._inner.component(cfg)
        comp._MustUse__silence = True           # only its port layouts are wanted here
        for port, words in drive.timed.items():
            offset, width, _, lanes, layout = _data_geometry(getattr(comp, port).payload.shape())
            tail = self._length - (-(-self._length // lanes) - 1) * lanes
            last = layout["last"].offset
            for idx, word in enumerate(words):
                if word >> last & 1:
                    for lane in range(tail, lanes):
                        junk = int(self._rng.integers(0, 1 << width))
                        word |= junk << (offset + lane * width)
                    words[idx] = word
        return drive


@pytest.fixture
def garbage_padding(rng):
    """``garbage_padding(harness, length)``: ``harness`` with random padding lanes (see
    :class:`_GarbagePadding`), for ``run_block``."""
    return lambda harness, length: _GarbagePadding(harness, length, rng)
