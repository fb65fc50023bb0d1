"""Every run's settings and every choice list, in one place and importable without torch.

:class:`ExplainConfig`, :class:`PepprConfig` and :class:`SagConfig` are validated on construction: a field typed
with a ``Literal`` accepts only its listed values, so a typo fails at once with the choices named, never deep in a
run (or, worse, silently meaning something else). The CLI's ``choices=`` and defaults and the docks' combo boxes
read the tuples below, so a new choice is one edit here.

The settings of XNN concepts and the three analyses (``ConceptConfig``, ``SanityConfig``, ``CompareConfig``,
``RegionsConfig``) follow the same rules in :mod:`napari_global_xai.analysis_config` (split off to keep each module
short; it validates with :func:`validate_choices` and :func:`check_positive` from here).
The device names a user may give (:data:`DEVICES`) are here too; :mod:`napari_global_xai.models.device` resolves them.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = [
    "Subset",
    "SUBSETS",
    "SUBSET_RULES",
    "Compute",
    "COMPUTE",
    "Reduction",
    "REDUCTIONS",
    "Normalisation",
    "NORMALISATIONS",
    "Autocast",
    "AUTOCASTS",
    "Fill",
    "FILLS",
    "CONSTANT_FILLS",
    "check_fill",
    "Mode",
    "MODES",
    "MapsFor",
    "MAPS_FOR",
    "FigureFormat",
    "FIGURE_FORMATS",
    "Device",
    "DEVICES",
    "DEFAULT_DEVICE",
    "BLUR_SIGMA_FRACTION",
    "DEFAULT_FRACTIONS",
    "complete_fractions",
    "ExplainConfig",
    "PepprConfig",
    "SagConfig",
    "validate_choices",
    "check_positive",
    "signature_defaults",
]

#: Which images enter a label's global map (methods.md §1.6; the paper's rule is unknown, so it is selectable).
#: ``auto`` = ``positive`` when labels are known, else ``predicted``.
Subset = Literal["auto", "positive", "predicted", "true_positive", "all"]
SUBSETS: tuple[str, ...] = get_args(Subset)
#: The rules :func:`~napari_global_xai.saliency.engine.select_pairs` applies (``auto`` resolved before).
SUBSET_RULES: tuple[str, ...] = SUBSETS[1:]
Compute = Literal["subset", "all"]
COMPUTE: tuple[str, ...] = get_args(Compute)
Reduction = Literal["abs_sum", "sum", "pos_sum", "l2"]
REDUCTIONS: tuple[str, ...] = get_args(Reduction)
Normalisation = Literal["mass", "max", "none"]
NORMALISATIONS: tuple[str, ...] = get_args(Normalisation)
Autocast = Literal[None, "bf16", "fp16"]
AUTOCASTS: tuple[str, ...] = tuple(a for a in get_args(Autocast) if a is not None)

#: Value of erased / hidden pixels (PEPPR, deletion/insertion, SAG, Score-CAM): :mod:`napari_global_xai.perturb.fills`.
Fill = Literal["zero", "black", "blur", "impute"]
FILLS: tuple[str, ...] = get_args(Fill)
CONSTANT_FILLS: tuple[str, ...] = ("zero", "black")


def check_fill(fill: str) -> str:
    """``fill`` when it is one of :data:`FILLS`; ``ValueError`` naming the choices otherwise (the one check every
    fill consumer, config or engine, goes through)."""
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; choose from {', '.join(FILLS)}")
    return fill


#: Gaussian σ of the ``blur`` fill as a fraction of the shorter image side: the official I-GOS baseline (a 51 × 51
#: kernel with σ = 50 on 224-px images, i.e. an effective σ of about 14.7 px = 6.6 %). One default for every user.
BLUR_SIGMA_FRACTION = 14.7 / 224

Mode = Literal["erase", "restore"]
MODES: tuple[str, ...] = get_args(Mode)
MapsFor = Literal["labelwise", "overall"]
MAPS_FOR: tuple[str, ...] = get_args(MapsFor)
#: PEPPR fractions (methods.md §1.7: 0 to 100 %, finer at the start where curves move most).
DEFAULT_FRACTIONS: tuple[float, ...] = (0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def complete_fractions(fractions) -> tuple[tuple[float, ...], list[float]]:
    """User-given PEPPR fractions, checked, with the endpoints 0 and 1 added when missing.

    :class:`PepprConfig` calls it on construction, so every front end (CLI, docks, Python API) runs on the same grid.

    Parameters
    ----------
    fractions : sequence of float
        Strictly increasing values in ``[0, 1]`` (e.g. ``0 0.05 0.1 0.5 1`` for a quick check).

    Returns
    -------
    (tuple of float, list of float)
        The fractions to use and the endpoints that were added (empty when both were given).

    Raises
    ------
    UsageError
        Empty, not finite, outside ``[0, 1]``, or not strictly increasing (the message shows the values given).

    Notes
    -----
    Endpoints are added rather than required: the curves are read against them (erase at 0 and restore at 1 score
    the intact image; the restoration point and the areas assume both ends), so a grid without them would give
    scores that cannot be compared with a default run. Unsorted input is refused rather than sorted, since it is
    more likely a typo than a wish.
    """
    import math

    from .errors import UsageError

    values = [float(v) for v in fractions]
    if not values or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
        raise UsageError(f"fractions must be numbers in [0, 1], got {values}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise UsageError(f"fractions must be strictly increasing (no repeats), got {values}")
    added = [e for e in (0.0, 1.0) if e not in values]
    return tuple(sorted(values + added)), added


#: How an explain run stores its image-wise maps: the resumable, compressed Zarr store, or one float32 TIFF (small
#: stacks); and their precision in the store (global maps are always computed from float32 maps).
OutputFormat = Literal["zarr", "tiff"]
FORMATS: tuple[str, ...] = get_args(OutputFormat)
DEFAULT_FORMAT = "zarr"
MapDtype = Literal["float16", "float32"]
MAP_DTYPES: tuple[str, ...] = get_args(MapDtype)
DEFAULT_MAP_DTYPE = "float16"

FigureFormat = Literal["png", "svg", "pdf"]
FIGURE_FORMATS: tuple[str, ...] = get_args(FigureFormat)

#: Where a model (or the compare test's matmuls) runs: ``auto`` picks CUDA, then MPS, then the CPU
#: (:func:`napari_global_xai.models.device.resolve_device`; an index such as ``cuda:1`` is accepted there too).
Device = Literal["auto", "cuda", "mps", "cpu"]
DEVICES: tuple[str, ...] = get_args(Device)
DEFAULT_DEVICE = "auto"


def signature_defaults(function) -> dict:
    """The keyword defaults of a pipeline function, so the CLI and the docks show them instead of repeating them.

    Parameters
    ----------
    function : callable
        e.g. :func:`napari_global_xai.models.train_demo.train_demo_model`.

    Returns
    -------
    dict
        ``{parameter name: default}`` for every parameter that has one.
    """
    import inspect

    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _literal_choices(annotation) -> tuple | None:
    """The allowed values of a ``Literal[...]`` annotation (also inside ``tuple[Literal, ...]``), else None."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return get_args(annotation)
    return None


def _element_literal(annotation) -> tuple | None:
    """The allowed element values of ``tuple[Literal[...], ...]``, else None."""
    if typing.get_origin(annotation) is tuple:
        args = get_args(annotation)
        if args and _literal_choices(args[0]) is not None:
            return _literal_choices(args[0])
    return None


def validate_choices(obj) -> None:
    """Check every ``Literal``-typed field of a dataclass instance (and ``tuple[Literal, ...]`` elements).

    Raises
    ------
    ValueError
        ``"<Class>.<field>: unknown value 'x'; choose from a, b, c"``.
    """
    hints = typing.get_type_hints(type(obj))  # names resolved in the class's own module
    for f in dataclasses.fields(obj):
        annotation = hints.get(f.name)
        value = getattr(obj, f.name)
        choices = _literal_choices(annotation)
        if choices is not None and value not in choices:
            raise ValueError(
                f"{type(obj).__name__}.{f.name}: unknown value {value!r}; choose from "
                f"{', '.join(str(c) for c in choices)}"
            )
        choices = _element_literal(annotation)
        if choices is not None:
            bad = [v for v in value if v not in choices]
            if bad:
                raise ValueError(
                    f"{type(obj).__name__}.{f.name}: unknown value {bad[0]!r}; choose from "
                    f"{', '.join(str(c) for c in choices)}"
                )


def check_positive(obj, name: str, allow_none: bool = False, minimum: int = 1) -> None:
    """``ValueError`` (``"<Class>.<field> must be a positive integer, not 0"``) unless the field is an integer of at
    least ``minimum`` (1: positive, 0: non-negative), or None when ``allow_none``."""
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        kind = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f"≥ {minimum}"
        raise ValueError(f"{type(obj).__name__}.{name} must be a {kind} integer, not {value!r}")


@dataclass
class ExplainConfig:
    """Everything that decides the image-wise maps (recorded as provenance).

    Attributes
    ----------
    method : str
        Registered saliency method name (see :func:`napari_global_xai.explain.method_names`; checked by the engine,
        which knows the registry).
    params : dict
        Method parameters (defaults per method otherwise).
    targets : list of str, optional
        Labels to explain; default every model label.
    subset : {"auto", "positive", "predicted", "true_positive", "all"}
        Images that enter a label's global map; ``auto`` = ``positive`` when labels are known, else ``predicted``.
    threshold : float
        Probability threshold for ``predicted`` / ``true_positive``.
    compute : {"subset", "all"}
        Compute maps only for the pairs in the subset (default, cheapest) or for every pair.
    reduction, normalisation : str
        Channel reduction and per-image normalisation (:mod:`napari_global_xai.saliency.postprocess`).
    probability : bool
        Explain probabilities instead of logits.
    maps_per_call : int, optional
        Maps per method call; default chosen from the device and the method's cost.
    chunk_size : int
        Images per chunk (the unit of progress, cancel and writing).
    autocast : {None, "bf16", "fp16"}
        Mixed precision for the model passes on CUDA (ignored elsewhere); maps are returned in float32.
    include_stalled : bool
        Average maps the method flagged as stalled (I-GOS/iGOS++ optimisations that did not move, replaced by their
        recovery map) into the global maps too; default False: they are counted and reported instead.

    Raises
    ------
    ValueError
        On construction, for a value outside a field's choices or a non-positive size.
    """

    method: str = "ig"
    params: dict = field(default_factory=dict)
    targets: list[str] | None = None
    subset: Subset = "auto"
    threshold: float = 0.5
    compute: Compute = "subset"
    reduction: Reduction = "abs_sum"
    normalisation: Normalisation = "mass"
    probability: bool = False
    maps_per_call: int | None = None
    chunk_size: int = 16
    autocast: Autocast = None
    include_stalled: bool = False

    def __post_init__(self):
        validate_choices(self)
        check_positive(self, "chunk_size")
        check_positive(self, "maps_per_call", allow_none=True)
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"ExplainConfig.threshold must be a probability in [0, 1], not {self.threshold!r}")


@dataclass
class PepprConfig:
    """Settings of a PEPPR run (methods.md §1.7) besides the model, stack and maps.

    Attributes
    ----------
    fractions : tuple of float
        Fractions of pixels erased / restored, strictly increasing in ``[0, 1]``; 0 and 1 are added when missing
        (:func:`complete_fractions`, on construction).
    fill : {"zero", "black", "blur", "impute"}
        Value of erased pixels; ``blur`` uses σ = ``fill_sigma`` or :data:`BLUR_SIGMA_FRACTION` of the shorter side.
    fill_sigma : float, optional
    random_seeds : int
        Random-order baselines (seeds ``0 .. random_seeds - 1``); 0 = none.
    maps_for : {"labelwise", "overall"}
        Each label scored with its own global map, or every label with the overall map.
    include_reverse, specificity : bool
        Reverse-order baseline; every label scored with every other label's map.
    eval_split, map_split : str, optional
        Circularity guard (labels ``split`` column).
    filled_fractions : tuple of float
        Fractions at which erased / restored images are written; each is moved to the nearest point of
        ``fractions`` (on construction), so every written image is a point on the curves.
    tolerance : float
        Restoration point: the fraction where the restore curve is back within ``tolerance`` of the full score.
    tie_seed : int
        Seed that breaks ties in a map's pixel ranking.
    batch_size, chunk_size : int, optional
        Images per model pass and per unit of progress (default from the device).
    """

    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    fill: Fill = "zero"
    fill_sigma: float | None = None
    random_seeds: int = 5
    maps_for: MapsFor = "labelwise"
    include_reverse: bool = True
    specificity: bool = True
    eval_split: str | None = None
    map_split: str | None = None
    filled_fractions: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5)
    tolerance: float = 0.01
    tie_seed: int = 0
    batch_size: int | None = None
    chunk_size: int | None = None

    def __post_init__(self):
        validate_choices(self)
        self.fractions, _ = complete_fractions(self.fractions)
        self.filled_fractions = tuple(float(f) for f in self.filled_fractions)
        bad = [f for f in self.filled_fractions if not 0.0 <= f <= 1.0]
        if bad:
            raise ValueError(f"PepprConfig.filled_fractions: {bad[0]!r} is not a fraction in [0, 1]")
        grid = self.fractions  # the filmstrip shows points of the curves only
        self.filled_fractions = tuple(sorted({min(grid, key=lambda g: abs(g - f)) for f in self.filled_fractions}))
        seeds = self.random_seeds
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 0:
            raise ValueError(f"PepprConfig.random_seeds must be a non-negative integer (0 = none), not {seeds!r}")
        check_positive(self, "batch_size", allow_none=True)
        check_positive(self, "chunk_size", allow_none=True)


@dataclass
class SagConfig:
    """Settings of a structured-attention-graph run (methods.md §2.6; official values noted per field).

    Attributes
    ----------
    method : str
        Saliency that ranks the patches (official: I-GOS; ``gradcam`` is ~3× faster).
    method_params : dict
        Its parameters (for I-GOS they override the official SAG values).
    fill : {"zero", "black", "blur", "impute"}
        Value of hidden patches (official: black; ``blur`` here: a constant fill makes sharp-edged patches that
        models read as lesions).
    fill_sigma : float, optional
        Blur σ in pixels (default :data:`BLUR_SIGMA_FRACTION` of the shorter side).
    grid : (int, int), optional
        Patch grid ``(rows, cols)``; default from the aspect ratio (official 7 × 7).
    max_root_size : int, optional
        Largest root in patches (official: no limit, ~1,700 forwards per image; default 6). None = no limit.
    beam_width, n_successors, root_threshold, max_roots, skip_supersets
        Beam search (official 3, 15, 0.9, 10, False).
    overlap, n_show
        Diverse subset of roots shown (official 1, 3).
    node_threshold, max_children, max_nodes
        Graph (official 0.4, 3; ``max_nodes`` bounds the work).
    figure_formats : tuple of {"png", "svg", "pdf"}
    images_together, batch_size : int, optional
        Images searched in lockstep and patch sets per forward (default from the device).
    """

    method: str = "igos"
    method_params: dict = field(default_factory=dict)
    fill: Fill = "blur"
    fill_sigma: float | None = None
    grid: tuple[int, int] | None = None
    max_root_size: int | None = 6
    beam_width: int = 3
    n_successors: int = 15
    root_threshold: float = 0.9
    max_roots: int = 10
    skip_supersets: bool = True
    overlap: int = 1
    n_show: int = 3
    node_threshold: float = 0.4
    max_children: int = 3
    max_nodes: int = 200
    figure_formats: tuple[FigureFormat, ...] = ("png",)
    images_together: int | None = None
    batch_size: int | None = None

    def __post_init__(self):
        if isinstance(self.figure_formats, str):
            self.figure_formats = (self.figure_formats,)
        self.figure_formats = tuple(self.figure_formats)
        if self.max_root_size == 0:
            self.max_root_size = None
        validate_choices(self)
        for name in ("beam_width", "n_successors", "max_roots", "max_children", "max_nodes", "n_show"):
            check_positive(self, name)
        for name in ("max_root_size", "images_together", "batch_size"):
            check_positive(self, name, allow_none=True)
        for name in ("root_threshold", "node_threshold"):
            if not 0.0 < float(getattr(self, name)) <= 1.0:
                raise ValueError(f"SagConfig.{name} must be in (0, 1], not {getattr(self, name)!r}")
