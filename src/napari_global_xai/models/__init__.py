"""Models: registered architectures, model cards, safe loading, device choice.

Names are imported on first use, so ``from napari_global_xai.models import ModelCard`` (and
``napari_global_xai.models.card``) work without importing torch; loading or running a model imports it.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "DemoNet": "architectures",
    "build_architecture": "architectures",
    "register_architecture": "architectures",
    "DEMO_CARD_PATH": "card",
    "LoadedModel": "card",
    "ModelCard": "card",
    "ModelLoadError": "card",
    "load_demo_model": "loading",
    "load_model": "loading",
    "available_devices": "device",
    "resolve_device": "device",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
