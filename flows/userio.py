"""What the commands read from and write for the user: config values, tensors, output files.

Outputs are all-or-nothing. A command declares every output path with :meth:`Outputs.add`
before it starts any work (so a path in a missing directory fails at once, not after an hour of
simulation), stages each file's contents in memory as it is produced, and writes them all in
:meth:`Outputs.commit` at the very end: if the command fails anywhere before, nothing is
written; files appear under their own names only (each is written to a hidden file beside it
and renamed), with the permissions of any new file (0666 less the umask).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import stat
from pathlib import Path

__all__ = ["UserError", "parse_sets", "load_config_values", "load_npz", "Outputs",
           "PLOT_FORMATS"]

#: the figure formats ``--plot`` writes (by the file's suffix)
PLOT_FORMATS = ("png", "svg", "pdf")


class UserError(ValueError):
    """A problem with what the user asked for; printed as one line."""


def parse_sets(items):
    """``["rows=8", "causal=true", "approximation=tanh"]`` → dict, values read as JSON
    (bare words are strings)."""
    values = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UserError(f"malformed --set {item!r}; expected key=value, e.g. --set rows=8")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            if not raw or not all(ch.isalnum() or ch in "_-." for ch in raw):
                raise UserError(f"malformed value in --set {item!r}; expected a JSON value "
                                "(8, 0.5, true, \"text\") or a bare word") from None
            value = raw
        values[key] = value
    return values


def load_config_values(path, sets):
    """Config fields from a JSON file (``--config``), then ``--set`` overrides."""
    values = {}
    if path:
        try:
            values = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UserError(f"config file {path} does not exist") from None
        except IsADirectoryError:
            raise UserError(f"config file {path} is a directory") from None
        except UnicodeDecodeError:
            raise UserError(f"config file {path} is not text (expected a JSON object)") \
                from None
        except json.JSONDecodeError as exc:
            raise UserError(f"config file {path} is not valid JSON ({exc.msg} at line "
                            f"{exc.lineno})") from None
        if not isinstance(values, dict):
            raise UserError(f"config file {path} must hold a JSON object of config fields")
    values.update(parse_sets(sets))
    return values


def load_npz(path, what="input file"):
    """The arrays of an ``.npz`` file, every float one checked finite
    (:func:`llmloom.sim.tensors.read_npz`); a missing, corrupt or pickled file is a
    :class:`UserError`."""
    from ..sim.tensors import TensorFileError, read_npz
    try:
        return read_npz(path, what)
    except TensorFileError as exc:
        raise UserError(str(exc)) from None


class Outputs:
    """A command's output files, written together at the end or not at all.

    >>> out = Outputs()
    >>> out.add("c.npz", "--outputs")          # before any work: checks the path
    >>> ...                                     # the work
    >>> with out.open("c.npz", "wb") as fh:     # staged in memory
    ...     np.savez(fh, c=c)
    >>> out.commit()                            # every file written, or none
    """

    def __init__(self):
        self._paths = {}        # Path → option name
        self._staged = {}       # Path → bytes

    def add(self, path, option):
        """Declare ``path`` (given with ``option``) as an output; ``None`` is ignored. Raises
        :class:`UserError` when it cannot be written: its directory is missing or not
        writable, it is a directory, or another output has the same path."""
        if path is None:
            return None
        path = Path(path)
        where = path.parent if str(path.parent) else Path(".")
        if not where.is_dir():
            raise UserError(f"{option} {path}: output directory {where} does not exist")
        if path.is_dir():
            raise UserError(f"{option} {path} is a directory; expected a file name")
        if path.exists() and not os.access(path, os.W_OK) or \
                not path.exists() and not os.access(where, os.W_OK | os.X_OK):
            raise UserError(f"{option} {path}: permission denied")
        key = path.resolve()
        if key in self._paths:
            raise UserError(f"{option} {path} is also the {self._paths[key]} file; give each "
                            "output its own path")
        self._paths[key] = option
        return path

    def _key(self, path):
        key = Path(path).resolve()
        if key not in self._paths:
            raise KeyError(f"{path} was not declared with Outputs.add")
        return key

    @contextlib.contextmanager
    def open(self, path, mode="w"):
        """A file object whose contents become ``path`` at :meth:`commit`."""
        key = self._key(path)
        buf = io.BytesIO() if "b" in mode else io.StringIO()
        yield buf
        data = buf.getvalue()
        self._staged[key] = data if isinstance(data, bytes) else data.encode()

    def write_text(self, path, text):
        with self.open(path) as fh:
            fh.write(text)

    def write_json(self, path, value, **kwargs):
        with self.open(path) as fh:
            json.dump(value, fh, indent=2, **kwargs)
            fh.write("\n")

    def commit(self):
        """Write every staged file. Each goes to a hidden file beside its path first, and only
        once all of them are complete are they renamed into place; on any failure the hidden
        files are removed and :class:`UserError` names the output, never a temporary file."""
        temps = []
        try:
            for key, data in self._staged.items():
                if key.exists() and not stat.S_ISREG(key.stat().st_mode):
                    continue            # a device or pipe (/dev/null): written below, as is
                tmp = key.with_name(f".{key.name}.{secrets.token_hex(4)}.part")
                try:
                    # 0o666 through the umask, as for any file a program creates
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                    temps.append((tmp, key))
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                except OSError as exc:
                    raise UserError(f"{self._paths[key]} {key}: cannot write "
                                    f"({exc.strerror or exc})") from None
            for key, data in self._staged.items():
                if key.exists() and not stat.S_ISREG(key.stat().st_mode):
                    try:
                        with open(key, "wb") as fh:
                            fh.write(data)
                    except OSError as exc:
                        raise UserError(f"{self._paths[key]} {key}: cannot write "
                                        f"({exc.strerror or exc})") from None
            for tmp, key in temps:
                try:
                    os.replace(tmp, key)
                except OSError as exc:
                    raise UserError(f"{self._paths[key]} {key}: cannot write "
                                    f"({exc.strerror or exc})") from None
            temps.clear()
        finally:
            for tmp, _ in temps:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self._staged.clear()

    @staticmethod
    def check_dir(path, option):
        """An output directory (made, or filled, only at the end of the command): it may exist
        as a directory, else its parent must."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UserError(f"{option} {path} exists and is not a directory")
        parent = path.resolve().parent
        if not parent.is_dir():
            raise UserError(f"{option} {path}: output directory {parent} does not exist")
        if not os.access(path if path.exists() else parent, os.W_OK | os.X_OK):
            raise UserError(f"{option} {path}: permission denied")
        return path

    @staticmethod
    def plot_format(path, option="--plot"):
        """The figure format of ``path`` from its suffix, or :class:`UserError`."""
        if path is None:
            return None
        fmt = Path(path).suffix.lower().lstrip(".")
        if fmt not in PLOT_FORMATS:
            raise UserError(f"{option} {path}: unknown figure format {fmt or '(no suffix)'!r};"
                            f" allowed: {', '.join('.' + f for f in PLOT_FORMATS)}")
        return fmt
