"""What a concept run returns, :class:`ConceptResult`, and the folder it is written to: the one place naming a
concepts folder's files (:data:`FILES`, :meth:`ConceptResult.write`, :meth:`ConceptResult.open`). Torch is imported
only to save and load the explanation network.

A concepts folder (``global-xai concepts --out FOLDER``, ``run_concepts(out_dir=FOLDER)``) holds::

    global_concept_maps.tif     (K, H, W) global concept maps
    concept_image_maps.tif      (n, K, h, w) image-wise concept maps at the layer's resolution
    concepts.csv                image × concept activations
    concept_label_weights.csv   concept × label weights
    top_images.csv              per concept, the ids of the images that activate it most
    concept_regions.csv         per concept, its global map's region table (shares inside the field of view)
    concepts.json               faithfulness, concepts kept / pruned, field-of-view mass, losses, settings, status
    explanation_net.pt          the explanation network's state dict
    mean_anatomy.tif            the mean image, when the run had a stack
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..analysis_config import ConceptConfig

if TYPE_CHECKING:
    from .network import ExplanationNet

__all__ = ["BASELINE", "ConceptFiles", "FILES", "ConceptResult"]


@dataclass(frozen=True)
class ConceptFiles:
    """Names of the files of a concepts folder (see the module notes)."""

    global_maps: str = "global_concept_maps.tif"
    image_maps: str = "concept_image_maps.tif"
    concepts: str = "concepts.csv"
    weights: str = "concept_label_weights.csv"
    top_images: str = "top_images.csv"
    regions: str = "concept_regions.csv"
    summary: str = "concepts.json"
    net: str = "explanation_net.pt"
    anatomy: str = "mean_anatomy.tif"


#: The names of a concepts folder's files.
FILES = ConceptFiles()

#: What a concept's region enrichment is relative to (written in the summary, shown in the report).
BASELINE = (
    "enrichment = share of the global concept map's mass inside the field of view that lies in the region / the "
    "region's share of the field of view's area (1 = a map uniform over the imaged retina); outside_fov over the "
    "whole image and map"
)


@dataclass
class ConceptResult:
    """Everything a concept run produced (partial when ``cancelled``).

    Attributes
    ----------
    concepts : (n, K) float32
        Concept activations per image (rows of unfinished images are NaN after a cancel).
    image_maps : (n, K, h, w) float32
        Image-wise concept maps at the layer's resolution (see :func:`~.pipeline.concept_image_maps` for image size).
    global_maps : (K, H, W) float32
        Global concept maps, each summing to 1 (zeros for a concept no image activates).
    weights : (K, L) float32
        Concept × label weights ``V_lk · mean z_k`` (mean logit contribution).
    predictor : (L, K) float32
        Raw prediction-layer weights ``V``.
    top_images : (K, top_n) int
        Images that activate each concept most (indices into the stack), strongest first.
    model_logits, concept_logits : (n, L) float32
    auroc_model, auroc_concepts : (L,) float64 or None
        Per-label AUROC of the model and of the concept model (None without labels).
    labels : list of str
    image_ids : list of str
    config : ConceptConfig
    losses : dict of float
        Final value of each loss term.
    timings : dict of float
        Seconds per stage.
    cancelled : bool
    net : ExplanationNet or None
    units : dict
        ``requested`` (k), ``dead`` (concepts no image activated after training), ``pruned`` and ``kept``
        (:func:`~.network.train_explanation_net`).
    fov_mass : (K,) float or None
        Share of each global map's mass inside the field of view of the mean anatomy (None: none found).
    region_tables : list of RegionTable
        Per concept (label ``concept_<k>``), its global map's region table, shares and enrichment inside the field
        of view (empty without plausible landmarks; :mod:`.anatomy`).
    anatomy_note : str
        Where the regions came from, or why there are none.
    """

    concepts: np.ndarray
    image_maps: np.ndarray
    global_maps: np.ndarray
    weights: np.ndarray
    predictor: np.ndarray
    top_images: np.ndarray
    model_logits: np.ndarray
    concept_logits: np.ndarray
    auroc_model: np.ndarray | None
    auroc_concepts: np.ndarray | None
    labels: list[str]
    image_ids: list[str]
    config: ConceptConfig
    losses: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    cancelled: bool = False
    net: ExplanationNet | None = None
    units: dict = field(default_factory=dict)
    fov_mass: np.ndarray | None = None
    region_tables: list = field(default_factory=list)
    anatomy_note: str = ""

    def faithfulness(self) -> dict:
        """``{label: {"model": auroc, "concepts": auroc}}`` (empty without labels)."""
        if self.auroc_model is None:
            return {}
        return {
            n: {"model": float(a), "concepts": float(b)}
            for n, a, b in zip(self.labels, self.auroc_model, self.auroc_concepts)
        }

    def write(self, folder: str | Path, anatomy: np.ndarray | None = None) -> dict[str, Path]:
        """Write the run into ``folder`` (created), every file atomically; the mean ``anatomy`` when given.

        Returns
        -------
        dict
            ``{field of ConceptFiles: path}`` of the files written.
        """
        import io

        import tifffile
        import torch

        from ..io_utils import atomic_path, atomic_write_bytes, atomic_write_text, save_json

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / file for name, file in asdict(FILES).items()}
        names = [f"concept_{i}" for i in range(self.global_maps.shape[0])]
        with atomic_path(paths["global_maps"]) as tmp:
            tifffile.imwrite(
                tmp, self.global_maps, photometric="minisblack", metadata={"axes": "QYX", "concepts": names}
            )
        with atomic_path(paths["image_maps"]) as tmp:
            tifffile.imwrite(tmp, self.image_maps, photometric="minisblack", metadata={"axes": "QCYX"})
        if anatomy is not None:
            with atomic_path(paths["anatomy"]) as tmp:
                tifffile.imwrite(tmp, np.asarray(anatomy))
        else:
            del paths["anatomy"]

        def table(header, rows):
            return "\n".join([",".join(header)] + [",".join(str(v) for v in r) for r in rows]) + "\n"

        atomic_write_text(
            paths["concepts"],
            table(
                ["image"] + names, [[i] + [f"{v:.6g}" for v in row] for i, row in zip(self.image_ids, self.concepts)]
            ),
        )
        atomic_write_text(
            paths["weights"],
            table(["concept"] + self.labels, [[c] + [f"{v:.6g}" for v in row] for c, row in zip(names, self.weights)]),
        )
        atomic_write_text(
            paths["top_images"],
            table(
                ["concept"] + [f"rank_{r + 1}" for r in range(self.top_images.shape[1])],
                [[c] + [self.image_ids[j] for j in row] for c, row in zip(names, self.top_images)],
            ),
        )
        if self.region_tables:
            from ..analyses.regions_result import region_table_csv

            atomic_write_text(paths["regions"], region_table_csv(self.region_tables))
        else:
            del paths["regions"]
        save_json(
            paths["summary"],
            {
                "method": "xnn",
                "concepts": self.units,
                "field_of_view_mass": None if self.fov_mass is None else [float(v) for v in self.fov_mass],
                "regions": self.anatomy_note,
                "baseline": BASELINE,
                "config": asdict(self.config),
                "faithfulness_auroc": self.faithfulness(),
                "losses": self.losses,
                "timings_s": self.timings,
                "cancelled": self.cancelled,
                "status": "CANCELLED" if self.cancelled else "complete",
                "labels": self.labels,
                "n_images": len(self.image_ids),
                "weights": "V[l, k] * mean_i z[i, k] (mean logit contribution)",
            },
        )
        if self.net is not None:
            buf = io.BytesIO()
            torch.save(self.net.state_dict(), buf)
            atomic_write_bytes(paths["net"], buf.getvalue())
        else:
            del paths["net"]
        return paths

    @classmethod
    def open(cls, folder: str | Path) -> ConceptResult:
        """The run a concepts folder holds.

        Activations and weights are read as written (6 significant digits). The folder keeps no logits:
        ``model_logits`` and ``concept_logits`` are NaN; ``net`` and ``predictor`` come from the saved network
        (NaN ``predictor`` and no ``net`` without it).

        Raises
        ------
        FileNotFoundError
            A file of the folder other than the network and the anatomy is missing.
        """
        import tifffile

        folder = Path(folder)
        summary = json.loads((folder / FILES.summary).read_text())
        labels = list(summary["labels"])
        ids, concepts = _read_table(folder / FILES.concepts)
        _, weights = _read_table(folder / FILES.weights)
        with (folder / FILES.top_images).open(newline="") as fh:
            top_ids = [row[1:] for row in list(csv.reader(fh))[1:]]
        index = {image_id: i for i, image_id in enumerate(ids)}
        top = np.array([[index[i] for i in row] for row in top_ids], int).reshape(len(top_ids), -1)
        n, k = len(ids), weights.shape[0]
        net = _load_net(folder / FILES.net)
        predictor = (
            np.full((len(labels), k), np.nan, np.float32)
            if net is None
            else net.predictor.weight.detach().numpy().astype(np.float32)
        )
        faith = summary.get("faithfulness_auroc") or {}
        auroc_model = np.array([faith[n]["model"] for n in labels], float) if faith else None
        auroc_concepts = np.array([faith[n]["concepts"] for n in labels], float) if faith else None
        nan_logits = np.full((n, len(labels)), np.nan, np.float32)
        fov_mass = summary.get("field_of_view_mass")
        region_tables = []
        if (folder / FILES.regions).exists():
            from ..analyses.regions_result import read_region_tables

            inside = {f"concept_{k}": v for k, v in enumerate(fov_mass or [])}
            region_tables = read_region_tables(folder / FILES.regions, inside)
        return cls(
            concepts=concepts,
            image_maps=tifffile.imread(folder / FILES.image_maps),
            global_maps=tifffile.imread(folder / FILES.global_maps),
            weights=weights,
            predictor=predictor,
            top_images=top,
            model_logits=nan_logits,
            concept_logits=nan_logits.copy(),
            auroc_model=auroc_model,
            auroc_concepts=auroc_concepts,
            labels=labels,
            image_ids=ids,
            config=ConceptConfig(**summary.get("config", {})),
            losses=dict(summary.get("losses", {})),
            timings=dict(summary.get("timings_s", {})),
            cancelled=bool(summary.get("cancelled", False)),
            net=net,
            units=dict(summary.get("concepts", {})),
            fov_mass=None if fov_mass is None else np.array(fov_mass, float),
            region_tables=region_tables,
            anatomy_note=str(summary.get("regions", "")),
        )


def _read_table(path: Path) -> tuple[list[str], np.ndarray]:
    """A written CSV: its first column and the rest as float32 ``(rows, columns)``."""
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    values = np.array([[float(v) for v in r[1:]] for r in body], np.float32).reshape(len(body), len(header) - 1)
    return [r[0] for r in body], values


def _load_net(path: Path):
    """The saved explanation network, or None when the folder has none."""
    if not path.exists():
        return None
    import torch

    from .network import ExplanationNet

    state = torch.load(path, map_location="cpu", weights_only=True)
    k, n_features = state["encoder.weight"].shape
    net = ExplanationNet(n_features, k, state["predictor.weight"].shape[0], state["mean"], state["std"])
    net.load_state_dict(state)
    return net.eval()
