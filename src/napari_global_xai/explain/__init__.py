"""Image-wise saliency: one class per method, a registry, shared post-processing and the batching engine."""

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
from .engine import SUBSETS, ExplainConfig, ImageMapEngine, predict_probabilities, select_pairs
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
    "ExplainConfig",
    "ImageMapEngine",
    "predict_probabilities",
    "select_pairs",
    "NORMALISATIONS",
    "REDUCTIONS",
    "normalise_maps",
    "reduce_channels",
    "to_image_maps",
]
