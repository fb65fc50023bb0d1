"""Device choice in one place: which of :data:`napari_global_xai.config.DEVICES` this machine has, and what a name
resolves to (``"auto"``, the default: CUDA, then MPS, then the CPU).

The names and the default live in :mod:`napari_global_xai.config` (torch-free, so the CLI's help and the docks'
first choices read them without torch); this module answers for the machine and imports torch.
"""

from __future__ import annotations

import torch

from ..config import DEFAULT_DEVICE, DEVICES

__all__ = ["available_devices", "resolve_device"]


def _has(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return mps is not None and mps.is_available()
    return kind == "cpu"


def available_devices() -> list[str]:
    """Device names usable here, ``"auto"`` first (what a device dropdown should list)."""
    return [DEFAULT_DEVICE] + [d for d in DEVICES if d != DEFAULT_DEVICE and _has(d)]


def resolve_device(device: str | torch.device = DEFAULT_DEVICE) -> torch.device:
    """Turn ``"auto"``/``"cuda"``/``"mps"``/``"cpu"`` (or ``"cuda:1"``, or a ``torch.device``) into a usable
    ``torch.device``.

    Raises
    ------
    ValueError
        If an explicitly requested accelerator is not available, or the name is none of :data:`DEVICES`.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device(available_devices()[1])
    kind = name.split(":")[0]
    if kind not in DEVICES or kind == "auto":
        raise ValueError(f"unknown device {device!r}; choose from {available_devices()}")
    if not _has(kind):
        raise ValueError(f"device {kind!r} requested but {kind.upper()} is not available here; use 'auto' or 'cpu'")
    return torch.device(name)
