"""What SAG returns: one graph node, one image's graph, and a pipeline run over a stack; and the folder a run is
written to, the one place naming its files (:meth:`SagRunResult.write`, :meth:`SagRunResult.open`,
:func:`image_file`, :func:`figure_files`, :func:`folder_files`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SagNode", "SagResult", "SagRunResult", "SUMMARY_FILE", "image_file", "figure_files", "folder_files"]

#: The stack summary of a run: ``label``, ``images`` (their ids) and :attr:`SagRunResult.summary`.
SUMMARY_FILE = "sag_summary.json"
_IMAGE_EXTENSIONS = ("json", "png", "svg", "pdf")


def image_file(image_id: str, extension: str) -> str:
    """Name of an image's graph record (``"json"``) or figure (``"png"``, ``"svg"``, ``"pdf"``)."""
    return f"sag_{image_id}.{extension}"


def figure_files(folder: str | Path, extension: str = "png") -> list[tuple[str, Path]]:
    """``(image id, path)`` of the graph figures of one format in a SAG folder, by file name."""
    prefix, suffix = image_file("", extension).split(".", 1)[0], "." + extension
    return [(p.name[len(prefix) : -len(suffix)], p) for p in sorted(Path(folder).glob(image_file("*", extension)))]


def folder_files(folder: str | Path) -> set[Path]:
    """Every file of a SAG folder's contract in ``folder``: the summary, each image's record and figures."""
    folder = Path(folder)
    files = {p for ext in _IMAGE_EXTENSIONS for p in folder.glob(image_file("*", ext))}
    return {p for p in files if p.is_file()}


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

    def write(self, folder: str | Path) -> dict[str, Path]:
        """Each image's record and graph figures (``config.figure_formats``, drawn over :attr:`stack`), then
        :data:`SUMMARY_FILE`; every file atomically, the folder created.

        Returns
        -------
        dict
            ``{"summary": path, "<image id>": record path, ...}``.
        """
        from ..io_utils import save_json
        from .drawing import draw_sag
        from .summary import to_json

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for result, image_id in zip(self.results, self.image_ids):
            paths[image_id] = out / image_file(image_id, "json")
            save_json(paths[image_id], to_json(result))
            for fmt in self.config.figure_formats:
                image = self.stack.get(result.image_index)[0]
                draw_sag(result, image, out / image_file(image_id, fmt), label_name=self.label, image_name=image_id)
        paths["summary"] = out / SUMMARY_FILE
        save_json(paths["summary"], {"label": self.label, "images": self.image_ids, **self.summary})
        return paths

    @classmethod
    def open(cls, folder: str | Path) -> SagRunResult:
        """The run a SAG folder holds: its summary and each listed image's graph (no ``config``, no ``stack``).

        Raises
        ------
        FileNotFoundError
            The folder holds no :data:`SUMMARY_FILE`, or an image it lists has no record.
        """
        from .summary import from_json

        folder = Path(folder)
        data = json.loads((folder / SUMMARY_FILE).read_text())
        ids = [str(i) for i in data.get("images", [])]
        results = [from_json(json.loads((folder / image_file(i, "json")).read_text())) for i in ids]
        summary = {k: v for k, v in data.items() if k not in ("label", "images")}
        return cls(
            results,
            summary,
            label=str(data.get("label", "")),
            image_ids=ids,
            n_requested=int(summary.get("n_requested", len(ids))),
            cancelled=bool(summary.get("cancelled", False)),
        )
