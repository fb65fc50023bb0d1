"""AlignedStack: access, left-eye frame, map orientation, subsets, validation."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_global_xai.data import AlignedStack, LabelsTable, StackError
from napari_global_xai.data.synthetic import GEOMETRY, WIDTH, generate_stack, marker_box

LATERALITY = ["L", "R", "", "R", "L"]


def ramp_images(n=5, height=32, width=40, channels=3):
    """Images that are asymmetric left-right (a ramp along W) and distinct per image and channel."""
    w = np.arange(width, dtype=np.uint8)[None, None, :, None]
    i = np.arange(n, dtype=np.uint8)[:, None, None, None] * 40
    c = np.arange(channels, dtype=np.uint8)[None, None, None, :] * 3
    return np.broadcast_to(w + i + c, (n, height, width, channels)).copy()


@pytest.fixture
def pixels():
    return ramp_images()


@pytest.fixture
def stack(pixels):
    return AlignedStack(
        pixels,
        [f"img_{i}" for i in range(5)],
        laterality=np.array(LATERALITY),
        sources=[f"/data/img_{i}.png" for i in range(5)],
    )


@pytest.fixture(scope="module")
def synthetic():
    return generate_stack(3, seed=0)  # lateralities R, L, L; markers on images 0 and 1


def test_shape_properties(stack):
    assert stack.n == len(stack) == 5
    assert stack.shape == (5, 32, 40, 3)
    assert stack.n_channels == 3
    assert stack.dtype == np.uint8
    assert stack.frame == "stored"
    assert "n=5" in repr(stack)


@pytest.mark.parametrize(
    "indices, expected",
    [
        (2, [2]),
        (-1, [4]),
        (np.int64(3), [3]),
        (slice(1, 4), [1, 2, 3]),
        ([4, 0, 4], [4, 0, 4]),
        (np.array([3, 1]), [3, 1]),
        (np.array([True, False, False, False, True]), [0, 4]),
        ([], []),
    ],
)
def test_get_accepts_every_index_kind(stack, pixels, indices, expected):
    out = stack.get(indices)
    assert isinstance(out, np.ndarray) and not isinstance(out, np.memmap)
    assert out.shape == (len(expected), 32, 40, 3)
    np.testing.assert_array_equal(out, pixels[expected])


def test_get_out_of_range(stack):
    with pytest.raises(IndexError):
        stack.get(5)


def test_get_returns_a_copy(stack, pixels):
    before = pixels.copy()
    stack.get(slice(0, 2))[:] = 0
    stack.to_left_eye().get(slice(0, 5))[:] = 0
    np.testing.assert_array_equal(pixels, before)


def test_left_eye_frame_mirrors_right_eyes_only(stack, pixels):
    left = stack.to_left_eye()
    assert left.frame == "left" and stack.frame == "stored"
    assert left.pixels is stack.pixels  # lazy: shares the pixels
    out = left.get(slice(None))
    for i, side in enumerate(LATERALITY):
        expected = pixels[i, :, ::-1] if side == "R" else pixels[i]
        np.testing.assert_array_equal(out[i], expected)
    np.testing.assert_array_equal(left.get([3, 0]), np.stack([pixels[3, :, ::-1], pixels[0]]))


def test_to_left_eye_is_idempotent(stack):
    left = stack.to_left_eye()
    twice = left.to_left_eye()
    assert twice is left
    np.testing.assert_array_equal(twice.get(slice(None)), left.get(slice(None)))


def test_left_eye_frame_on_planted_truth(synthetic):
    """In the left-eye frame the optic disc and the burnt-in marker sit where the generator put them."""
    stack = AlignedStack(synthetic.images, synthetic.image_ids, laterality=synthetic.laterality)
    stored, left = stack.get(slice(None)), stack.to_left_eye().get(slice(None))
    disc_row, disc_col = map(int, GEOMETRY.disc)
    mirror_col = WIDTH - 1 - disc_col

    def green_at(images, col):  # the disc is much greener than the retina around it
        return images[:, disc_row - 4 : disc_row + 5, col - 4 : col + 5, 1].mean(axis=(1, 2))

    assert np.all(green_at(left, disc_col) > green_at(left, mirror_col) + 25)
    is_right = synthetic.laterality == "R"
    assert is_right.any() and not is_right.all()
    assert np.all((green_at(stored, disc_col) > green_at(stored, mirror_col)) == ~is_right)
    marker = np.full((22, 34), 235, np.uint8)
    marker[4:-4:4, 3:-3] = 120  # the generator's burnt-in "text"
    assert synthetic.has_marker[is_right].any()
    for i in np.flatnonzero(synthetic.has_marker):
        rows, cols = marker_box(synthetic.laterality[i])  # where the marker is in the left-eye frame
        for channel in range(3):
            np.testing.assert_array_equal(left[i][rows, cols, channel], marker)


def test_maps_round_trip_between_frames(stack):
    maps = np.random.default_rng(0).random((5, 2, 8, 10)).astype(np.float32)
    stored = stack.to_stored_frame(maps)
    assert stored is not maps and stored.shape == maps.shape
    for i, side in enumerate(LATERALITY):
        np.testing.assert_array_equal(stored[i], maps[i][..., ::-1] if side == "R" else maps[i])
    np.testing.assert_array_equal(stack.to_left_frame(stored), maps)
    np.testing.assert_array_equal(stack.to_stored_frame(stack.to_left_frame(maps)), maps)


def test_maps_of_left_frame_images_map_to_stored_images(stack, pixels):
    """Mapping the left-eye images themselves (as (n, H, W) maps) back gives the stored images."""
    left = stack.to_left_eye().get(slice(None))[..., 0]
    np.testing.assert_array_equal(stack.to_stored_frame(left), pixels[..., 0])


def test_maps_for_a_subset_of_images(stack):
    maps = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    out = stack.to_stored_frame(maps, indices=[1, 4])  # R, L
    np.testing.assert_array_equal(out[0], maps[0][:, ::-1])
    np.testing.assert_array_equal(out[1], maps[1])
    np.testing.assert_array_equal(stack.to_left_frame(out, indices=[1, 4]), maps)
    np.testing.assert_array_equal(stack.to_stored_frame(maps[:1], indices=3), maps[:1, :, ::-1])


def test_maps_of_the_wrong_length(stack):
    with pytest.raises(StackError, match=r"maps must have shape \(5, \.\.\., H, W\)"):
        stack.to_stored_frame(np.zeros((4, 8, 8)))
    with pytest.raises(StackError, match="maps must have shape"):
        stack.to_stored_frame(np.zeros((5, 8)))


def test_iter_chunks_covers_the_stack_in_order(stack, pixels):
    chunks = list(stack.to_left_eye().iter_chunks(2))
    assert [idx.tolist() for idx, _ in chunks] == [[0, 1], [2, 3], [4]]
    np.testing.assert_array_equal(np.concatenate([p for _, p in chunks]), stack.to_left_eye().get(slice(None)))
    with pytest.raises(ValueError):
        next(stack.iter_chunks(0))


def test_nan_or_inf_names_the_image_and_its_file():
    pixels = np.zeros((3, 4, 5, 1), np.float32)
    pixels[1, 2, 3, 0] = np.inf
    stack = AlignedStack(pixels, ["a", "b", "c"], sources=["a.tif", "b.tif", "c.tif"])
    np.testing.assert_array_equal(stack.get([0, 2]), 0)
    with pytest.raises(StackError, match=r"image 'b' \(b\.tif\) contains NaN or Inf"):
        stack.get(slice(None))
    pixels[1] = np.nan
    with pytest.raises(StackError, match=r"'b'"):
        stack.mean_image()


def test_mean_image(stack, pixels):
    mean = stack.mean_image()
    assert mean.dtype == np.float32 and mean.shape == (32, 40, 3)
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(
        stack.to_left_eye().mean_image(), stack.to_left_eye().get(slice(None)).mean(axis=0), rtol=1e-6
    )
    np.testing.assert_allclose(stack.mean_image(max_images=2), pixels[[0, 4]].mean(axis=0))
    np.testing.assert_allclose(stack.mean_image(max_images=1), pixels[0])
    with pytest.raises(StackError, match="empty"):
        stack.subset([]).mean_image()


def test_subset_keeps_everything_aligned(pixels):
    labels = LabelsTable(
        [f"img_{i}" for i in range(5)], ["x"], np.array([[0], [1], [0], [1], [1]]), laterality=np.array(LATERALITY)
    )
    stack = AlignedStack(pixels, labels.image_ids, labels=labels).to_left_eye()
    sub = stack.subset([3, 0])
    assert sub.image_ids == ["img_3", "img_0"]
    assert sub.frame == "left"
    np.testing.assert_array_equal(sub.laterality, ["R", "L"])
    assert sub.labels.image_ids == sub.image_ids
    np.testing.assert_array_equal(sub.labels.column("x"), [1, 0])
    np.testing.assert_array_equal(sub.get(slice(None)), stack.get([3, 0]))
    with pytest.raises(StackError, match="duplicate image ids"):
        stack.subset([1, 1])


def test_subset_stays_lazy(tmp_path, pixels):
    memmap = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=pixels.dtype, shape=pixels.shape)
    memmap[:] = pixels
    stack = AlignedStack(np.load(tmp_path / "p.npy", mmap_mode="r"), list("abcde"))
    assert isinstance(stack.subset(slice(1, 3)).pixels, np.memmap)
    scattered = stack.subset([4, 1])
    assert isinstance(scattered.pixels, da.Array)
    np.testing.assert_array_equal(scattered.get(slice(None)), pixels[[4, 1]])
    lazy = AlignedStack(da.from_array(pixels, chunks=(1, 32, 40, 3)), list("abcde"))
    assert isinstance(lazy.subset([4, 1]).pixels, da.Array)
    np.testing.assert_array_equal(lazy.subset([4, 1]).get([1, 0]), pixels[[1, 4]])


class PlainArray:
    """A minimal array-like (shape, dtype, basic indexing only), like an h5py dataset."""

    def __init__(self, array):
        self._array, self.shape, self.ndim, self.dtype = array, array.shape, array.ndim, array.dtype

    def __getitem__(self, key):
        if isinstance(key, list | np.ndarray):
            raise TypeError("no fancy indexing")
        return self._array[key]


def test_other_array_types(pixels):
    plain = AlignedStack(PlainArray(pixels), list("abcde"), laterality=LATERALITY)
    np.testing.assert_array_equal(plain.get([3, 1]), pixels[[3, 1]])
    np.testing.assert_array_equal(plain.get(slice(1, 3)), pixels[1:3])
    np.testing.assert_array_equal(plain.subset([4, 0]).to_left_eye().get(slice(None)), pixels[[4, 0]])


def test_zarr_pixels(pixels):
    zarr = pytest.importorskip("zarr")
    stack = AlignedStack(zarr.array(pixels, chunks=(1, 32, 40, 3)), list("abcde"), laterality=LATERALITY)
    np.testing.assert_array_equal(stack.get([3, 1]), pixels[[3, 1]])
    assert isinstance(stack.subset([4, 0]).pixels, da.Array)
    np.testing.assert_array_equal(stack.subset([4, 0]).get(slice(None)), pixels[[4, 0]])


def test_laterality_defaults(pixels):
    assert AlignedStack(pixels, list("abcde")).laterality.tolist() == [""] * 5
    labels = LabelsTable(list("abcde"), [], np.zeros((5, 0)), laterality=["left", "R", "", "r", "L"])
    stack = AlignedStack(pixels, list("abcde"), labels=labels)
    assert stack.laterality.tolist() == LATERALITY
    assert stack.sources == ["<memory>"] * 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pixels=np.zeros((2, 3, 4))), r"\(n, H, W, C\)"),
        (dict(image_ids=["a"]), "image_ids has 1 entries for 2 images"),
        (dict(image_ids=["a", "a"]), "duplicate image ids: 'a'"),
        (dict(laterality=["L"]), "laterality has 1 entries"),
        (dict(laterality=["L", "up"]), r"image 'b'.*'up'"),
        (dict(sources=["x"]), "sources has 1 entries"),
        (dict(frame="right"), "frame must be one of"),
        (dict(labels=LabelsTable(["b", "a"], ["x"], np.zeros((2, 1)))), r"row 0 is 'b', image 0 is 'a'"),
        (dict(labels=LabelsTable(["a"], ["x"], np.zeros((1, 1)))), "labels have 1 rows for 2 images"),
    ],
)
def test_constructor_validation(kwargs, message):
    arguments = dict(pixels=np.zeros((2, 3, 4, 1)), image_ids=["a", "b"]) | kwargs
    with pytest.raises(StackError, match=message):
        AlignedStack(**arguments)
