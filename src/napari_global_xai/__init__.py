"""napari-global-xai: global explanations and PEPPR faithfulness checks for aligned medical image stacks.

The core (``data``, ``models``, ``explain``, ``aggregate``, ``peppr``, ``run``, ``cli``) is Qt-free; the napari
contributions (``_reader``, ``_writer``, ``_sample_data``, ``_qt``) are thin and only call it. Importing this package
imports neither torch nor napari.
"""

__version__ = "0.1.0"
