"""The shipped planted-truth sample stack, its ground truth and the demo model: where they are, how to load them.

The files live in the repository's top-level ``sample_data/`` folder; the wheel ships them as
``napari_global_xai/sample_data/`` (a setuptools ``package-dir`` mapping in ``setup.py``), and
:func:`sample_data_dir` finds either. Made by ``global-xai make-sample-data`` and ``global-xai train-demo``:

``uwf_sample.tif``
    64 ``eval``-split images, 384×512 RGB uint8, both eyes as stored (right eyes mirrored), JPEG quality 95.
``uwf_sample.csv``
    labels table: ``image, laterality, split`` and one 0/1 column per label.
``ground_truth_regions.tif``
    one uint8 page per region (left-eye frame): where each label's evidence can appear; names in the description.
``ground_truth_lesions.tif``
    (n, H, W) uint8, left-eye frame: ``k + 1`` where a lesion of disease label ``k`` was drawn.
``ground_truth_artefacts.tif``
    (n, H, W) uint8, left-eye frame: 1 where the corner marker was drawn.
``demo_net.card.json``, ``demo_net.pt``
    the demo model's card and state dict (:mod:`napari_global_xai.models.train_demo`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = [
    "SAMPLE_DIR",
    "SAMPLE_STACK",
    "SAMPLE_LABELS",
    "SAMPLE_SEED",
    "SAMPLE_FILES",
    "DEMO_CARD_PATH",
    "sample_data_dir",
    "write_sample_data",
    "load_sample_stack",
    "load_ground_truth",
]

#: Every shipped file (a test checks that the lookup finds each one, installed or in a source checkout).
SAMPLE_FILES = (
    "uwf_sample.tif",
    "uwf_sample.csv",
    "ground_truth_regions.tif",
    "ground_truth_lesions.tif",
    "ground_truth_artefacts.tif",
    "demo_net.card.json",
    "demo_net.pt",
)


def sample_data_dir() -> Path:
    """The folder holding the shipped sample data and demo model.

    Installed from a wheel: ``napari_global_xai/sample_data`` inside the package. From a source checkout
    (``PYTHONPATH=src`` or an editable install): the repository's top-level ``sample_data/``.

    Notes
    -----
    The package folder is looked for first, so an installed copy never reads a checkout it happens to sit beside.
    When neither exists the package path is returned (the caller's "file not found" then names the expected place).
    """
    package = Path(__file__).resolve().parent
    candidates = (package / "sample_data", package.parents[1] / "sample_data")
    return next((d for d in candidates if (d / SAMPLE_FILES[0]).is_file()), candidates[0])


SAMPLE_DIR = sample_data_dir()
SAMPLE_STACK = SAMPLE_DIR / "uwf_sample.tif"
SAMPLE_LABELS = SAMPLE_DIR / "uwf_sample.csv"
DEMO_CARD_PATH = SAMPLE_DIR / "demo_net.card.json"
SAMPLE_SEED = 2026
SAMPLE_SIZE = 64


def write_sample_data(
    out_dir: str | Path = SAMPLE_DIR, n: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED, split: str = "eval"
) -> Path:
    """Generate the planted-truth sample stack and write it with labels and ground truth to ``out_dir``."""
    import tifffile

    from .data import LabelsTable, write_labels_csv, write_stack_tiff
    from .data.synthetic import LABELS, generate_stack, region_masks
    from .io_utils import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = generate_stack(n, seed=seed, split=split)
    # JPEG (quality 95) like many UWF exports: 2.7 MB instead of 12.6 MB lossless (sensor noise does not compress);
    # mean absolute change 1.6 grey levels. The planted truth lives in the ground-truth masks, not in pixel values.
    write_stack_tiff(
        out / "uwf_sample.tif",
        s.images,
        image_ids=s.image_ids,
        compression="jpeg",
        compression_level=95,
        metadata={
            "generator": "napari_global_xai.data.synthetic",
            "seed": seed,
            "split": split,
            "compression": "jpeg quality 95",
        },
    )
    table = LabelsTable(
        image_ids=list(s.image_ids),
        names=list(LABELS),
        values=s.labels,
        laterality=s.laterality,
        split=np.array([split] * n),
    )
    write_labels_csv(table, out / "uwf_sample.csv")
    regions = region_masks()
    names = list(regions)
    with atomic_path(out / "ground_truth_regions.tif") as tmp:
        tifffile.imwrite(
            tmp,
            np.stack([regions[k] for k in names]).astype(np.uint8),
            compression="zlib",
            description=json.dumps({"regions": names, "frame": "left"}),
        )
    for name, data, meta in (
        ("lesions", s.lesion_masks, {"values": {k + 1: n for k, n in enumerate(LABELS[:4])}}),
        ("artefacts", s.artefact_masks.astype(np.uint8), {"values": {1: "corner marker"}}),
    ):
        with atomic_path(out / f"ground_truth_{name}.tif") as tmp:
            tifffile.imwrite(
                tmp,
                data,
                compression="zlib",
                description=json.dumps({"image_ids": list(s.image_ids), "frame": "left", **meta}),
            )
    return out


def load_sample_stack(resize=None):
    """The shipped sample stack as an :class:`~napari_global_xai.data.AlignedStack` (labels attached)."""
    from .data import read_stack

    return read_stack(SAMPLE_STACK, labels=SAMPLE_LABELS, resize=resize)


def load_ground_truth(sample_dir: str | Path = SAMPLE_DIR) -> dict:
    """Ground truth of the sample stack: ``regions`` (name → (H, W) bool), ``lesions``, ``artefacts``."""
    import tifffile

    d = Path(sample_dir)
    with tifffile.TiffFile(d / "ground_truth_regions.tif") as tif:
        names = json.loads(tif.pages[0].description)["regions"]
        regions = {n: m.astype(bool) for n, m in zip(names, tif.asarray())}
    return {
        "regions": regions,
        "lesions": tifffile.imread(d / "ground_truth_lesions.tif"),
        "artefacts": tifffile.imread(d / "ground_truth_artefacts.tif").astype(bool),
    }
