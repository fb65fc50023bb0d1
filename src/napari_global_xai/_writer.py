"""napari writer: an image layer (2-D … 4-D) to a (OME-)TIFF, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_image"]


def write_image(path: str, data, meta: dict) -> list[str]:
    """Write one image layer; ``.ome.tif`` writes OME metadata. Returns the written path."""
    import tifffile

    from .io_utils import atomic_path

    target = Path(path)
    if target.suffix.lower() not in (".tif", ".tiff"):
        target = target.with_suffix(".tif")
    arr = np.asarray(data)
    rgb = bool(meta.get("rgb")) and arr.shape[-1] in (3, 4)
    ome = target.name.lower().endswith((".ome.tif", ".ome.tiff"))
    spatial = arr.ndim - int(rgb)
    if spatial < 2 or spatial > 4:
        raise ValueError(f"cannot write a {arr.ndim}-D image layer as TIFF (2-D to 4-D plus RGB supported)")
    axes = "TZYX"[4 - spatial :] + ("S" if rgb else "")
    metadata = {"axes": axes, "Name": str(meta.get("name", ""))} if ome else None
    with atomic_path(target) as tmp:
        tifffile.imwrite(
            tmp, arr, photometric="rgb" if rgb else "minisblack", compression="zlib", ome=ome, metadata=metadata
        )
    return [str(target)]
