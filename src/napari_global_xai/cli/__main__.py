"""``python -m napari_global_xai.cli``: the ``global-xai`` command."""

import sys

from . import main

sys.exit(main())
