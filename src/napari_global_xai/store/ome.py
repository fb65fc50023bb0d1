"""OME-Zarr (NGFF 0.5) image groups inside the results store, so napari and OME-Zarr viewers open them lazily.

Each image group holds one resolution level (dataset ``0``) and the NGFF ``multiscales`` metadata written with
``ome-zarr``; channel names go into the ``omero`` block. The image-wise maps ``(n, L, H, W)`` have a custom first
axis ``image`` (NGFF allows one axis of a custom type before the channel axis), then ``c`` (labels), ``y``, ``x``.

The store's root is a collection of these images in the bioformats2raw layout (NGFF 0.5: the root's ``ome``
attributes carry ``"bioformats2raw.layout": 3``; ``OME/METADATA.ome.xml`` lists one ``Image`` per group, and the
``OME`` group's ``series`` names them), so napari-ome-zarr opens the root: one layer per channel of each image
(:func:`write_collection_index`, rewritten whenever a group is added).
"""

from __future__ import annotations

__all__ = ["create_image_group", "write_collection_index", "IMAGE_AXES", "MAP_AXES", "INDEX_XML"]

#: Axes of the image-wise maps and of the global maps / std.
IMAGE_AXES = [
    {"name": "image"},
    {"name": "c", "type": "channel"},
    {"name": "y", "type": "space"},
    {"name": "x", "type": "space"},
]
MAP_AXES = IMAGE_AXES[1:]

#: The collection's image list (bioformats2raw layout), inside the store.
INDEX_XML = "OME/METADATA.ome.xml"

#: OME pixel types of the store's dtypes (float16 has none: the nearest, float).
_OME_TYPES = {"uint8": "uint8", "uint16": "uint16", "float16": "float", "float32": "float", "float64": "double"}

_COLOURS = ("FF00FF", "00FFFF", "FFFF00", "FF0000", "00FF00", "0000FF", "FFFFFF")


def compressors():
    """Zstandard, level 3 (lossless; fast to write and read)."""
    from zarr.codecs import ZstdCodec

    return [ZstdCodec(level=3)]


def create_image_group(parent, name: str, shape, dtype, chunks, axes, channel_names, window=(0.0, 1.0), active=None):
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
    active : list of bool, optional
        Which channels a viewer shows at first (default: all).
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
            "active": True if active is None else bool(active[i]),
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


def write_collection_index(group, root, names) -> None:
    """Mark the store's root ``group`` (at path ``root``) as a bioformats2raw-layout collection of its OME-Zarr
    images ``names`` (in display order: first at the bottom), so OME-Zarr readers given the root open each of them.

    The ``OME`` group names the series (NGFF 0.5); ``OME/METADATA.ome.xml`` lists them as ``Image:<group name>``
    (what napari-ome-zarr reads), with each image's size and type.
    """
    from pathlib import Path
    from xml.sax.saxutils import quoteattr

    from ..io_utils import atomic_write_text

    names = [n for n in names if n in group]
    attrs = dict(group.attrs.get("ome", {}))
    attrs.update({"version": "0.5", "bioformats2raw.layout": 3})
    group.attrs["ome"] = attrs
    index = group["OME"] if "OME" in group else group.create_group("OME")
    index.attrs["ome"] = {"version": "0.5", "series": list(names)}
    images = []
    for name in names:
        array = group[f"{name}/0"]
        sizes = dict(zip(("t", "c", "y", "x")[-array.ndim :], array.shape))
        kind = quoteattr(_OME_TYPES.get(str(array.dtype), "float"))
        pixels = (
            f'<Pixels ID="Pixels:{name}" DimensionOrder="XYCZT" Type={kind} '
            f'SizeX="{sizes["x"]}" SizeY="{sizes["y"]}" SizeC="{sizes.get("c", 1)}" SizeZ="1" '
            f'SizeT="{sizes.get("t", 1)}"/>'
        )
        images.append(f"  <Image ID={quoteattr('Image:' + name)} Name={quoteattr(name)}>{pixels}</Image>")
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">\n' + "\n".join(images) + "\n</OME>\n"
    )
    atomic_write_text(Path(root) / INDEX_XML, xml)
