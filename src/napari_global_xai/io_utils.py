"""Atomic output writing: a result file either appears whole or not at all; inputs are never touched."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path

__all__ = [
    "atomic_path",
    "writing",
    "write_error",
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


#: Errors of a failing write whatever call raised them (a write inside a library: tifffile, PIL, zarr, NumPy).
_WRITE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EFBIG", "ENOSPC", "EDQUOT", "EROFS", "EIO") if hasattr(errno, name)
)
_WRITE_HINTS = {
    getattr(errno, "EFBIG", None): "over the file-size limit, ulimit -f, or the file system's largest file",
    getattr(errno, "ENOSPC", None): "the disk is full",
    getattr(errno, "EDQUOT", None): "the disk quota is used up",
}


def write_error(path: str | os.PathLike, exc: OSError):
    """An :class:`~napari_global_xai.errors.OutputFolderError` saying, in one line, which file could not be written
    and why (the OS's reason in words, not ``[Errno 27] ...``)."""
    from .errors import OutputFolderError

    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = _WRITE_HINTS.get(exc.errno)
    return OutputFolderError(f"cannot write {path}: {reason}" + (f" ({hint})" if hint else ""))


@contextlib.contextmanager
def writing(path: str | os.PathLike | None, any_os_error: bool = False):
    """Turn a failing write inside the block into one line naming ``path`` (:func:`write_error`; None: left as is).

    Only the errors of a failing write (disk full, file too large, quota, read-only, I/O) are turned, unless
    ``any_os_error``: a read of an input inside the block keeps its own error.
    """
    try:
        yield
    except OSError as exc:
        if path is not None and (any_os_error or exc.errno in _WRITE_ERRNOS):
            raise write_error(path, exc) from exc
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error removed.

    A failing write (:func:`writing`) raises :class:`~napari_global_xai.errors.OutputFolderError` naming ``path``;
    nothing is left behind.

    Examples
    --------
    >>> with atomic_path("out.tif") as tmp:          # doctest: +SKIP
    ...     tifffile.imwrite(tmp, data)
    """
    path = Path(path)
    with writing(path, any_os_error=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results should get the usual permissions
        with writing(path):
            yield Path(tmp)
        with writing(path, any_os_error=True):
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
