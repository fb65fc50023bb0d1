"""The explain job: its door (:mod:`.pipeline`), its chunk task (:mod:`.task`) and its result folder.

The saliency methods it runs are the library :mod:`napari_global_xai.saliency`.
"""
