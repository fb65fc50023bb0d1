"""Provenance records written beside every result: what made it, from what, with which settings."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import platform
import shlex
import sys
from pathlib import Path

__all__ = ["file_fingerprint", "package_version", "provenance_record"]

_FINGERPRINT_BYTES = 1 << 20


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("napari-global-xai")
    except PackageNotFoundError:  # running from a source tree
        return "unknown"


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's size plus its first and last MiB (fast, stable for large stacks); "" if unreadable."""
    path = Path(path)
    try:
        size = path.stat().st_size
        h = hashlib.sha256(str(size).encode())
        with path.open("rb") as fh:
            h.update(fh.read(_FINGERPRINT_BYTES))
            if size > 2 * _FINGERPRINT_BYTES:
                fh.seek(-_FINGERPRINT_BYTES, 2)
                h.update(fh.read())
        return h.hexdigest()
    except OSError:
        return ""


def provenance_record(*, model=None, config=None, sources=(), **extra) -> dict:
    """A JSON-serialisable provenance dict.

    Parameters
    ----------
    model : LoadedModel, optional
        Its card name, card path and a fingerprint of the weights are recorded.
    config : dataclass, optional
        Recorded field by field.
    sources : iterable of str
        Input files; each gets a fast fingerprint (distinct files only, at most 10,000).
    **extra
        Any further JSON-serialisable facts.
    """
    record = {
        "package": "napari-global-xai",
        "version": package_version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "command": shlex.join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv and sys.argv[0] else "",
    }
    try:
        import torch

        record["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    if model is not None:
        card = model.card
        record["model"] = {
            "name": card.name,
            "card": card.path,
            "format": card.format,
            "weights_sha256_fast": file_fingerprint(card.weights_path()),
            "labels": list(card.labels),
            "device": str(model.device),
        }
    if config is not None:
        record["config"] = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    unique = list(dict.fromkeys(str(s) for s in sources))[:10_000]
    if unique:
        record["inputs"] = [{"path": s, "sha256_fast": file_fingerprint(s)} for s in unique]
    record.update(extra)
    return record
