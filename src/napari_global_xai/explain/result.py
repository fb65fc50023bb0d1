"""The explain job's result and its results folder: the one place that names the folder's files, writes them and
reads them back. Torch-free.

A results folder (``global-xai explain --out FOLDER``, ``run_explain(out_dir=FOLDER)``) holds (names: :data:`FILES`)::

    image_maps.zarr        the Zarr results store (default format, :mod:`napari_global_xai.store`): image-wise maps,
                           global maps and std, completion records, settings and provenance; resumable
    image_maps.tif         --format tiff: (n, L, H, W) float32 image-wise maps
    global_maps.tif        --format tiff (or --export-tiff, :func:`export_tiff`): label-wise maps then the overall
                           map, names, counts and provenance in its metadata
    global_std.tif         --format tiff (or --export-tiff): per-pixel standard deviation of each label's maps
    predictions.csv        per image: the model's scores, subset membership, computed maps, completeness errors (IG)
    explain_summary.json   status, targets, subset, counts and completeness (IG, else null) per label, provenance
    global_maps.png        the global maps over the mean anatomy

The global maps are written once: into the store, or (``--format tiff``) as the TIFFs. :meth:`ExplainResult.write`
writes the folder (the image-wise maps stream in through :func:`open_map_writer`'s writer), :func:`open_explain`
reads it back (or the store alone, or a global maps TIFF alone) as an :class:`ExplainFolder`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..aggregate import GlobalMaps
from ..config import ExplainConfig
from ..store.reader import lazy_anatomy

__all__ = [
    "FILES",
    "ExplainFiles",
    "ExplainResult",
    "ExplainFolder",
    "count_per_label",
    "open_map_writer",
    "open_explain",
    "is_explain_folder",
    "export_tiff",
]


@dataclass(frozen=True)
class ExplainFiles:
    """Names of the files of an explain results folder (see the module notes)."""

    store: str = "image_maps.zarr"
    image_maps: str = "image_maps.tif"
    global_maps: str = "global_maps.tif"
    std: str = "global_std.tif"
    predictions: str = "predictions.csv"
    summary: str = "explain_summary.json"
    overlay: str = "global_maps.png"


#: The names of an explain results folder's files.
FILES = ExplainFiles()

#: What to give where an explain results folder is expected.
_GIVE = (
    f"give an explain results folder (or its {FILES.store}, or a {FILES.global_maps} of "
    "'global-xai explain --format tiff / --export-tiff')"
)


def count_per_label(mask: np.ndarray | None, include: np.ndarray, labels: list[str]) -> dict[str, int]:
    """``{label: number of (image, label) pairs where mask & include}``; zeros when there is no mask."""
    hits = (mask if mask is not None else np.zeros_like(include)) & include
    return {name: int(hits[:, i].sum()) for i, name in enumerate(labels)}


@dataclass
class ExplainResult:
    """Image-wise and global maps of one explain run.

    Attributes
    ----------
    image_maps : numpy.ndarray or dask.array.Array, (n, L, H, W) float32
        Image-wise maps in the model's frame (``provenance["frame"]``; 0 where not computed): in memory, a memmap of
        ``image_maps.tif`` (``--format tiff``) or lazy over the store when the run wrote to a folder.
    computed : numpy.ndarray, (n, L) bool
        Which maps were computed (all selected ones unless the run was cancelled).
    zero : numpy.ndarray, (n, L) bool
        Computed maps that are zero everywhere (no explanation): reported, never averaged into a global map.
    stalled : numpy.ndarray, (n, L) bool
        Computed maps the method flagged (an I-GOS/iGOS++ optimisation that stalled; its map is the documented
        recovery): reported, and averaged into a global map only with ``ExplainConfig.include_stalled``.
    include : numpy.ndarray, (n, L) bool
        Subset membership: which maps enter each label's global map.
    target_labels : list of str
    probabilities : numpy.ndarray, (n, n_model_labels)
    model_labels : list of str
    global_maps : GlobalMaps
    config : ExplainConfig
    subset : str
        The subset rule actually used (``auto`` resolved).
    cancelled : bool
    provenance : dict
    out_dir : pathlib.Path or None
    truth_missing : list of str
        Target labels without a column in the labels table: their subset used predicted positives.
    completeness : numpy.ndarray, (n, L) float64, or None
        Each computed map's completeness error (NaN where none; :mod:`.completeness`); None: the method has none.
    """

    image_maps: np.ndarray
    computed: np.ndarray
    include: np.ndarray
    target_labels: list[str]
    probabilities: np.ndarray
    model_labels: list[str]
    global_maps: GlobalMaps
    config: ExplainConfig
    subset: str
    cancelled: bool = False
    provenance: dict = field(default_factory=dict)
    out_dir: Path | None = None
    zero: np.ndarray | None = None
    truth_missing: list[str] = field(default_factory=list)
    stalled: np.ndarray | None = None
    completeness: np.ndarray | None = None

    @property
    def n_computed(self) -> int:
        return int(self.computed.sum())

    @property
    def n_zero(self) -> dict[str, int]:
        """All-zero image-wise maps per target label (left out of the global maps)."""
        return count_per_label(self.zero, self.include, self.target_labels)

    @property
    def n_stalled(self) -> dict[str, int]:
        """Stalled (flagged) image-wise maps per target label of the subset."""
        return count_per_label(self.stalled, self.include, self.target_labels)

    def write(self, folder, *, anatomy: np.ndarray | None = None, image_ids=None) -> dict[str, Path]:
        """Predictions, summary and (with ``anatomy``) the overlay PNG and the store's mean anatomy into ``folder``;
        the maps are already there, written by :func:`open_map_writer`'s writer. Returns output name → path.
        """
        from ..io_utils import atomic_write_text, save_json
        from ..store.writer import write_anatomy
        from .completeness import completeness_summary
        from .file_formats import predictions_csv, write_overlay

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        gm = self.global_maps
        ids = image_ids if image_ids is not None else [str(i) for i in range(len(self.probabilities))]
        paths = {"predictions": out / FILES.predictions, "summary": out / FILES.summary}
        flags = (self.probabilities, self.include, self.computed, self.completeness)
        atomic_write_text(paths["predictions"], predictions_csv(ids, self.model_labels, self.target_labels, *flags))
        summary = {
            "status": self.provenance.get("status", "complete"),
            "targets": self.target_labels,
            "subset": self.subset,
            "cancelled": self.cancelled,
            "maps_per_label": dict(zip(gm.labels, gm.count.tolist())),
            "maps_computed": self.n_computed,
            "overall_labels": gm.overall_labels,
            "completeness": completeness_summary(self.completeness, self.computed, self.target_labels),
            "provenance": self.provenance,
        }
        save_json(paths["summary"], summary)
        if anatomy is not None:
            paths["overlay"] = write_overlay(self, anatomy, out / FILES.overlay)
            if self.provenance.get("format") == "zarr":  # the store's mean anatomy, under its maps in a viewer
                write_anatomy(out / FILES.store, anatomy)
        return paths


def open_map_writer(folder, out_format: str, map_dtype: str, overwrite: bool, shape, task, stack):
    """Where a run's maps go: memory (no ``folder``), the Zarr results store, or the TIFFs (``out_format="tiff"``).

    The writer takes each chunk's image-wise maps (``write``) and, at the end, the global maps and std
    (``finish``); see :class:`~napari_global_xai.store.writer.StoreWriter` and
    :class:`~napari_global_xai.explain.file_formats.TiffMapWriter`.
    """
    from .file_formats import TiffMapWriter

    if folder is None:
        return TiffMapWriter(shape)
    out = Path(folder)
    if out_format == "tiff":
        names = {"image_maps": FILES.image_maps, "global_maps": FILES.global_maps, "std": FILES.std}
        return TiffMapWriter(shape, {key: out / name for key, name in names.items()})
    from ..store import open_results_store

    return open_results_store(out / FILES.store, shape, task, stack, map_dtype=map_dtype, overwrite=overwrite)


@dataclass
class ExplainFolder:
    """An explain results folder read back by :func:`open_explain`; every map is read when first used.

    Attributes
    ----------
    path : pathlib.Path
        What was opened: the folder, its store, or a global maps TIFF.
    folder : pathlib.Path
        The results folder.
    out_format : {"zarr", "tiff", "global maps"}
        The store, the TIFFs of ``--format tiff``, or one global maps TIFF alone (no image-wise maps, no flags).
    targets, image_ids, model_labels : list of str
    status : str
        ``complete``, ``CANCELLED`` (partial) or, for a store, ``running`` (being written, or killed: resumable).
    frame : str
        The frame of the maps (``left`` or ``stored``: the model's frame of the run).
    method, subset : str
    provenance : dict
    store : pathlib.Path or None
    attrs : dict
        The store's attributes (settings, counts, ...); empty without a store.
    """

    path: Path
    folder: Path
    out_format: str
    targets: list[str]
    image_ids: list[str]
    model_labels: list[str]
    status: str
    frame: str
    method: str
    subset: str
    provenance: dict = field(default_factory=dict)
    store: Path | None = None
    attrs: dict = field(default_factory=dict, repr=False)
    _flags: dict | None = field(default=None, repr=False)
    _global_tiff: GlobalMaps | None = field(default=None, repr=False)

    @cached_property
    def image_maps(self):
        """``(n, L, H, W)`` float32 image-wise maps (0 where not computed): dask over the store, or a memmap."""
        from ..errors import InputError

        if self.out_format == "zarr":
            from ..store.reader import lazy_image_maps

            return lazy_image_maps(self.store, self.attrs)
        if self.out_format == "global maps":
            raise InputError(
                f"{self.path}: a global maps TIFF holds no image-wise maps; give the explain results folder"
            )
        from .file_formats import read_image_maps_tiff

        shape = (len(self.image_ids), len(self.targets))
        return read_image_maps_tiff(self.folder / FILES.image_maps, shape, f"labels of {FILES.predictions}")

    @cached_property
    def anatomy(self):
        """``(H, W, C)`` float32 mean anatomy in the maps' frame (dask over the store), or None when not written."""
        return lazy_anatomy(self.store) if self.out_format == "zarr" else None

    @cached_property
    def global_planes(self):
        """``(L + 1, H, W)`` float32 label-wise global maps then the overall map (dask over the store, or numpy);
        None when the run wrote none yet (a store being written or killed)."""
        if self.out_format == "zarr":
            from ..store.options import GLOBAL_GROUP
            from ..store.reader import lazy_planes

            return lazy_planes(self.store, GLOBAL_GROUP)
        gm = self._tiff_global_maps()
        return None if gm is None else np.concatenate([gm.mean, gm.overall[None]]).astype(np.float32)

    @cached_property
    def std_planes(self):
        """``(L, H, W)`` float32 per-pixel std of each label's maps, or None when not written."""
        if self.out_format == "zarr":
            from ..store.options import STD_GROUP
            from ..store.reader import lazy_planes

            return lazy_planes(self.store, STD_GROUP)
        path = self.folder / FILES.std
        if self.out_format == "global maps" or not path.is_file():
            return None
        from .file_formats import read_std_tiff

        return read_std_tiff(path, len(self.targets))

    @cached_property
    def global_maps(self) -> GlobalMaps:
        """The global maps with their std, counts and metadata (loaded).

        Raises
        ------
        InputError
            The run wrote no global maps (yet): the message names the folder and its status.
        """
        from ..errors import InputError

        planes = self.global_planes
        if planes is None:
            raise InputError(
                f"{self.path}: no global maps (the explain run's status is {self.status!r}: run the same command "
                "again to resume it)"
            )
        if self.out_format != "zarr":
            gm = self._tiff_global_maps()
            std = self.std_planes
            return gm if std is None else dataclasses.replace(gm, std=std.astype(np.float64))
        planes = np.asarray(planes, np.float64)
        std = self.std_planes
        return GlobalMaps(
            list(self.targets),
            planes[:-1],
            np.full_like(planes[:-1], np.nan) if std is None else np.asarray(std, np.float64),
            np.asarray(self.attrs.get("count", [0] * len(self.targets)), np.int64),
            planes[-1],
            list(self.attrs.get("overall_labels", self.targets)),
            dict(self.attrs.get("global_maps_metadata", {})),
        )

    @property
    def computed(self) -> np.ndarray:
        """``(n, L)`` bool: which image-wise maps were computed."""
        return self._read_flags()["computed"]

    @property
    def include(self) -> np.ndarray:
        """``(n, L)`` bool: subset membership (which maps enter each label's global map)."""
        return self._read_flags()["include"]

    @property
    def probabilities(self) -> np.ndarray:
        """``(n, M)`` float32: the model's scores of each image."""
        return self._read_flags()["probabilities"]

    @property
    def completeness(self) -> np.ndarray | None:
        """``(n, L)`` float64: each computed map's completeness error (NaN where none), or None: the method has none."""
        from .completeness import reported

        return reported(self._read_flags()["completeness"], self.computed)

    def _read_flags(self) -> dict:
        if self._flags is None:
            if self.out_format == "global maps":
                from ..errors import InputError

                raise InputError(f"{self.path}: a global maps TIFF holds no per-image flags; {_GIVE}")
            from ..store.reader import record_flags

            self._flags = record_flags(self.store, self.attrs)
        return self._flags

    def _tiff_global_maps(self) -> GlobalMaps | None:
        if self._global_tiff is None:
            path = self.folder / FILES.global_maps
            if not path.is_file():
                return None
            from .file_formats import read_global_maps_tiff

            self._global_tiff = read_global_maps_tiff(path, _GIVE)[0]
        return self._global_tiff


def is_explain_folder(path) -> bool:
    """Whether ``path`` is an explain results folder (or its store), without reading any map."""
    from ..store.reader import stored_attrs

    path = Path(path)
    return path.is_dir() and (
        stored_attrs(path) is not None
        or stored_attrs(path / FILES.store) is not None
        or ((path / FILES.summary).is_file() and (path / FILES.image_maps).is_file())
    )


def open_explain(path) -> ExplainFolder:
    """Read an explain results folder, its store, or a global maps TIFF (global maps only), lazily.

    Raises
    ------
    InputError
        ``path`` is none of these, or one of its files is missing or unreadable (one line naming the file).
    """
    from ..errors import InputError
    from ..store.reader import stored_attrs
    from .file_formats import read_summary_json

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; {_GIVE}")
    if path.is_file():
        return _open_global_maps_tiff(path)
    attrs = stored_attrs(path)
    if attrs is not None:
        return _open_store(path, path.parent, path, attrs)
    summary = read_summary_json(path / FILES.summary) if (path / FILES.summary).is_file() else None
    tiff_run = summary is not None and summary["provenance"].get("format") == "tiff"
    if not tiff_run and (path / FILES.store).exists():
        attrs = stored_attrs(path / FILES.store)
        if attrs is None:
            raise InputError(f"{path / FILES.store} is not a results store of 'global-xai explain'; {_GIVE}")
        return _open_store(path, path, path / FILES.store, attrs)
    for name in (FILES.summary, FILES.image_maps, FILES.predictions):
        if not (path / name).is_file():
            raise InputError(
                f"{path} is not an explain output folder: {name} is missing "
                "(run 'global-xai explain ... --out FOLDER' first)"
            )
    return _open_tiff_folder(path, summary)


def _method_of(provenance: dict) -> str:
    return str((provenance.get("config") or {}).get("method", ""))


def _open_store(path: Path, folder: Path, root: Path, attrs: dict) -> ExplainFolder:
    from ..store.reader import check_layout

    check_layout(root, attrs)
    return ExplainFolder(
        path,
        folder,
        "zarr",
        list(attrs["targets"]),
        list(attrs["image_ids"]),
        list(attrs["model_labels"]),
        str(attrs.get("status", "")),
        str(attrs.get("frame", "left")),
        str(attrs.get("method", "")),
        str(attrs.get("subset", "")),
        dict(attrs.get("provenance") or {}),
        store=root,
        attrs=attrs,
    )


def _open_tiff_folder(folder: Path, summary: dict) -> ExplainFolder:
    from .file_formats import read_predictions_csv

    provenance, targets = summary["provenance"], summary["targets"]
    flags = read_predictions_csv(folder / FILES.predictions, targets)
    run = ExplainFolder(
        folder,
        folder,
        "tiff",
        targets,
        flags.pop("image_ids"),
        flags.pop("model_labels"),
        str(summary.get("status", provenance.get("status", "complete"))),
        str(provenance.get("frame", "left")),
        _method_of(provenance),
        str(summary.get("subset", "")),
        provenance,
        _flags=flags,
    )
    run.image_maps  # noqa: B018 - checks the TIFF's shape against the predictions now (one line naming the file)
    return run


def _open_global_maps_tiff(path: Path) -> ExplainFolder:
    from .file_formats import read_global_maps_tiff

    gm, provenance = read_global_maps_tiff(path, _GIVE)
    return ExplainFolder(
        path,
        path.parent,
        "global maps",
        list(gm.labels),
        [],
        list((provenance.get("model") or {}).get("labels", [])),
        str(provenance.get("status", "complete")),
        str(provenance.get("frame", "left")),
        str(gm.metadata.get("method", _method_of(provenance))),
        str(gm.metadata.get("subset", "")),
        provenance,
        _global_tiff=gm,
    )


def export_tiff(path, out_dir=None) -> dict[str, Path]:
    """Write the global maps (and std) of ``path`` (what :func:`open_explain` reads) as ``global_maps.tif`` /
    ``global_std.tif`` into ``out_dir`` (default: the results folder, where ``--format tiff`` runs have these files
    already: nothing is rewritten). Returns ``{"global_maps": path}`` (and ``"std"``)."""
    from .file_formats import write_global_maps_tiff, write_std_tiff

    run = open_explain(path)
    out = Path(out_dir) if out_dir is not None else run.folder
    gm = run.global_maps
    paths = {"global_maps": out / FILES.global_maps}
    if run.std_planes is not None:
        paths["std"] = out / FILES.std
    if run.out_format == "tiff" and out.resolve() == run.folder.resolve():
        return paths
    out.mkdir(parents=True, exist_ok=True)
    write_global_maps_tiff(gm, paths["global_maps"], run.provenance)
    if "std" in paths:
        write_std_tiff(gm.std, gm.labels, paths["std"])
    return paths
