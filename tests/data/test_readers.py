"""read_stack / write_stack_tiff: every input format, alignment checks, labels discovery, laziness, atomicity."""

from __future__ import annotations

import sys

import dask.array as da
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_global_xai.data import (
    AlignedStack,
    LabelsError,
    LabelsTable,
    StackError,
    read_stack,
    write_labels_csv,
    write_stack_tiff,
)
from napari_global_xai.data.labels import InputNotice
from napari_global_xai.data.readers import read_tiff_metadata
from napari_global_xai.data.synthetic import LABELS, generate_stack

N, H, W = 5, 32, 40


def noise(shape, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)


def smooth_rgb(n=N, height=H, width=W):
    """Smooth images (JPEG-friendly), different per image."""
    yy, xx = np.mgrid[0:height, 0:width]
    images = [np.stack([(xx * 5 + 20 * i) % 256, (yy * 6) % 256, np.full_like(xx, 30 * i)], -1) for i in range(n)]
    return np.asarray(images, np.uint8)


def save_png_folder(folder, images, names=None, suffix=".png"):
    folder.mkdir(exist_ok=True)
    names = names or [f"img_{i}" for i in range(len(images))]
    for name, image in zip(names, images):
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folder / f"{name}{suffix}")
    return folder


def write_dicom(path, frames):
    """An uncompressed (Explicit VR Little Endian) DICOM of ``frames`` (k, H, W, C) uint8; multi-frame if k > 1."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    count, rows, columns, channels = frames.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OP"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, channels
    ds.PhotometricInterpretation = "MONOCHROME2" if channels == 1 else "RGB"
    if channels > 1:
        ds.PlanarConfiguration = 0
    if count > 1:
        ds.NumberOfFrames = count
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------------------------ multi-page TIFF


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_multipage_tiff_round_trip(tmp_path, channels, compression):
    images = noise((N, H, W, channels))
    path = write_stack_tiff(
        tmp_path / "stack.tif", images if channels == 3 else images[..., 0], compression=compression
    )
    stack = read_stack(path)
    assert isinstance(stack, AlignedStack)
    assert stack.shape == (N, H, W, channels)
    assert stack.image_ids == [f"stack_{i:04d}" for i in range(N)]
    assert stack.sources == [str(path)] * N
    np.testing.assert_array_equal(stack.get(slice(None)), images)
    np.testing.assert_array_equal(stack.get([4, 1]), images[[4, 1]])
    assert type(stack.pixels) is not np.ndarray  # lazy: a memmap or a dask array, never loaded whole


def test_tiff_written_by_plain_tifffile(tmp_path):
    images = noise((N, H, W), np.uint16)
    tifffile.imwrite(tmp_path / "plain.tiff", images)
    stack = read_stack(tmp_path / "plain.tiff")
    assert stack.shape == (N, H, W, 1) and stack.dtype == np.uint16
    np.testing.assert_array_equal(stack.get(slice(None))[..., 0], images)


def test_single_page_tiff_is_a_stack_of_one(tmp_path):
    gray, rgb = noise((H, W)), noise((H, W, 3))
    tifffile.imwrite(tmp_path / "gray.tif", gray)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    gray_stack, rgb_stack = read_stack(tmp_path / "gray.tif"), read_stack(tmp_path / "rgb.tif")
    assert gray_stack.shape == (1, H, W, 1) and gray_stack.image_ids == ["gray"]
    assert rgb_stack.shape == (1, H, W, 3) and rgb_stack.image_ids == ["rgb"]
    np.testing.assert_array_equal(gray_stack.get(0)[0, ..., 0], gray)
    np.testing.assert_array_equal(rgb_stack.get(0)[0], rgb)


def test_planar_rgb_tiff(tmp_path):
    images = noise((2, 3, H, W))
    tifffile.imwrite(tmp_path / "planar.tif", images, photometric="rgb", planarconfig="separate")
    stack = read_stack(tmp_path / "planar.tif")
    np.testing.assert_array_equal(stack.get(slice(None)), images.transpose(0, 2, 3, 1))


def test_channels_first_tiff(tmp_path):
    images = noise((N, 3, H, W))  # (n, C, H, W): channels stored as consecutive grayscale pages
    tifffile.imwrite(tmp_path / "cfirst.tif", images, photometric="minisblack")
    stack = read_stack(tmp_path / "cfirst.tif", channels_last=False)
    assert stack.shape == (N, H, W, 3)
    np.testing.assert_array_equal(stack.get(slice(None)), images.transpose(0, 2, 3, 1))


def test_large_uncompressed_tiff_is_memory_mapped_not_read(tmp_path):
    path = tmp_path / "big.tif"
    images = np.zeros((64, 256, 256), np.uint8)
    images[:, 0, 0] = np.arange(64)
    write_stack_tiff(path, images, compression=None)
    stack = read_stack(path)
    assert isinstance(stack.pixels, np.memmap)
    assert not stack.pixels.flags.writeable  # opened read-only
    assert stack.pixels.shape == (64, 256, 256, 1)
    np.testing.assert_array_equal(stack.get([63, 7])[:, 0, 0, 0], [63, 7])


def test_compressed_tiff_without_zarr_reads_page_by_page(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zarr", None)  # "import zarr" fails
    images = noise((N, H, W, 3))
    stack = read_stack(write_stack_tiff(tmp_path / "z.tif", images, compression="zlib"))
    assert isinstance(stack.pixels, da.Array)
    assert stack.pixels.chunks[0] == (1,) * N  # one lazy read per page
    np.testing.assert_array_equal(stack.get([3, 0, 4]), images[[3, 0, 4]])


def test_compressed_tiff_through_zarr(tmp_path):
    pytest.importorskip("zarr")
    images = noise((N, H, W, 3))
    stack = read_stack(write_stack_tiff(tmp_path / "z.tif", images, compression="zlib"))
    assert isinstance(stack.pixels, da.Array)
    np.testing.assert_array_equal(stack.get([3, 0, 4]), images[[3, 0, 4]])


# ------------------------------------------------------------------------------------------------ folders


def test_folder_of_png_gray_and_rgb(tmp_path):
    rgb, gray = noise((N, H, W, 3)), noise((N, H, W, 1), seed=1)
    for name, images in (("rgb", rgb), ("gray", gray)):
        stack = read_stack(save_png_folder(tmp_path / name, images))
        assert stack.image_ids == [f"img_{i}" for i in range(N)]
        assert stack.sources[0].endswith("img_0.png")
        np.testing.assert_array_equal(stack.get(slice(None)), images)


def test_folder_of_16bit_png(tmp_path):
    images = noise((3, H, W), np.uint16)
    (tmp_path / "p").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "p" / f"im{i}.png")
    stack = read_stack(tmp_path / "p")
    assert stack.dtype == np.uint16
    np.testing.assert_array_equal(stack.get(slice(None))[..., 0], images)


def test_folder_of_jpeg_matches_within_tolerance(tmp_path):
    images = smooth_rgb()
    folder = tmp_path / "jpg"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"img_{i}.{'JPG' if i % 2 else 'jpeg'}", quality=95)
    stack = read_stack(folder)
    assert stack.shape == (N, H, W, 3)
    error = np.abs(stack.get(slice(None)).astype(int) - images.astype(int))
    assert error.mean() < 3


def test_folder_of_tiff(tmp_path):
    images = noise((N, H, W, 3), np.uint16)
    folder = tmp_path / "tif"
    folder.mkdir()
    for i, image in enumerate(images):
        tifffile.imwrite(folder / f"img_{i}.TIF", image, photometric="rgb", compression="zlib")
    stack = read_stack(folder)
    assert stack.dtype == np.uint16
    np.testing.assert_array_equal(stack.get(slice(None)), images)


def test_natural_order_and_ignored_files(tmp_path):
    names = ["img10", "img2", "img1", "IMG3"]
    images = noise((4, H, W, 1))
    folder = save_png_folder(tmp_path / "f", images, names)
    (folder / "notes.json").write_text("{}")
    (folder / "table.csv").write_text("image\n")
    (folder / ".hidden.png").write_bytes(b"not an image")
    (folder / "README").write_text("no extension, not DICOM")
    (folder / "sub").mkdir()
    stack = read_stack(folder)
    assert stack.image_ids == ["img1", "img2", "IMG3", "img10"]
    np.testing.assert_array_equal(stack.get(slice(None)), images[[2, 1, 3, 0]])


# ------------------------------------------------------------------------------------------------ DICOM


def test_folder_of_dicom_gray_and_rgb(tmp_path):
    for channels in (1, 3):
        images = noise((3, H, W, channels), seed=channels)
        folder = tmp_path / f"dcm{channels}"
        folder.mkdir()
        for i, image in enumerate(images):
            write_dicom(folder / f"scan_{i}.dcm", image[None])
        stack = read_stack(folder)
        assert stack.image_ids == ["scan_0", "scan_1", "scan_2"]
        assert stack.shape == (3, H, W, channels)
        np.testing.assert_array_equal(stack.get(slice(None)), images)


def test_dicom_without_extension_is_found_by_its_magic(tmp_path):
    images = noise((2, H, W, 1))
    folder = tmp_path / "d"
    folder.mkdir()
    write_dicom(folder / "IM0001", images[:1])
    write_dicom(folder / "IM0002.DCM", images[1:])
    stack = read_stack(folder)
    assert stack.image_ids == ["IM0001", "IM0002"]
    np.testing.assert_array_equal(stack.get(slice(None)), images)
    np.testing.assert_array_equal(read_stack(folder / "IM0001").get(0), images[:1])


@pytest.mark.parametrize("channels", [1, 3])
def test_multiframe_dicom_file(tmp_path, channels):
    images = noise((4, H, W, channels), seed=7)
    path = write_dicom(tmp_path / "cine.dcm", images)
    stack = read_stack(path)
    assert stack.image_ids == [f"cine_{i:04d}" for i in range(4)]
    np.testing.assert_array_equal(stack.get(slice(None)), images)
    np.testing.assert_array_equal(stack.get(2), images[2:3])


# ------------------------------------------------------------------------------------------------ labels


def test_labels_csv_beside_a_folder_with_laterality(tmp_path):
    synthetic = generate_stack(3, seed=0)
    folder = save_png_folder(tmp_path / "uwf", synthetic.images, synthetic.image_ids)
    write_labels_csv(
        LabelsTable(
            [f"{i}.png" for i in synthetic.image_ids], list(LABELS), synthetic.labels, laterality=synthetic.laterality
        ),
        folder / "labels.csv",
    )
    stack = read_stack(folder)
    assert stack.image_ids == synthetic.image_ids
    assert stack.labels.image_ids == synthetic.image_ids
    assert stack.labels.names == list(LABELS)
    np.testing.assert_array_equal(stack.labels.values, synthetic.labels)
    np.testing.assert_array_equal(stack.laterality, synthetic.laterality)
    np.testing.assert_array_equal(stack.get(slice(None)), synthetic.images)
    left = stack.to_left_eye().get(slice(None))
    for i, side in enumerate(synthetic.laterality):
        np.testing.assert_array_equal(left[i], synthetic.images[i][:, ::-1] if side == "R" else synthetic.images[i])


@pytest.mark.parametrize("csv_name", ["stack.csv", "stack.labels.csv"])
def test_labels_csv_beside_a_tiff(tmp_path, csv_name):
    write_stack_tiff(tmp_path / "stack.tif", noise((3, H, W)))
    (tmp_path / csv_name).write_text("image,laterality,x\nstack_0002,R,1\nstack_0000,L,0\nstack_0001,,1\n")
    stack = read_stack(tmp_path / "stack.tif")
    np.testing.assert_array_equal(stack.labels.column("x"), [0, 1, 1])
    np.testing.assert_array_equal(stack.laterality, ["L", "", "R"])


def test_labels_given_as_path_or_table(tmp_path):
    folder = save_png_folder(tmp_path / "f", noise((2, H, W, 1)))
    csv_path = tmp_path / "elsewhere.csv"
    csv_path.write_text("file,x\nimg_1.png,1\nimg_0.png,0\n")
    np.testing.assert_array_equal(read_stack(folder, labels=csv_path).labels.column("x"), [0, 1])
    table = LabelsTable(["img_1", "img_0"], ["x"], np.array([[1], [0]]), laterality=["R", "L"])
    stack = read_stack(folder, labels=table)
    np.testing.assert_array_equal(stack.labels.column("x"), [0, 1])
    np.testing.assert_array_equal(stack.laterality, ["L", "R"])


def test_labels_that_do_not_match_the_images(tmp_path):
    folder = save_png_folder(tmp_path / "f", noise((3, H, W, 1)))
    (folder / "labels.csv").write_text("image,x\nimg_0,1\nimg_1,0\nimg_9,1\n")
    with pytest.raises(LabelsError, match=r"labels\.csv: 1 image\(s\) have no row: 'img_2'.*'img_9'"):
        read_stack(folder)


# ------------------------------------------------------------------------------------------------ bad input


def test_mismatched_sizes_name_the_odd_file(tmp_path):
    images = noise((4, H, W, 1))
    folder = save_png_folder(tmp_path / "f", images)
    Image.fromarray(noise((48, W))).save(folder / "odd_one.png")
    with pytest.raises(StackError, match=r"size.*odd_one\.png: \(48, 40\) vs \(32, 40\).*resize="):
        read_stack(folder)


def test_resize_loads_mismatched_sizes_at_the_requested_shape(tmp_path):
    folder = save_png_folder(tmp_path / "f", noise((3, H, W, 3)))
    Image.fromarray(np.full((64, 80, 3), 200, np.uint8)).save(folder / "img_9.png")
    stack = read_stack(folder, resize=(16, 20))
    out = stack.get(slice(None))
    assert out.shape == (4, 16, 20, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[3], 200)  # a flat image stays flat
    smooth = smooth_rgb(2, 32, 40)
    np.testing.assert_array_equal(
        read_stack(save_png_folder(tmp_path / "s", smooth), resize=(32, 40)).get([0, 1]), smooth
    )  # images already at the size are untouched


def test_resize_of_a_multipage_tiff_with_mismatched_pages(tmp_path):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(np.full((H, W), 10, np.uint16))
        writer.write(np.full((2 * H, 2 * W), 20, np.uint16))
    with pytest.raises(StackError, match=r"mixed\.tif \(mixed_0001\): \(64, 80\)"):
        read_stack(path)
    out = read_stack(path, resize=(H, W)).get(slice(None))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out[:, ..., 0], [np.full((H, W), 10), np.full((H, W), 20)])


def test_bad_resize_argument(tmp_path):
    folder = save_png_folder(tmp_path / "f", noise((1, H, W, 1)))
    for bad in [(0, 10), (10,), "big", (10, 10, 3)]:
        with pytest.raises(StackError, match="resize must be"):
            read_stack(folder, resize=bad)


def test_two_channel_image_is_rejected(tmp_path):
    folder = save_png_folder(tmp_path / "f", noise((2, H, W, 3)))
    Image.fromarray(noise((H, W, 2)), mode="LA").save(folder / "gray_alpha.png")
    with pytest.raises(StackError, match=r"channel count.*gray_alpha\.png: 2 channels"):
        read_stack(folder)


def test_five_channel_tiff_is_rejected(tmp_path):
    tifffile.imwrite(tmp_path / "five.tif", noise((H, W, 5)), photometric="minisblack", planarconfig="contig")
    with pytest.raises(StackError, match=r"five\.tif"):
        read_stack(tmp_path / "five.tif")


def test_mixed_channel_counts_and_bit_depths_are_converted_with_a_notice(tmp_path):
    # before issue #10 these folders were refused; archives mix them, so they are converted (and said so)
    colour = noise((3, H, W, 3))
    folder = save_png_folder(tmp_path / "c", colour)
    grey = noise((H, W), seed=1)
    Image.fromarray(grey).save(folder / "gray.png")
    with pytest.warns(InputNotice, match=r"^1 of 4 grey image\(s\) replicated to RGB$"):
        stack = read_stack(folder)
    out = stack.get(slice(None))
    assert out.shape == (4, H, W, 3) and stack.image_ids == ["gray", "img_0", "img_1", "img_2"]
    np.testing.assert_array_equal(out[0], np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(out[1:], colour)
    folder = save_png_folder(tmp_path / "d", noise((3, H, W, 1)))
    deep = noise((H, W), np.uint16, seed=2)
    Image.fromarray(deep).save(folder / "deep.png")
    with pytest.warns(InputNotice, match=r"3 of 4 image\(s\) converted to 16-bit uint16 by full range"):
        stack = read_stack(folder)
    out = stack.get(slice(None))
    assert out.dtype == np.uint16 and stack.image_ids == ["deep", "img_0", "img_1", "img_2"]
    np.testing.assert_array_equal(out[1, ..., 0], np.asarray(Image.open(folder / "img_0.png"), np.uint16) * 257)
    np.testing.assert_array_equal(out[0, ..., 0], deep)
    with pytest.warns(InputNotice, match=r"1 of 4 image\(s\) converted to 8-bit uint8"):
        back = read_stack(folder, dtype=np.uint8).get([0])[0, ..., 0]
    np.testing.assert_array_equal(back, np.clip(np.rint(deep / 257.0), 0, 255))


def test_mixed_float_and_integer_types_name_the_file(tmp_path):
    folder = save_png_folder(tmp_path / "f", noise((2, H, W, 1)))
    tifffile.imwrite(folder / "float.tif", np.zeros((H, W), np.float32))
    with pytest.raises(StackError, match=r"data type: float\.tif: float32 vs uint8.*dtype="):
        read_stack(folder)


def test_truncated_png_fails_naming_the_file(tmp_path):
    folder = save_png_folder(tmp_path / "f", noise((3, H, W, 3)))
    data = (folder / "img_1.png").read_bytes()
    (folder / "img_1.png").write_bytes(data[: len(data) // 2])
    stack = read_stack(folder)  # the header is fine: decoding fails on access
    np.testing.assert_array_equal(stack.get(0).shape, (1, H, W, 3))
    with pytest.raises(StackError, match=r"img_1\.png"):
        stack.get(slice(None))


@pytest.mark.parametrize("name", ["garbage.png", "garbage.jpg", "garbage.tif", "garbage.dcm"])
def test_garbage_bytes_with_an_image_extension(tmp_path, name):
    folder = save_png_folder(tmp_path / "f", noise((2, H, W, 1)))
    (folder / name).write_bytes(b"this is not an image at all\x00\x01" * 20)
    with pytest.raises(StackError, match=name.replace(".", r"\.")):
        read_stack(folder)


@pytest.mark.parametrize("content", [[], ["labels.csv", "meta.json"]])
def test_folder_without_images(tmp_path, content):
    for name in content:
        (tmp_path / name).write_text("")
    with pytest.raises(StackError, match="folder has no images"):
        read_stack(tmp_path)


def test_missing_and_unsupported_paths(tmp_path):
    with pytest.raises(StackError, match="nothing_here"):
        read_stack(tmp_path / "nothing_here")
    (tmp_path / "table.csv").write_text("image\n")
    with pytest.raises(StackError, match=r"table\.csv: not a supported image file"):
        read_stack(tmp_path / "table.csv")


def test_duplicate_stems_are_named(tmp_path):
    folder = save_png_folder(tmp_path / "f", noise((2, H, W, 1)))
    tifffile.imwrite(folder / "img_0.tif", noise((H, W)))
    with pytest.raises(StackError, match=r"same id.*img_0\.png.*img_0\.tif"):
        read_stack(folder)


def test_inputs_are_not_modified(tmp_path):
    folder = save_png_folder(tmp_path / "f", noise((2, H, W, 3)))
    write_dicom(folder / "scan.dcm", noise((1, H, W, 3)))
    Image.fromarray(smooth_rgb(1)[0]).save(folder / "photo.jpg")
    (folder / "labels.csv").write_text("image,laterality,x\nimg_0,R,1\nimg_1,L,0\nscan,,1\nphoto,L,0\n")
    write_stack_tiff(tmp_path / "mm.tif", noise((3, H, W)), compression=None)
    before, before_tif = snapshot(folder), snapshot(tmp_path)
    for stack in (read_stack(folder), read_stack(tmp_path / "mm.tif")):
        stack.to_left_eye().get(slice(None))
        stack.mean_image()
    del stack
    assert snapshot(folder) == before
    assert snapshot(tmp_path) == before_tif


# ------------------------------------------------------------------------------------------------ writing


def test_write_stack_tiff_round_trips_ids_and_metadata(tmp_path):
    images = noise((N, H, W, 3))
    ids = [f"eye_{i}" for i in range(N)]
    path = write_stack_tiff(
        tmp_path / "out" / "s.tif",
        da.from_array(images, chunks=(2, H, W, 3)),
        image_ids=ids,
        metadata={"source": "test", "n": N},
    )
    stack = read_stack(path)
    assert stack.image_ids == ids
    np.testing.assert_array_equal(stack.get(slice(None)), images)
    assert read_tiff_metadata(path) == {"image_ids": ids, "metadata": {"source": "test", "n": N}}
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == N
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB


def test_write_stack_tiff_with_alpha(tmp_path):
    images = noise((2, H, W, 4))
    with pytest.warns(InputNotice, match="alpha channel dropped from 2 of 2"):
        stack = read_stack(write_stack_tiff(tmp_path / "rgba.tif", images))
    np.testing.assert_array_equal(stack.get(slice(None)), images[..., :3])  # alpha dropped since issue #10
    with tifffile.TiffFile(tmp_path / "rgba.tif") as tif:
        assert tif.pages[0].samplesperpixel == 4


class FailingPages:
    """An array-like whose third page cannot be read."""

    shape, dtype = (N, H, W), np.dtype(np.uint8)

    def __getitem__(self, index):
        if index == 2:
            raise RuntimeError("disk on fire")
        return np.zeros((H, W), np.uint8)


def test_write_stack_tiff_is_atomic(tmp_path):
    target = tmp_path / "result.tif"
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_stack_tiff(target, FailingPages())
    assert list(tmp_path.iterdir()) == []  # no partial target, no temporary file
    write_stack_tiff(target, noise((2, H, W)))
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        write_stack_tiff(target, FailingPages())
    assert target.read_bytes() == before  # an existing file is left whole
    assert [p.name for p in tmp_path.iterdir()] == ["result.tif"]


@pytest.mark.parametrize(
    "shape, ids", [((2, H, W, 2), None), ((0, H, W), None), ((H, W), None), ((2, H, W), ["only_one"])]
)
def test_write_stack_tiff_rejects_bad_input(tmp_path, shape, ids):
    with pytest.raises(StackError, match=r"bad\.tif"):
        write_stack_tiff(tmp_path / "bad.tif", np.zeros(shape, np.uint8), image_ids=ids)
    assert not (tmp_path / "bad.tif").exists()
