"""Analyses a reviewer asks for, on top of explain runs (Qt-free).

* :mod:`.sanity` — model-parameter randomisation check of saliency methods (Adebayo et al. 2018);
* :mod:`.compare` — group difference maps with a permutation test (FDR and family-wise corrected);
* :mod:`.regions` — optic disc / fovea, anatomical regions and the region table of a global map;
* :mod:`.pipelines` — one run function per analysis, shared by the CLI and the docks.
"""
