"""The saliency method library: one class per method, a registry, shared post-processing and the batching engine.

The explain *job* (the CLI verb, the dock, the store) is :mod:`napari_global_xai.explain`; it computes maps with
this library.
"""

from .base import (
    METHODS,
    MethodUnavailable,
    SaliencyMethod,
    SaliencyWarning,
    ScoreModule,
    get_method,
    method_names,
    register_method,
)
from .engine import SUBSETS, ImageMapEngine, predict_probabilities, select_pairs
from .postprocess import NORMALISATIONS, REDUCTIONS, normalise_maps, reduce_channels, to_image_maps

__all__ = [
    "METHODS",
    "SaliencyMethod",
    "MethodUnavailable",
    "SaliencyWarning",
    "ScoreModule",
    "get_method",
    "method_names",
    "register_method",
    "SUBSETS",
    "ImageMapEngine",
    "predict_probabilities",
    "select_pairs",
    "NORMALISATIONS",
    "REDUCTIONS",
    "normalise_maps",
    "reduce_channels",
    "to_image_maps",
]
