"""Atomic output writing: a result file either appears whole or not at all; inputs are never touched."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "atomic_write_bytes",
    "json_ready",
    "json_text",
    "save_json",
    "check_output_folder",
]


def check_output_folder(path: str | os.PathLike) -> Path:
    """Make sure results can be written into folder ``path``: create it if needed and write + remove a probe file.

    Called at the start of every pipeline that writes, so a bad output folder is reported before any model pass.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OutputFolderError
        ``path`` is an existing file, cannot be created, or is not writable (the message names it and the reason).

    Notes
    -----
    The probe is a real file (``tempfile.mkstemp``, removed at once) rather than ``os.access``: permissions alone
    miss read-only mounts, full disks' inode limits, ACLs and root's bypass of mode bits.
    """
    from .errors import OutputFolderError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"output folder {path} is a file, not a folder; give a folder (new or existing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputFolderError(f"cannot write to output folder {path}: {reason}") from exc
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error removed.

    Examples
    --------
    >>> with atomic_path("out.tif") as tmp:          # doctest: +SKIP
    ...     tifffile.imwrite(tmp, data)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results should get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_ready(value):
    """``value`` as plain JSON types: the one NaN policy of every JSON the product writes.

    Dicts (keys as JSON writes them: strings; numpy and other keys converted), lists and tuples are converted
    element by element; numpy arrays and scalars become lists and Python numbers, paths strings, and non-finite
    floats (NaN, ±inf) ``None`` (``null``), since ``NaN`` and ``Infinity`` are not JSON.

    Raises
    ------
    TypeError
        For a value of another type (``"not JSON serialisable: <type>"``).
    """
    import math

    import numpy as np

    if isinstance(value, dict):
        return {_json_key(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return str(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _json_key(key) -> str:
    import numpy as np

    if isinstance(key, str):
        return str(key)
    key = key.item() if isinstance(key, np.generic) else key
    return json.dumps(key) if key is None or isinstance(key, (bool, int, float)) else str(key)


def json_text(data, indent: int | None = 2) -> str:
    """``data`` as valid JSON text (:func:`json_ready`; NaN and ±inf as ``null``); ``indent=None``: one line."""
    return json.dumps(json_ready(data), indent=indent, allow_nan=False)


def save_json(path: str | os.PathLike, data) -> None:
    """Write ``data`` as valid JSON (:func:`json_text`), atomically."""
    atomic_write_text(path, json_text(data) + "\n")
