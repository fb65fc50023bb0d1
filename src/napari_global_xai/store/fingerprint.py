"""The settings fingerprint of an explain run: everything that decides its maps, compared before a resume.

A store remembers the settings it was written with (:func:`run_settings`); a run into a non-empty store resumes it
only when :func:`differences` finds none, else it is refused naming each differing setting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

__all__ = ["run_settings", "differences", "settings_hash"]

#: Card fields that never change a map (names, free-form facts, where the card lies).
_CARD_FACTS = ("name", "metrics", "provenance", "path")
#: Settings recorded as digests (a difference is named, not shown).
_DIGESTS = ("model_weights", "model_card", "stack_sources", "image_ids", "ground_truth")


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype.str, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def run_settings(task, stack, map_dtype: str) -> dict:
    """The settings that decide an explain run's maps, as a flat JSON-able dict.

    Parameters
    ----------
    task : napari_global_xai.explain.task.ExplainChunkTask
        Its config, targets, resolved subset, ground truth and model.
    stack : AlignedStack
        The stack as given (its sources and image ids).
    map_dtype : str

    Returns
    -------
    dict
        The store's layout version (:data:`~.options.STORE_LAYOUT`), readable values for the run options; sha256
        digests (32 hex digits) for the model weights and card, the input files, the image ids and the ground truth.

    Notes
    -----
    Left out on purpose, because they do not change a map: the device, ``maps_per_call`` (batching), the card's
    name/metrics/provenance and where files lie (a moved stack or card with the same contents resumes). The input
    files are fingerprinted by size plus first and last MiB (:func:`~napari_global_xai.provenance.file_fingerprint`).
    """
    from ..provenance import file_fingerprint
    from .options import STORE_LAYOUT

    config, card = task.config, task.model.card
    card_fields = {k: v for k, v in dataclasses.asdict(card).items() if k not in _CARD_FACTS}
    card_fields.pop("weights", None)
    sources = list(dict.fromkeys(str(s) for s in getattr(stack, "sources", ())))
    truth = np.zeros(0, np.uint8) if task.truth is None else np.asarray(task.truth, np.uint8)
    return {
        "store_layout": STORE_LAYOUT,
        "method": config.method,
        "params": json.loads(json.dumps(config.params, sort_keys=True, default=str)),
        "targets": list(task.targets),
        "subset": task.subset,
        "threshold": float(config.threshold),
        "compute": config.compute,
        "reduction": config.reduction,
        "normalisation": config.normalisation,
        "probability": bool(config.probability),
        "autocast": config.autocast,
        "include_stalled": bool(config.include_stalled),
        "chunk_size": int(config.chunk_size),
        "map_dtype": map_dtype,
        "shape": [int(v) for v in (len(task.stack), len(task.targets), *task.stack.shape[1:3])],
        "model_weights": _digest(file_fingerprint(card.weights_path())),
        "model_card": _digest(card_fields),
        "stack_sources": _digest([file_fingerprint(s) for s in sources]),
        "image_ids": _digest(list(stack.image_ids)),
        "ground_truth": _digest(truth, np.asarray(task.known, bool)),
    }


def settings_hash(settings: dict) -> str:
    """One digest of a settings dict (recorded in each completion record)."""
    return _digest(settings)


def differences(stored: dict, wanted: dict) -> list[str]:
    """``["method: 'ig' -> 'saliency'", "model_weights: changed", ...]``; empty when the settings agree."""
    out = []
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if a == b:
            continue
        out.append(f"{key}: changed" if key in _DIGESTS else f"{key}: {a!r} -> {b!r}")
    return out
