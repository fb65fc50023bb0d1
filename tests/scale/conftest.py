"""Fixtures of the scale tests: one set of inputs and one 2-worker LocalCluster for the whole session."""

import pytest

from ._ringbar import write_inputs


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    return write_inputs(tmp_path_factory.mktemp("dask_inputs"))


@pytest.fixture(scope="session")
def cluster():
    pytest.importorskip("distributed")
    from napari_global_xai.scale import connect

    with connect("local:2") as client:
        yield client
