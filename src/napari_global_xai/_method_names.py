"""The built-in saliency methods by name, importable without torch: the registry's one list.

Each entry maps a method name to the class that implements it (``"module:Class"``). The napari docks list the
names at start-up without importing torch; :mod:`napari_global_xai.saliency.base` imports and registers a class the
first time its method is asked for. Adding a method is one class (a :class:`~napari_global_xai.saliency.base.
SaliencyMethod` subclass with that ``name``) plus one line here; a test checks every line against its class.
Order = the order the docks show them in.
"""

__all__ = ["METHOD_CLASSES", "BUILTIN_METHODS"]

_CAPTUM = "napari_global_xai.saliency.captum_methods"
_CAM = "napari_global_xai.saliency.cam"
_IGOS = "napari_global_xai.saliency.igos.methods"
_NOISE = "napari_global_xai.saliency.noise"

METHOD_CLASSES: dict[str, str] = {
    "ig": f"{_CAPTUM}:IntegratedGradients",
    "gradcam": f"{_CAPTUM}:GradCam",
    "gradcam++": f"{_CAM}:GradCamPlusPlus",
    "xgradcam": f"{_CAM}:XGradCam",
    "hirescam": f"{_CAM}:HiResCam",
    "layercam": f"{_CAM}:LayerCam",
    "eigencam": f"{_CAM}:EigenCam",
    "scorecam": f"{_CAM}:ScoreCam",
    "saliency": f"{_CAPTUM}:SaliencyGradient",
    "input_x_gradient": f"{_CAPTUM}:InputXGradient",
    "guided_backprop": f"{_CAPTUM}:GuidedBackprop",
    "deeplift": f"{_CAPTUM}:DeepLift",
    "gradient_shap": f"{_NOISE}:GradientShap",
    "smoothgrad": f"{_NOISE}:SmoothGrad",
    "occlusion": f"{_CAPTUM}:Occlusion",
    "igos": f"{_IGOS}:IGOS",
    "igos++": f"{_IGOS}:IGOSPlusPlus",
}

#: The names alone, in the docks' order.
BUILTIN_METHODS: tuple[str, ...] = tuple(METHOD_CLASSES)
