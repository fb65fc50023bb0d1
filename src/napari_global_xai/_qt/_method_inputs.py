"""The saliency-method inputs the Explain and Sanity docks share: the method list, each method's key parameters
shown by default, and the parsing of the parameters field (``name=value`` pairs, Python literals or plain words).

Torch-free: the list mirrors the registry's names (:mod:`napari_global_xai._method_names`), so a dock opens without
importing torch.
"""

from __future__ import annotations

import ast

from .._method_names import BUILTIN_METHODS

__all__ = ["KEY_PARAMS", "METHODS", "parse_method_params", "parse_params"]

#: Every registered method (torch-free mirror of the registry, kept equal to it by a test).
METHODS = list(BUILTIN_METHODS)

#: Key parameters shown per method in the Explain dock (everything else keeps the method's documented default).
KEY_PARAMS = {
    "ig": "n_steps=32, baseline='zero'",
    "smoothgrad": "nt_samples=16, stdevs=0.15",
    "gradient_shap": "n_samples=8",
    "occlusion": "window=32, stride=16",
    "deeplift": "baseline='zero'",
    "igos": "preset='fast'",
    "igos++": "preset='fast'",
    "layercam": "layer=None",
    "scorecam": "batch_size=None",
}


def _items(text: str) -> list[str]:
    return list(filter(None, (p.strip() for p in text.split(","))))


def _value(text: str):
    """A Python literal (``8``, ``'blur'``, ``None``), else the text itself (``blur``)."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def parse_params(text: str) -> dict:
    """``"n_steps=32, baseline='zero'"`` → ``{"n_steps": 32, "baseline": "zero"}`` (one method's parameters)."""
    params = {}
    for item in _items(text):
        if "=" not in item:
            raise ValueError(f"parameters must look like name=value, got {item!r}")
        key, value = item.split("=", 1)
        params[key.strip()] = _value(value)
    return params


def parse_method_params(text: str, methods: list[str]) -> dict[str, dict]:
    """``"ig.n_steps=8, ig.baseline='blur'"`` → ``{"ig": {"n_steps": 8, "baseline": "blur"}, ...}``."""
    params = {m: {} for m in methods}
    for item in _items(text):
        key, sep, value = item.partition("=")
        method, dot, name = key.strip().partition(".")
        if not sep or not dot or method not in params:
            raise ValueError(f"parameters must look like method.name=value for a chosen method, got {item!r}")
        params[method][name.strip()] = _value(value)
    return params
