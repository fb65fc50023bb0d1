"""Device choice in one place: ``"auto"`` picks CUDA, then MPS, then CPU."""

from __future__ import annotations

import torch

__all__ = ["available_devices", "resolve_device"]


def available_devices() -> list[str]:
    """Device names usable here, ``"auto"`` first (what a device dropdown should list)."""
    devices = ["auto"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``/``"cuda"``/``"mps"``/``"cpu"`` (or a ``torch.device``) into a usable ``torch.device``.

    Raises
    ------
    ValueError
        If an explicitly requested accelerator is not available.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        for candidate in available_devices()[1:]:
            return torch.device(candidate)
    kind = name.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available here; use 'auto' or 'cpu'")
    if kind == "mps" and "mps" not in available_devices():
        raise ValueError("device 'mps' requested but MPS is not available here; use 'auto' or 'cpu'")
    if kind not in ("cuda", "mps", "cpu"):
        raise ValueError(f"unknown device {device!r}; choose from {available_devices()}")
    return torch.device(name)
