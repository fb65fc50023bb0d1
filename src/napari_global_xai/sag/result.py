"""What SAG returns: one graph node, one image's graph, and a pipeline run over a stack."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SagNode", "SagResult", "SagRunResult"]


@dataclass
class SagNode:
    """One node of a structured attention graph.

    Attributes
    ----------
    patches : frozenset of int
        Revealed patches, ``row * cols + col``.
    confidence : float
        Probability of the label when only these patches are shown (the rest filled).
    relative : float
        ``confidence / full_confidence``.
    children : list of int
        Indices (into :attr:`SagResult.nodes`) of the nodes with one patch fewer.
    """

    patches: frozenset
    confidence: float
    relative: float
    children: list = field(default_factory=list)


@dataclass
class SagResult:
    """SAG of one image and label.

    Attributes
    ----------
    image_index : int
    label : int
        Output index explained.
    grid : (int, int)
        ``(rows, cols)`` of the patch grid.
    full_confidence : float
        Probability of the label on the full image.
    roots : list of frozenset
        The shown roots: the diverse subset of :attr:`all_roots` (discovery order).
    nodes : list of SagNode
        The graph; the first ``len(roots)`` nodes are the roots, in the same order.
    n_forwards : int
        Images pushed through the model (forward only) for this result, including the full image; the saliency
        map's own passes are not included (see :attr:`saliency_seconds`).
    all_roots : list of frozenset
        Every minimal root found by the beam search, in discovery order.
    root_confidences : list of float
        Confidence of each of :attr:`all_roots`.
    n_batches : int
        Batched model calls made for the search and graph.
    seconds : float
        Wall time of the search and graph (without the saliency map).
    saliency_seconds : float
        Wall time of the saliency map (0 when a map was given).
    params : dict
        The parameters used.
    """

    image_index: int
    label: int
    grid: tuple
    full_confidence: float
    roots: list
    nodes: list
    n_forwards: int
    all_roots: list = field(default_factory=list)
    root_confidences: list = field(default_factory=list)
    n_batches: int = 0
    seconds: float = 0.0
    saliency_seconds: float = 0.0
    params: dict = field(default_factory=dict)


@dataclass
class SagRunResult:
    """A SAG pipeline run over images of a stack (:func:`~napari_global_xai.sag.run_sag_pipeline`).

    Attributes
    ----------
    results : list of SagResult
        One per finished image, in request order.
    summary : dict
        :func:`~napari_global_xai.sag.sag_stack_summary` of :attr:`results` plus ``cancelled``, ``status``
        (``"complete"`` / ``"CANCELLED"``) and ``n_requested`` (what ``sag_summary.json`` holds).
    label : str
        Model label explained.
    image_ids : list of str
        Stack ids of :attr:`results`.
    n_requested : int
        Images asked for.
    cancelled : bool
        True when the run stopped early; :attr:`results` are the images finished before.
    config : SagConfig
        The settings used.
    stack : AlignedStack
        The images the results refer to, in the frame the pipeline chose from the card (left-eye when it
        harmonises laterality) and fitted to the model: draw a result over ``stack.get(result.image_index)[0]``.
    """

    results: list
    summary: dict
    label: str = ""
    image_ids: list = field(default_factory=list)
    n_requested: int = 0
    cancelled: bool = False
    config: object = None
    stack: object = None

    @property
    def n_roots(self) -> int:
        """Roots shown over all finished images."""
        return sum(len(r.roots) for r in self.results)
