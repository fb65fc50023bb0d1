"""Packaging beyond what pyproject.toml can say: ship the top-level ``sample_data/`` inside the wheel.

The sample stack, its labels and ground truth and the demo model sit at the repository's top level (the design
card asks for it); installed, they are ``napari_global_xai/sample_data/`` (found by
:func:`napari_global_xai.samples.sample_data_dir`). pyproject.toml maps the package to the folder
(``package-dir``) and lists its files (``package-data``); setuptools' automatic package discovery cannot add a
mapped package, so the package list is built here. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages("src"), "napari_global_xai.sample_data"])
