"""Shared helpers that turn core objects into napari layer data tuples (no Qt, no torch)."""

from __future__ import annotations

import numpy as np

from .figures import map_scale

__all__ = [
    "left_frame_dask",
    "stack_layer_data",
    "explain_layer_data",
    "map_layer_name",
    "MAP_LAYER_KINDS",
    "STACK_METADATA_KEY",
    "IMAGE_MAPS_KEY",
    "MAP_KIND_KEY",
    "MAP_SCALE_KEY",
]

#: Key under which an image layer's metadata carries the AlignedStack it shows.
STACK_METADATA_KEY = "napari_global_xai"
#: Key under which a layer of image-wise maps ``(L, n, H, W)`` carries its labels, method and computed flags.
IMAGE_MAPS_KEY = "napari_global_xai_image_maps"
#: Key under which every map layer of :func:`explain_layer_data` carries its kind (one of :data:`MAP_LAYER_KINDS`):
#: the docks' stack pickers leave these layers out.
MAP_KIND_KEY = "napari_global_xai_map_kind"
#: Key under which every map layer of :func:`explain_layer_data` carries its value scale, ``{"factor": f, "unit":
#: text}``: the layer shows the stored values × ``f`` (napari's colour bar, contrast limits and status value), and
#: ``text`` says what those numbers are (:func:`napari_global_xai.figures.map_scale`, as on the saved figures).
MAP_SCALE_KEY = "napari_global_xai_map_scale"
#: Kinds of map layers named by :func:`map_layer_name`.
MAP_LAYER_KINDS = ("global", "std", "image-wise")


def left_frame_dask(stack):
    """Lazy (dask) view of the stack's pixels in the left-eye frame: right eyes mirrored, one image per chunk."""
    import dask.array as da

    pixels = stack.pixels
    arr = pixels if isinstance(pixels, da.Array) else da.from_array(pixels, chunks=(1, *pixels.shape[1:]))
    return _mirror(arr, np.asarray(stack.laterality) == "R", axis=2)


def stack_layer_data(stack, name: str):
    """``(data, kwargs, "image")`` for an aligned stack, shown in the left-eye frame with its labels in metadata; its
    slider is named ``image`` (the axis the image-wise maps share)."""
    left = stack.to_left_eye()
    data = left_frame_dask(stack)
    labels = stack.labels
    meta = {
        STACK_METADATA_KEY: {
            "stack": left,
            "image_ids": list(stack.image_ids),
            "laterality": [str(v) for v in stack.laterality],
            "frame": "left",
            "labels": None
            if labels is None
            else {
                "names": list(labels.names),
                "values": np.asarray(labels.values).tolist(),
                "split": None if labels.split is None else [str(v) for v in labels.split],
            },
            "sources": list(stack.sources[:1000]),
        }
    }
    rgb = stack.shape[-1] in (3, 4)
    kwargs = {"name": name, "metadata": meta, "rgb": rgb, "axis_labels": ("image", "y", "x")}
    if not rgb and stack.shape[-1] == 1:
        data = data[..., 0]
    elif not rgb:
        kwargs["channel_axis"] = 3
        kwargs["name"] = [f"{name} [c{i}]" for i in range(stack.shape[-1])]
    return data, kwargs, "image"


def map_layer_name(kind: str, method: str, label: str | None = None, note: str = "") -> str:
    """The one name of a map layer, wherever the maps come from (the Explain dock, a results folder opened in napari).

    Parameters
    ----------
    kind : {"global", "std", "image-wise"}
        A global map (of ``label``: a target label or ``"overall"``), the std maps (one layer, a label axis) or the
        image-wise maps (one ``(L, n, H, W)`` layer).
    method : str
    label : str, optional
        Required for ``kind="global"``.
    note : str
        Shown in parentheses (e.g. ``"CANCELLED"``, ``"stored orientation"``).

    Returns
    -------
    str
        ``"overall · gradcam"``, ``"std · gradcam"``, ``"image-wise · gradcam (stored orientation)"``.
    """
    if kind not in MAP_LAYER_KINDS:
        raise ValueError(f"unknown map layer kind {kind!r}; choose from {', '.join(MAP_LAYER_KINDS)}")
    if kind == "global" and not label:
        raise ValueError("a global map layer's name needs its label")
    name = f"{label if kind == 'global' else kind} · {method}"
    return f"{name} ({note})" if note else name


def explain_layer_data(run, *, source_name: str = "", laterality=None, stored_orientation: bool = False) -> list:
    """Layers of an explain results folder, lazy where the folder is (dask over the store, memmap of a TIFF).

    Every display range comes from the folder (the store's ``display`` attributes, written with the maps), or for a
    TIFF folder from its small global maps and a sample of images: nothing here scans the image-wise maps, so the
    reader and the Explain dock's hand-over stay fast at any number of images.

    The map layers (global, std, image-wise) show the run's values in one scale, as the saved figures do
    (:func:`napari_global_xai.figures.map_scale`): each layer's data is the stored maps × ``factor`` (a lazy dask
    multiply, nothing read), its contrast limits are scaled with it, so napari's colour bar and the status bar's value
    read e.g. 0–1.75 rather than 0–0.000175, and ``metadata[MAP_SCALE_KEY]`` (also the description) names the unit
    ("share of the map's mass per pixel, × 10⁻⁴": a shown 1.75 is a share of 1.75 × 10⁻⁴). The factor is a power
    of ten chosen from the global maps' display range (mass-normalised maps; 1 otherwise, the data then as stored).
    The global maps are scaled in float64, so distinct stored values stay distinct and keep their order (a ranking
    read from the layer is the stored map's); the image-wise layer's metadata keeps the stored maps themselves
    (``"maps"``, lazy) for the analyses that read them.

    Parameters
    ----------
    run : napari_global_xai.explain.result.ExplainFolder
        What :func:`~napari_global_xai.explain.result.open_explain` read.
    source_name : str
        The stack's name, shown in the mean anatomy's layer name.
    laterality : sequence of str, optional
        Each image's eye (``"L"`` / ``"R"``); default: the store's. Needed to show maps of a run in the stored
        frame in the viewer's left-eye frame (right eyes mirrored, lazily).
    stored_orientation : bool
        Also a layer of the image-wise maps in each image's stored orientation.

    Returns
    -------
    list of ``(data, kwargs, "image")``
        Bottom to top: the mean anatomy (when the folder has one), the image-wise maps as one ``(L, n, H, W)``
        layer (label × image sliders, hidden) carrying the metadata the Compare and Regions docks read, the std
        maps (hidden; one label slider), then one layer per global map (labels with maps, then overall: only overall
        visible, one shared colour range). Names by :func:`map_layer_name`, with the run's status when it did not
        complete; every layer names its axes (``label``, ``image``, ``y``, ``x``) so napari's sliders are named.
    """
    from .store.reader import display_window, sample_images

    method = run.method
    note = "" if run.status == "complete" else run.status
    display = dict(run.attrs.get("display") or {})
    n = len(run.image_ids)
    has_maps = run.out_format != "global maps"
    global_limits = maps_limits = None
    if run.global_planes is not None:
        names, counts = [*run.targets, "overall"], [*_counts(run), None]
        keep = [i for i, c in enumerate(counts) if c is None or c > 0]
        global_limits = tuple(display.get("global") or display_window(np.asarray(run.global_planes)[keep]))
    if has_maps:
        maps_limits = tuple(display.get("maps") or display_window(sample_images(run.image_maps)))
    normalisation = _normalisation(run)
    factor, unit = map_scale(normalisation, (global_limits or maps_limits or (0.0, 1.0))[1])
    scale = {"factor": factor, "unit": unit}
    layers = []
    anatomy = run.anatomy
    if anatomy is not None:
        rgb = anatomy.shape[-1] in (3, 4)
        window = tuple(display.get("anatomy", (0.0, 255.0)))
        kwargs = {
            "name": f"mean anatomy ({source_name})" if source_name else "mean anatomy",
            "rgb": rgb,
            "axis_labels": ("y", "x"),
            "metadata": {"description": f"mean anatomy of the stack, in the maps' frame ({run.frame})"},
        }
        if window == (0.0, 255.0):  # an 8-bit stack: shown (and thumbnailed) as 8-bit
            anatomy = anatomy.clip(0, 255).round().astype(np.uint8)
        else:
            kwargs["contrast_limits"] = window
        layers.append((anatomy if rgb else anatomy[..., 0], kwargs, "image"))
    if has_maps:
        layers.extend(
            _image_maps_layers(run, note, _scaled_limits(maps_limits, factor), scale, laterality, stored_orientation)
        )
    if run.std_planes is not None:
        std = _scaled(run.std_planes, factor)
        kwargs = {
            "name": map_layer_name("std", method, note=note),
            "colormap": "magma",
            "visible": False,
            "contrast_limits": _scaled_limits(display.get("std") or display_window(run.std_planes), factor),
            "metadata": {
                "labels": list(run.targets),
                "description": f"per-pixel std of each label's {method} maps" + _unit_note(scale),
                MAP_KIND_KEY: "std",
                MAP_SCALE_KEY: dict(scale),
            },
        }
        if has_maps:  # one label slider shared with the image-wise maps; the same plane at every image (a view)
            import dask.array as da

            shape = (std.shape[0], n, *std.shape[1:])
            std = da.broadcast_to(_lazy(std)[:, None], shape, chunks=(1, *shape[1:]))  # one chunk: a numpy view
            kwargs["axis_labels"] = ("label", "image", "y", "x")
        else:
            kwargs["axis_labels"] = ("label", "y", "x")
        layers.append((std, kwargs, "image"))
    if run.global_planes is not None:
        limits = _scaled_limits(global_limits, factor)
        for i in keep:
            name, count = names[i], counts[i]
            details = (
                f"global map of {name!r} by {method}: subset {run.subset!r}, {normalisation}-normalised, "
                + (f"{count} image-wise maps" if count is not None else "mean of the label-wise maps")
                + _unit_note(scale)
                + f"; colour scale {limits[0]:.3g}–{limits[1]:.3g} shared by all maps of this run"
            )
            kwargs = {
                "name": map_layer_name("global", method, name, note),
                "colormap": "inferno",
                "blending": "additive",
                "opacity": 0.8,
                "contrast_limits": limits,
                "visible": name == "overall",
                "axis_labels": ("y", "x"),
                "metadata": {"description": details, MAP_KIND_KEY: "global", MAP_SCALE_KEY: dict(scale)},
            }
            layers.append((_scaled(run.global_planes[i], factor, np.float64), kwargs, "image"))
    return layers


def _image_maps_layers(run, note: str, limits: tuple, scale: dict, laterality, stored_orientation: bool) -> list:
    """The image-wise maps ``(L, n, H, W)`` in the viewer's left-eye frame (and, asked for, the stored frame), shown
    × ``scale["factor"]`` within ``limits`` (already scaled); the metadata keeps the stored maps (``"maps"``)."""
    method = run.method
    maps = _lazy(run.image_maps)  # (n, L, H, W), the run's frame
    if laterality is None:
        laterality = run.attrs.get("laterality")
    right = None if laterality is None else np.asarray(laterality) == "R"
    meta = {
        "labels": list(run.targets),
        "method": method,
        "subset": run.subset,
        "computed": run.computed,
        "image_ids": list(run.image_ids),
    }
    shown = {run.frame: maps}  # without the laterality, only the run's own frame is known
    if right is not None:
        other = "stored" if run.frame == "left" else "left"
        shown[other] = _mirror(maps, right, axis=-1) if right.any() else maps
    frames = ["left"] + (["stored"] if stored_orientation else [])
    layers = []
    for frame in frames:
        if frame not in shown:  # no laterality known: the maps as the run made them
            frame_maps, frame = maps, run.frame
        else:
            frame_maps = shown[frame]
        kwargs = {
            "name": map_layer_name("image-wise", method, note=", ".join(filter(None, [note, _FRAME_NOTES[frame]]))),
            "colormap": "inferno",
            "blending": "additive",
            "contrast_limits": limits,
            "visible": False,
            "axis_labels": ("label", "image", "y", "x"),
            "metadata": {
                IMAGE_MAPS_KEY: {**meta, "frame": frame, "maps": frame_maps},
                MAP_KIND_KEY: "image-wise",
                MAP_SCALE_KEY: dict(scale),
                "description": f"image-wise {method} maps (label × image), subset {run.subset!r}, {frame} frame"
                + _unit_note(scale),
            },
        }
        layers.append((_scaled(frame_maps, scale["factor"]).transpose(1, 0, 2, 3), kwargs, "image"))
    return layers


#: Layer-name notes of the image-wise maps in each frame (the viewer's frame is left: no note).
_FRAME_NOTES = {"left": "", "stored": "stored orientation"}


def _scaled(data, factor: float, dtype=np.float32):
    """``data × factor`` as ``dtype``, lazily (a dask multiply: nothing is read); ``data`` as it is when the factor is
    1. Float64 keeps float32 values exact and distinct (their order too); float32 is enough for display."""
    if factor == 1:
        return data
    return _lazy(data).astype(dtype) * dtype(factor)


def _scaled_limits(limits, factor: float) -> tuple[float, float]:
    return tuple(float(v) * factor for v in limits)


def _unit_note(scale: dict) -> str:
    """The description's words on the shown values: their unit and, when scaled, the factor."""
    factor = scale["factor"]
    return f"; values in {scale['unit']}" + (f" (stored values × {factor:g})" if factor != 1 else "")


def _lazy(data):
    """``data`` as a dask array (one image per chunk along the first axis; a 2-D plane in one chunk); dask arrays are
    returned as they are."""
    import dask.array as da

    if isinstance(data, da.Array):
        return data
    return da.from_array(data, chunks=data.shape if data.ndim == 2 else (1, *data.shape[1:]))


def _mirror(arr, right: np.ndarray, axis: int = -1):
    """Lazily mirror along ``axis`` the images ``right`` of a dask array of images (``(n, ...)``, rechunked to one
    image per chunk)."""
    arr = arr.rechunk((1, *arr.shape[1:]))
    flipped = [slice(None)] * arr.ndim
    flipped[axis] = slice(None, None, -1)
    flipped = tuple(flipped)

    def flip(block, block_id=None):  # block_id, not block_info: a graph built in O(1), not once per image
        return block[flipped] if right[block_id[0]] else block

    return arr.map_blocks(flip, dtype=arr.dtype)


def _counts(run) -> list:
    """Image-wise maps per target label in each global map (None where the folder does not say)."""
    counts = run.attrs.get("count")
    if counts is None and run.out_format != "zarr":
        counts = run.global_maps.count.tolist()
    return [int(c) for c in counts] if counts is not None else [None] * len(run.targets)


def _normalisation(run) -> str:
    meta = run.attrs.get("global_maps_metadata") or {}
    return str(meta.get("normalisation") or (run.provenance.get("config") or {}).get("normalisation", ""))
