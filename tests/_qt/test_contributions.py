"""napari contributions: manifest, reader, writer and sample data open as layers in a real viewer (Xvfb)."""

import numpy as np
import pytest
import tifffile

from napari_global_xai._layers import STACK_METADATA_KEY
from napari_global_xai._reader import napari_get_reader
from napari_global_xai._writer import write_image
from napari_global_xai.data import LabelsTable, write_labels_csv, write_stack_tiff
from napari_global_xai.samples import SAMPLE_STACK


def test_manifest_is_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-global-xai")
    commands = {c.id for c in manifest.contributions.commands}
    assert {
        "napari-global-xai.get_reader",
        "napari-global-xai.write_image",
        "napari-global-xai.make_sample_stack",
    } <= commands


def test_reader_declines_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader(str(tmp_path)) is None  # no images in the folder


def _tiny_stack_file(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(3, 16, 24, 3), dtype=np.uint8)
    ids = ["a", "b", "c"]
    write_stack_tiff(tmp_path / "s.tif", pixels, image_ids=ids)
    write_labels_csv(
        LabelsTable(ids, ["x"], np.array([[1], [0], [1]], np.uint8), np.array(["L", "R", "L"]), None),
        tmp_path / "s.csv",
    )
    return pixels


def test_reader_gives_left_eye_frame_layer_with_labels(tmp_path):
    pixels = _tiny_stack_file(tmp_path)
    reader = napari_get_reader(str(tmp_path / "s.tif"))
    ((data, kwargs, kind),) = reader(str(tmp_path / "s.tif"))
    assert kind == "image" and kwargs["rgb"] and data.shape == (3, 16, 24, 3)
    arr = np.asarray(data)
    np.testing.assert_array_equal(arr[0], pixels[0])
    np.testing.assert_array_equal(arr[1], pixels[1][:, ::-1])  # right eye mirrored
    meta = kwargs["metadata"][STACK_METADATA_KEY]
    assert meta["frame"] == "left" and meta["laterality"] == ["L", "R", "L"]
    assert meta["labels"]["names"] == ["x"] and meta["labels"]["values"] == [[1], [0], [1]]
    assert meta["stack"].frame == "left"


def test_writer_round_trip(tmp_path):
    data = np.arange(2 * 8 * 10, dtype=np.float32).reshape(2, 8, 10)
    out = write_image(str(tmp_path / "maps.ome.tif"), data, {"name": "maps"})
    np.testing.assert_array_equal(tifffile.imread(out[0]), data)
    with tifffile.TiffFile(out[0]) as tif:
        assert tif.is_ome


def test_sample_and_reader_open_as_layers_in_a_viewer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-global-xai", "uwf_sample")
    names = [layer.name for layer in viewer.layers]
    assert names == ["uwf_sample", "planted regions", "planted lesions + marker"]
    stack_layer = viewer.layers["uwf_sample"]
    assert stack_layer.data.shape == (64, 384, 512, 3) and stack_layer.rgb
    assert stack_layer.metadata[STACK_METADATA_KEY]["labels"]["names"][0] == "haemorrhage"
    regions = viewer.layers["planted regions"].data
    assert set(np.unique(regions)) == {0, 1, 2, 3, 4}
    assert len(layers) == 3
    _tiny_stack_file(tmp_path)
    viewer.open(str(tmp_path / "s.tif"), plugin="napari-global-xai")
    assert viewer.layers[-1].data.shape == (3, 16, 24, 3)


@pytest.mark.skipif(not SAMPLE_STACK.exists(), reason="sample data missing")
def test_sample_file_is_light():
    assert SAMPLE_STACK.stat().st_size < 5 * 2**20
