"""Where each global concept map lies on the mean anatomy: its mass inside the field of view and its region table
(shares and enrichment taken inside the field of view, as in ``global-xai regions``), built from the landmarks found
on the stack's mean image when they are plausible.

Used by :func:`~napari_global_xai.concepts.pipeline.run_concepts`; the computations are those of
:mod:`napari_global_xai.analyses.regions` (one definition of a region table for both jobs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ConceptAnatomy", "concept_anatomy"]


@dataclass
class ConceptAnatomy:
    """The concepts' global maps against the mean anatomy.

    Attributes
    ----------
    fov_mass : numpy.ndarray, (K,) or None
        Share of each global concept map's mass inside the field of view (None: no field of view found). What lies
        outside is not retina: a burnt-in marker or text, the eyelids, the frame.
    tables : list of RegionTable
        One per concept with a map (label ``concept_<k>``), shares inside the field of view; empty without
        plausible landmarks.
    note : str
        Where the regions came from, or why there are none.
    """

    fov_mass: np.ndarray | None = None
    tables: list = field(default_factory=list)
    note: str = ""


def concept_anatomy(global_maps: np.ndarray, anatomy: np.ndarray | None, left_eye: bool) -> ConceptAnatomy:
    """Field-of-view mass and region tables of the global concept maps ``(K, H, W)`` on the mean ``anatomy``.

    ``left_eye``: the anatomy is in the left-eye frame (the landmark detector's frame); otherwise only the field of
    view is used. Landmarks that are not plausible (:func:`~napari_global_xai.analyses.landmarks.landmark_problems`)
    give no regions; the note says why.
    """
    from ..analyses.regions import REGION_NAMES, build_regions, field_of_view, find_landmarks, region_table

    if anatomy is None or np.shape(anatomy)[:2] != global_maps.shape[1:]:
        return ConceptAnatomy(note="no mean anatomy of the maps' size: no field of view, no regions")
    try:
        fov = field_of_view(anatomy)[0]
    except ValueError as exc:
        return ConceptAnatomy(note=f"no field of view: {exc}")
    maps = np.asarray(global_maps, np.float64)
    mass = maps.reshape(len(maps), -1).sum(axis=1)
    fov_mass = np.where(mass > 0, maps[:, fov].sum(axis=1) / np.where(mass > 0, mass, 1.0), np.nan)
    if not left_eye:
        return ConceptAnatomy(fov_mass, note="the images are not in the left-eye frame: no regions")
    try:
        landmarks = find_landmarks(anatomy)
    except ValueError as exc:
        return ConceptAnatomy(fov_mass, note=f"no regions: {exc}")
    if landmarks.problems:
        return ConceptAnatomy(
            fov_mass, note=f"no regions: the disc and fovea found are not plausible: {landmarks.problems[0]}"
        )
    regions = build_regions(landmarks)
    names = {i + 1: n for i, n in enumerate(REGION_NAMES)}
    tables = [
        region_table(g[None], regions, names=names, n_boot=0, label=f"concept_{k}", fov=fov)
        for k, g in enumerate(global_maps)
        if mass[k] > 0
    ]
    disc, fovea = (tuple(round(v) for v in p) for p in (landmarks.disc, landmarks.fovea))
    return ConceptAnatomy(fov_mass, tables, f"regions from the disc at {disc} and fovea at {fovea} of the mean anatomy")
