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
    "CompareNormalisation",
    "COMPARE_NORMALISATIONS",
    "COMPARE_SMOOTH_FRACTION",
    "ConceptConfig",
    "SanityConfig",
    "CompareConfig",
    "RegionsConfig",
    "CohortReference",
    "COHORT_REFERENCES",
    "CohortConfig",
]

#: How the pooled features are scaled before the concept encoder (see the Notes of :mod:`napari_global_xai.concepts`).
FeatureScale = Literal["layer", "feature"]
FEATURE_SCALES: tuple[str, ...] = get_args(FeatureScale)

#: What a group comparison compares (see :mod:`napari_global_xai.analyses.compare_normalise`).
CompareNormalisation = Literal["raw", "shares"]
COMPARE_NORMALISATIONS: tuple[str, ...] = get_args(CompareNormalisation)
#: Default σ of the Gaussian a group comparison smooths every map with, as a fraction of the maps' shorter side
#: (8 px on 384 × 512 maps; see :func:`napari_global_xai.analyses.compare_normalise.smooth_maps`).
COMPARE_SMOOTH_FRACTION = 1 / 48

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
    prune_dead : bool
        Drop the concepts dead after training (active on no image; the run then has fewer than ``k``, and says how
        many went).
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
    prune_dead: bool = True
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
        Sample size when ``images`` is not given (16: on the shipped sample the intervals of the randomised |ρ| are
        then 0.05-0.08 wide and those of the unrelated-pair bar 0.07-0.18; docs/methods-guide.md).
    label : str, optional
        Label explained in every image; default each image's most probable label under the original model.
    depth : int, optional
        Group parameterised modules by their first ``depth`` name parts (default 1: the top-level blocks); None (or
        0): every module alone.
    independent : bool
        Also randomise each layer alone (besides the cascade; default on: both are shown).
    seed : int
        Layer ``j`` (top down) is re-initialised with seed ``seed + j``; the bootstrap's seed.
    n_boot : int
        Bootstrap resamples of the image-wise intervals (the global intervals use a fifth of them).
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
    n_images: int = 16
    label: str | None = None
    depth: int | None = 1
    independent: bool = True
    seed: int = 0
    n_boot: int = 1000
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
        check_positive(self, "n_boot")
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
    normalisation : {"raw", "shares"}
        What is compared (:mod:`napari_global_xai.analyses.compare_normalise`): the attributions as the method made
        them (``raw``, default: needs an explain run with ``normalisation="none"``; maps normalised per image are
        refused) or each map's shares of its total (``shares``: a group that concentrates its evidence is lower
        everywhere else by construction).
    max_permutations : int
        Pixels where the p-floor ``1/(1 + n_permutations)`` binds get 10× more permutations, stage after stage, up
        to this many (:func:`napari_global_xai.analyses.compare.compare_groups`); ``≤ n_permutations``: none.
    smooth_sigma : float, optional
        σ in pixels of the Gaussian every map is smoothed with before the test, the same for both groups
        (:func:`napari_global_xai.analyses.compare_normalise.smooth_maps`): None (default) =
        :data:`COMPARE_SMOOTH_FRACTION` of the maps' shorter side, 0 = the maps as they are.

    Raises
    ------
    ValueError
        On construction: groups that are not two values, a threshold that is not a finite number, fewer than one
        permutation, an alpha outside (0, 1), an unknown normalisation or a negative or non-finite smoothing σ.
    """

    groups: tuple[str, str] | None = None
    threshold: float | None = None
    n_permutations: int = 1000
    alpha: float = 0.05
    seed: int = 0
    normalisation: CompareNormalisation = "raw"
    max_permutations: int = 100_000
    smooth_sigma: float | None = None

    def __post_init__(self):
        if self.groups is not None:
            if isinstance(self.groups, str) or len(self.groups) != 2:
                raise ValueError(f"CompareConfig.groups must be two values (A, B), not {self.groups!r}")
            self.groups = tuple(str(g) for g in self.groups)
        if self.threshold is not None and not math.isfinite(float(self.threshold)):
            raise ValueError(f"CompareConfig.threshold must be a finite number, not {self.threshold!r}")
        validate_choices(self)
        check_positive(self, "n_permutations")
        check_positive(self, "max_permutations")
        if not 0.0 < float(self.alpha) < 1.0:
            raise ValueError(f"CompareConfig.alpha must be in (0, 1), not {self.alpha!r}")
        if self.smooth_sigma is not None:
            if isinstance(self.smooth_sigma, bool) or not isinstance(self.smooth_sigma, (int, float)):
                raise ValueError(f"CompareConfig.smooth_sigma must be a number of pixels, not {self.smooth_sigma!r}")
            if not (math.isfinite(self.smooth_sigma) and self.smooth_sigma >= 0):
                raise ValueError(f"CompareConfig.smooth_sigma must be finite and ≥ 0, not {self.smooth_sigma!r}")
            self.smooth_sigma = float(self.smooth_sigma)
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


#: What a cohort's global maps are judged against: the explain run's stored global maps (``global``: its subset,
#: nothing read), every image of the study with a stored map (``study``), or those outside the cohort (``rest``).
CohortReference = Literal["global", "study", "rest"]
COHORT_REFERENCES: tuple[str, ...] = get_args(CohortReference)


@dataclass
class CohortConfig:
    """Settings of a cohort's global maps (:func:`napari_global_xai.cohort.pipeline.run_cohort`).

    Attributes
    ----------
    where : str, optional
        Row filter over the study table's columns, e.g. ``"outcome == 'FP' and age >= 60"``
        (:mod:`napari_global_xai.cohort.where`); default every image.
    label : str, optional
        The label whose maps are averaged, and whose truth / probability / outcome the short columns ``truth``,
        ``prob``, ``pred`` and ``outcome`` hold; default every target label (and the overall map), no short columns.
    threshold : float
        Probability at or above which a label is predicted (the outcome TP / FP / FN / TN).
    reference : {"global", "study", "rest"}
        What the cohort's maps are compared with (:data:`COHORT_REFERENCES`).

    Raises
    ------
    ValueError
        On construction, for a threshold outside [0, 1] or an unknown reference.
    """

    where: str | None = None
    label: str | None = None
    threshold: float = 0.5
    reference: CohortReference = "global"

    def __post_init__(self):
        validate_choices(self)
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"CohortConfig.threshold must be a probability in [0, 1], not {self.threshold!r}")
        if self.where is not None and not str(self.where).strip():
            self.where = None
