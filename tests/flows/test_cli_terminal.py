"""The command as a person types it: in a terminal, where stderr is a tty and progress is drawn.

Tests that pipe the command's output never take the terminal paths (progress bars, a simulator
started by cocotb beside them); these run the CLI in a child process on a pseudo-terminal.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest


def run_in_terminal(argv, cwd, timeout=900):
    """Run ``argv`` with stdin, stdout and stderr on a pseudo-terminal; returns
    ``(exit status, everything it wrote)``."""
    master, slave = pty.openpty()
    # a terminal has a size; a fresh pty's is 0×0, where progress bars draw nothing
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                            start_new_session=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                proc.kill()
                pytest.fail(f"{' '.join(argv)} wrote nothing for {timeout} s")
            try:
                data = os.read(master, 65536)
            except OSError:           # EIO: the child closed its side of the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def llmloom(*args):
    return [sys.executable, "-m", "llmloom.flows.cli", *args]


def test_pty_helper_is_a_terminal(tmp_path):
    code, out = run_in_terminal(
        [sys.executable, "-c", "import sys; print(sys.stdin.isatty(), sys.stderr.isatty())"],
        tmp_path)
    assert code == 0 and "True True" in out


def test_run_in_a_terminal_shows_progress(tmp_path, rng, hdl_sim):
    a = rng.integers(-128, 128, (5, 12)).astype(np.int8)
    w = rng.integers(-128, 128, (12, 6)).astype(np.int8)
    np.savez(tmp_path / "in.npz", a=a, w=w)
    code, out = run_in_terminal(llmloom(
        "run", "gemm", "--set", "rows=2", "--set", "cols=2", "--inputs", "in.npz",
        "--outputs", "out.npz", "--sim", hdl_sim), tmp_path)
    assert code == 0, out[-3000:]
    assert "Traceback" not in out and "Bad file descriptor" not in out
    assert "bit-exact with the golden model" in out
    assert f"{hdl_sim}:" in out and "beat" in out        # the progress bar was drawn
    with np.load(tmp_path / "out.npz") as got:
        np.testing.assert_array_equal(got["c"], a.astype(np.int64) @ w.astype(np.int64))


def test_demo_in_a_terminal(tmp_path):
    code, out = run_in_terminal(llmloom("demo", "--blocks", "--quick", "--sim", "icarus"),
                                tmp_path)
    assert code == 0, out[-3000:]
    assert "Traceback" not in out
    assert "bit-exact against the golden model on every array" in out


def test_dev_llmloom_reads_paths_from_where_it_is_called(tmp_path, rng):
    """`./dev llmloom ...` from another folder: relative paths are the caller's, not the
    repository's (./dev changes into the repository to set the environment up)."""
    from pathlib import Path
    dev = Path(__file__).resolve().parents[2] / "dev"
    np.savez(tmp_path / "row.npz", x=rng.integers(-128, 128, (2, 8)).astype(np.int8),
             x_scale=np.float64(0.05))
    proc = subprocess.run([str(dev), "llmloom", "run", "softmax", "--inputs", "row.npz",
                           "--outputs", "y.npz", "--sim", "amaranth"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "y.npz").exists()


def test_demo_prints_as_it_goes_when_piped(tmp_path):
    """Piped (`./dev demo | tee log`), the first lines arrive while the demo still runs, not
    all at its end. The demo is stopped there: that it then runs to a bit-exact end on Icarus
    is :func:`test_demo_in_a_terminal`'s check (and, output not a terminal, as here,
    ``tests/flows/test_demo.py``'s), a full second run of it here only cost minutes."""
    proc = subprocess.Popen(llmloom("demo", "--blocks", "--quick", "--sim", "icarus"),
                            cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = proc.stdout.readline()
        running = proc.poll() is None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)     # the demo and the simulator it started
        proc.stdout.close()
        proc.wait(timeout=60)
    assert first.startswith("llmloom demo:")
    assert running, "the first line came only when the demo had ended"
