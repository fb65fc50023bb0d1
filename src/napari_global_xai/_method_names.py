"""Names of the built-in saliency methods, importable without torch (the napari docks list them at start-up).

The registry (:func:`napari_global_xai.explain.method_names`) is the source of truth; a test keeps this tuple equal
to it. Order = the order the Explain dock shows them in.
"""

BUILTIN_METHODS = ("ig", "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "scorecam",
                   "saliency", "input_x_gradient", "guided_backprop", "deeplift", "gradient_shap", "smoothgrad",
                   "occlusion", "igos", "igos++")
