"""A stack read lazily from a compressed TIFF travels to another process by its file name, not its pixels.

tifffile's zarr view of a compressed file holds an open handle and a lock; a dask array made directly over it could
not be pickled, so such a stack (the plugin's own sample is one) could not be sent to Dask workers from a dock.
"""

import pickle

import cloudpickle
import numpy as np
import tifffile

from napari_global_xai.data import read_stack
from napari_global_xai.scale.specs import StackSpec


def test_compressed_tiff_stack_pickles_by_reference_and_reads_the_same_pixels(tmp_path):
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 255, size=(7, 22, 30, 3), dtype=np.uint8)
    path = tmp_path / "deflated.tif"
    tifffile.imwrite(path, pixels, photometric="rgb", compression="zlib")
    assert tifffile.TiffFile(path).pages[0].compression != 1  # really compressed: no memory map possible
    stack = read_stack(path)
    assert not isinstance(stack.pixels, np.ndarray)  # lazy

    spec = StackSpec.from_stack(stack)
    assert len(spec.payload) < pixels.nbytes // 10  # the file's name, not its pixels
    reopened = pickle.loads(pickle.dumps(spec)).open()
    np.testing.assert_array_equal(np.asarray(reopened.pixels), pixels)
    np.testing.assert_array_equal(np.asarray(reopened.pixels[4:6, 3:9]), pixels[4:6, 3:9])
    # the dask array itself too (a worker may receive the graph directly)
    np.testing.assert_array_equal(np.asarray(cloudpickle.loads(cloudpickle.dumps(stack.pixels))), pixels)
