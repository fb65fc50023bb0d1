"""The results store's layout for viewers: per-image flags beside the records, the display ranges, the mean
anatomy, and the bioformats2raw-layout index that lets OME-Zarr readers open the store's root."""

import xml.etree.ElementTree as ET

import numpy as np
import zarr

from napari_global_xai.explain.result import open_explain
from napari_global_xai.store.reader import display_window, record_flags, sample_images

from _synthetic_store import write_synthetic_store


def test_flags_arrays_equal_the_records_and_the_index_lists_every_image(tmp_path):
    root = write_synthetic_store(tmp_path, 7, shape=(12, 16), chunk_size=3)
    run = open_explain(root)
    attrs = dict(run.attrs)
    from_arrays = record_flags(root, attrs)
    from_records = record_flags(root, {**attrs, "status": "running"})  # a store being written reads its records
    for name in ("computed", "include", "probabilities"):
        np.testing.assert_array_equal(from_arrays[name], from_records[name])
    assert from_arrays["computed"].shape == (7, 2) and from_arrays["computed"].all()

    group = zarr.open_group(str(root), mode="r")
    assert group.attrs["ome"] == {"version": "0.5", "bioformats2raw.layout": 3}
    assert group["OME"].attrs["ome"]["series"] == ["anatomy", "maps", "std", "global"]
    xml = ET.parse(root / "OME" / "METADATA.ome.xml").getroot()
    images = [child.attrib["ID"] for child in xml if child.tag.endswith("Image")]
    assert images == ["Image:anatomy", "Image:maps", "Image:std", "Image:global"]
    for name in ("anatomy", "maps", "std", "global"):
        assert "multiscales" in group[name].attrs["ome"]

    display = attrs["display"]
    planes = np.asarray(run.global_planes)
    assert tuple(display["global"]) == display_window(planes)  # one shared range over every global map
    maps = np.asarray(run.image_maps)
    assert display["maps"][1] == np.float32(display_window(sample_images(maps))[1])
    assert tuple(display["anatomy"]) == (0.0, 255.0)
    assert run.anatomy.shape == (12, 16, 3)
    channels = group["global"].attrs["ome"]["omero"]["channels"]
    assert [c["active"] for c in channels] == [False, False, True]  # only the overall map shown at first
    assert run.attrs["laterality"] == ["L", "R", "L", "R", "L", "R", "L"]
