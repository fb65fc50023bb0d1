"""The settings of XNN concepts and of the three analyses (sanity check, group comparison, regions), with their
choice lists and defaults; importable without torch.

They follow :mod:`napari_global_xai.config` (the explain, PEPPR and SAG settings): validated on construction, a
``Literal``-typed field accepting only its listed values, and one-line ``ValueError`` messages naming the field. They
sit in this module of their own only to keep each module short; the two modules are the one place for every run's
settings. The CLI's defaults and the docks' widgets read them from here, so a new default is one edit here.

Each job's door takes its config after its inputs: ``run_concepts(stack, model, config)``,
``run_sanity(stack, model, config)``, ``run_compare(maps, values, config)``, ``run_regions(maps_by_label, config)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from .config import ExplainConfig, check_positive, validate_choices

__all__ = [
    "FeatureScale",
    "FEATURE_SCALES",
    "SANITY_METHODS",
    "ConceptConfig",
    "SanityConfig",
    "CompareConfig",
    "RegionsConfig",
]

#: How the pooled features are scaled before the concept encoder (see the Notes of :mod:`napari_global_xai.concepts`).
FeatureScale = Literal["layer", "feature"]
FEATURE_SCALES: tuple[str, ...] = get_args(FeatureScale)

#: Methods the sanity check runs when the user names none: one gradient-path method and one CAM.
SANITY_METHODS: tuple[str, ...] = ("ig", "gradcam")


def _seed(obj, name: str = "seed") -> None:
    check_positive(obj, name, minimum=0)


@dataclass
class ConceptConfig:
    """Settings of an XNN concept run (recorded in the outputs).

    Attributes
    ----------
    k : int
        Number of concepts.
    steps : int
        Full-batch Adam iterations.
    lr : float
    sparsity, pull_away, reconstruction : float
        Loss weights (faithfulness has weight 1).
    predictor_sparsity : float
        Weight of the L1 penalty on the prediction layer (each label rebuilt from few concepts).
    encoder_decay : float
        Weight of the ridge penalty on the concept directions (minimum-norm encoder).
    feature_scale : {"layer", "feature"}
        Divide the centred pooled features by one layer-wide scale (default) or standardise each feature.
    seed : int
    chunk_size : int
        Images per forward pass (progress and cancel granularity).
    top_n : int
        Images listed per concept.
    layer : str, optional
        Layer whose features are embedded; default the card's ``cam_layer`` (else the last spatial layer).

    Raises
    ------
    ValueError
        On construction, for a value outside a field's choices, a non-positive count or a negative weight.
    """

    k: int = 8
    steps: int = 800
    lr: float = 0.01
    sparsity: float = 0.2
    pull_away: float = 0.1
    reconstruction: float = 0.5
    predictor_sparsity: float = 0.05
    encoder_decay: float = 0.03
    feature_scale: FeatureScale = "layer"
    seed: int = 0
    chunk_size: int = 8
    top_n: int = 8
    layer: str | None = None

    def __post_init__(self):
        validate_choices(self)
        for name in ("k", "steps", "chunk_size", "top_n"):
            check_positive(self, name)
        _seed(self)
        if not float(self.lr) > 0:
            raise ValueError(f"ConceptConfig.lr must be positive, not {self.lr!r}")
        for name in ("sparsity", "pull_away", "reconstruction", "predictor_sparsity", "encoder_decay"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"ConceptConfig.{name} must be a non-negative weight, not {getattr(self, name)!r}")


def _default_sanity_methods() -> tuple[ExplainConfig, ...]:
    return tuple(ExplainConfig(method=m) for m in SANITY_METHODS)


@dataclass
class SanityConfig:
    """Settings of a model-parameter randomisation check (:func:`napari_global_xai.analyses.sanity.run_sanity_check`).

    Attributes
    ----------
    methods : tuple of ExplainConfig
        Methods to check, each with its parameters and post-processing (a method name is read as
        ``ExplainConfig(method=name)``); default :data:`SANITY_METHODS`.
    images : tuple of int, optional
        Indices of the images checked; default ``n_images`` evenly spaced images.
    n_images : int
        Sample size when ``images`` is not given.
    label : str, optional
        Label explained in every image; default each image's most probable label under the original model.
    depth : int, optional
        Group parameterised modules by their first ``depth`` name parts; None (or 0): every module alone.
    independent : bool
        Also randomise each layer alone (besides the cascade).
    seed : int
        Layer ``j`` (top down) is re-initialised with seed ``seed + j``.
    field_of_view_only : bool
        Compare maps only inside the field of view of the sample's mean image.

    Raises
    ------
    ValueError
        On construction: no method, a method that is not an ExplainConfig or a name, a negative image index or a
        non-positive size.
    """

    methods: tuple[ExplainConfig, ...] = field(default_factory=_default_sanity_methods)
    images: tuple[int, ...] | None = None
    n_images: int = 4
    label: str | None = None
    depth: int | None = None
    independent: bool = False
    seed: int = 0
    field_of_view_only: bool = True

    def __post_init__(self):
        methods = (self.methods,) if isinstance(self.methods, str | ExplainConfig) else tuple(self.methods)
        self.methods = tuple(ExplainConfig(method=m) if isinstance(m, str) else m for m in methods)
        if not self.methods:
            raise ValueError("SanityConfig.methods: give at least one method to check")
        bad = [m for m in self.methods if not isinstance(m, ExplainConfig)]
        if bad:
            raise ValueError(f"SanityConfig.methods: {bad[0]!r} is neither a method name nor an ExplainConfig")
        if self.images is not None:
            self.images = tuple(int(i) for i in self.images)
            if not self.images or min(self.images) < 0:
                raise ValueError(f"SanityConfig.images must be image indices ≥ 0, not {list(self.images)}")
        if self.depth == 0:
            self.depth = None  # the first 0 name parts: every module alone
        check_positive(self, "n_images")
        check_positive(self, "depth", allow_none=True)
        _seed(self)


@dataclass
class CompareConfig:
    """Settings of a group comparison (:func:`napari_global_xai.analyses.compare.compare_groups`).

    Attributes
    ----------
    groups : (str, str), optional
        The values forming group A and group B (B may be ``"rest"``); default the column's two values
        (:func:`napari_global_xai.analyses.compare.split_groups`).
    threshold : float, optional
        Numeric split: A = value > threshold (default the median of a numeric column with more than two values).
    n_permutations : int
        Random permutations of the group labels.
    alpha : float
        Level of the FDR and family-wise corrections.
    seed : int
        Seed of the permutations.

    Raises
    ------
    ValueError
        On construction: groups that are not two values, a threshold that is not a finite number, fewer than one
        permutation or an alpha outside (0, 1).
    """

    groups: tuple[str, str] | None = None
    threshold: float | None = None
    n_permutations: int = 1000
    alpha: float = 0.05
    seed: int = 0

    def __post_init__(self):
        if self.groups is not None:
            if isinstance(self.groups, str) or len(self.groups) != 2:
                raise ValueError(f"CompareConfig.groups must be two values (A, B), not {self.groups!r}")
            self.groups = tuple(str(g) for g in self.groups)
        if self.threshold is not None and not math.isfinite(float(self.threshold)):
            raise ValueError(f"CompareConfig.threshold must be a finite number, not {self.threshold!r}")
        check_positive(self, "n_permutations")
        if not 0.0 < float(self.alpha) < 1.0:
            raise ValueError(f"CompareConfig.alpha must be in (0, 1), not {self.alpha!r}")
        _seed(self)


@dataclass
class RegionsConfig:
    """Settings of the regions analysis's tables (:func:`napari_global_xai.analyses.regions.region_table`).

    Attributes
    ----------
    n_boot : int
        Bootstrap resamples of the images for the intervals (0 = none).
    seed : int
        Seed of the bootstrap.

    Raises
    ------
    ValueError
        On construction, for a negative number of resamples or seed.
    """

    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self):
        check_positive(self, "n_boot", minimum=0)
        _seed(self)
