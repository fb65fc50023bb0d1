#!/usr/bin/env bash
# Create .venv and install napari-global-xai with its test tools.
# torch==2.13.0 goes in first: a bare "torch" requirement would otherwise pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[testing]"
# CAM test reference; --no-deps because it requires torchvision (broken beside this torch; tests stub it)
.venv/bin/python -m pip install --quiet --no-deps "grad-cam==1.5.7"
echo "installed: $(.venv/bin/python -c 'import napari_global_xai, torch, napari; print("napari-global-xai", napari_global_xai.__version__, "| torch", torch.__version__, "| napari", napari.__version__)')"
