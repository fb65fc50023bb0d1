"""Models: registered architectures, model cards, safe loading, device choice."""

from .architectures import DemoNet, build_architecture, register_architecture
from .card import DEMO_CARD_PATH, LoadedModel, ModelCard, ModelLoadError, load_demo_model, load_model
from .device import available_devices, resolve_device

__all__ = [
    "DemoNet",
    "build_architecture",
    "register_architecture",
    "DEMO_CARD_PATH",
    "LoadedModel",
    "ModelCard",
    "ModelLoadError",
    "load_demo_model",
    "load_model",
    "available_devices",
    "resolve_device",
]
