"""Hardware blocks. ``BLOCKS`` maps each block's name to its config class and component class."""

from .gemm import Gemm, GemmConfig

__all__ = ["BLOCKS", "Gemm", "GemmConfig"]

BLOCKS = {
    "gemm": (GemmConfig, Gemm),
}
