"""napari-global-xai: global explanations and PEPPR faithfulness checks for aligned medical image stacks.

The core (``data``, ``models``, ``explain``, ``aggregate``, ``peppr``, ``run``, ``cli``) is Qt-free; the napari
contributions (``_reader``, ``_writer``, ``_sample_data``, ``_qt``) are thin and only call it. Importing this package
imports neither torch nor napari.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-global-xai")  # from git tags via setuptools-scm at install time
except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
