"""Models: registered architectures, model cards, safe loading, device choice.

The card and loading names below import without torch (``from napari_global_xai.models import ModelCard``);
loading or running a model imports it. The architectures (:mod:`.architectures`: ``DemoNet``,
``register_architecture``, ...) and the device choice (:mod:`.device`) import torch and are imported from their
modules.
"""

from __future__ import annotations

from .card import DEMO_CARD_PATH, LoadedModel, ModelCard, ModelLoadError
from .loading import load_demo_model, load_model

__all__ = ["DEMO_CARD_PATH", "LoadedModel", "ModelCard", "ModelLoadError", "load_demo_model", "load_model"]
