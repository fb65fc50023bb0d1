"""OME-Zarr (NGFF 0.5) image groups inside the results store, so napari and OME-Zarr viewers open them lazily.

Each image group holds one resolution level (dataset ``0``) and the NGFF ``multiscales`` metadata written with
``ome-zarr``; channel names go into the ``omero`` block. The image-wise maps ``(n, L, H, W)`` have a custom first
axis ``image`` (NGFF allows one axis of a custom type before the channel axis), then ``c`` (labels), ``y``, ``x``.
"""

from __future__ import annotations

__all__ = ["create_image_group", "IMAGE_AXES", "MAP_AXES"]

#: Axes of the image-wise maps and of the global maps / std.
IMAGE_AXES = [
    {"name": "image"},
    {"name": "c", "type": "channel"},
    {"name": "y", "type": "space"},
    {"name": "x", "type": "space"},
]
MAP_AXES = IMAGE_AXES[1:]

_COLOURS = ("FF00FF", "00FFFF", "FFFF00", "FF0000", "00FF00", "0000FF", "FFFFFF")


def compressors():
    """Zstandard, level 3 (lossless; fast to write and read)."""
    from zarr.codecs import ZstdCodec

    return [ZstdCodec(level=3)]


def create_image_group(parent, name: str, shape, dtype, chunks, axes, channel_names, window=(0.0, 1.0)):
    """Create the OME-Zarr image group ``parent/name`` with an empty dataset ``0``; returns the zarr array.

    Parameters
    ----------
    parent : zarr.Group
    name : str
    shape, chunks : tuple of int
    dtype : str or numpy dtype
    axes : list of dict
        NGFF axes (:data:`IMAGE_AXES` or :data:`MAP_AXES`).
    channel_names : list of str
        One per ``c`` entry.
    window : (float, float)
        Initial display range of every channel.
    """
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    group = parent.create_group(name)
    array = group.create_array(
        "0", shape=tuple(shape), dtype=dtype, chunks=tuple(chunks), compressors=compressors(), fill_value=0
    )
    lo, hi = (float(v) for v in window)
    channels = [
        {
            "label": str(n),
            "color": _COLOURS[i % len(_COLOURS)],
            "active": True,
            "window": {"min": lo, "max": hi, "start": lo, "end": hi},
        }
        for i, n in enumerate(channel_names)
    ]
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0] * len(shape)}]}]
    write_multiscales_metadata(
        group,
        datasets,
        fmt=FormatV05(),
        axes=axes,
        name=name,
        metadata={"omero": {"channels": channels, "rdefs": {"model": "color"}}},
    )
    return array
