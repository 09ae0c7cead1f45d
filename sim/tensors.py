"""Reading tensor files (``.npz``) the way every command does: one clear error per bad file.

A tensor file may be missing, not a zip archive at all, a damaged one, or hold pickled Python
objects (which are never loaded: unpickling runs code); a float tensor may hold NaN or
infinity, which no quantiser can scale. Each of these is a :class:`TensorFileError` (a
``ValueError``) whose one line names the file, the tensor and, for a non-finite value, where it
is.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["TensorFileError", "read_npz", "check_finite"]


class TensorFileError(ValueError):
    """A tensor file that cannot be used; one line saying which and why."""


def check_finite(tensors, source):
    """Raise :class:`TensorFileError` if a float tensor of ``tensors`` (name → array) holds NaN
    or ±inf, naming ``source``, the tensor, how many and the first index."""
    for name, value in tensors.items():
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.floating) and \
                not np.issubdtype(value.dtype, np.complexfloating):
            continue
        bad = ~np.isfinite(value)
        if bad.ndim == 0 and bad:
            raise TensorFileError(f"{source}: {name}={value.item()} is not allowed; allowed: "
                                  "a finite number")
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            kind = "NaN" if np.isnan(value[first]) else "infinity"
            index = ", ".join(map(str, first))
            raise TensorFileError(
                f"{source}: tensor {name!r} holds {int(bad.sum())} non-finite value(s), the "
                f"first {kind} at [{index}]; allowed: finite numbers")


def read_npz(path, what="input file"):
    """All arrays of the ``.npz`` at ``path`` (``what`` names it in errors), float ones
    checked finite."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
            if magic.startswith(b"\x93NUMPY"):
                raise TensorFileError(f"{what} {path} is a single .npy array, not an .npz "
                                      "archive of named tensors (write it with np.savez)")
            if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
                raise TensorFileError(f"{what} {path} is not a readable .npz archive (not a zip "
                                      "file; write one with np.savez)")
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as data:
                tensors = {k: data[k] for k in data.files}
    except TensorFileError:
        raise
    except FileNotFoundError:
        raise TensorFileError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise TensorFileError(f"{what} {path} is a directory, not an .npz file") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise TensorFileError(
                f"{what} {path} holds pickled Python objects, which are never loaded; "
                "allowed: numeric arrays (np.savez of int or float arrays)") from None
        raise TensorFileError(f"{what} {path} is not an .npz archive of arrays "
                              f"({_first_line(exc)})") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError,
            KeyError) as exc:
        raise TensorFileError(f"{what} {path} is not a readable .npz archive (corrupt or "
                              f"truncated: {_first_line(exc)})") from None
    check_finite(tensors, f"{what} {path}")
    return tensors


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
