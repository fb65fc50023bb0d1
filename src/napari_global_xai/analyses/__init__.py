"""Analyses a reviewer asks for, on top of explain runs (Qt-free).

* :mod:`.sanity` — model-parameter randomisation check of saliency methods (Adebayo et al. 2018);
* :mod:`.compare` — group difference maps with a permutation test (FDR and family-wise corrected);
* :mod:`.landmarks` — optic disc, fovea and field of view of a mean anatomy;
* :mod:`.regions` — anatomical regions and the region table of a global map;
* :mod:`.sanity_pipeline`, :mod:`.compare_pipeline`, :mod:`.regions_pipeline` — one pipeline per analysis (its
  ``run_*`` door, shared by the CLI and the docks);
* :mod:`.explain_inputs` — what the pipelines read: explain output folders, per-image CSV values and landmarks.
"""
