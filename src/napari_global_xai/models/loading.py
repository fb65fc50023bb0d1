"""Safe model loading: from a card to a :class:`~napari_global_xai.models.card.LoadedModel` on a device.

Loading is safe by default: state dicts (``torch.save`` with ``weights_only=True``, or ``.safetensors``) into the
architecture the card names (:func:`~napari_global_xai.models.architectures.resolve_architecture`), TorchScript, or
``torch.export`` programs. Full pickled modules load only when the caller says it trusts the file.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DEFAULT_DEVICE
from .card import DEMO_CARD_PATH, LoadedModel, ModelCard, ModelLoadError

if TYPE_CHECKING:  # torch is imported where a model is loaded
    from torch import nn

__all__ = ["load_model", "load_demo_model", "infer_format"]


def infer_format(path: str | os.PathLike) -> str:
    """The format of a model file from its content (and the ``.safetensors`` suffix).

    A zip archive with a ``code/`` folder is TorchScript; one with ``archive_format`` or ``models/*.json`` is a
    ``torch.export`` program (``.pt2``); a safetensors file starts with a little-endian header length and a JSON
    header; anything else is taken for ``torch.save`` output (a state dict, or a full pickle, found when loading).
    """
    import zipfile

    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        return "safetensors"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if any("/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("/archive_format") or ("/models/" in n and n.endswith(".json")) for n in names):
            return "export"
        return "state_dict"
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    return "state_dict"


def _unwrap_state(state, path) -> dict:
    """A training checkpoint ``{"state_dict": {...}, "epoch": ...}`` → its state dict; DataParallel's
    ``module.`` prefix removed."""
    import torch

    if isinstance(state, dict) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        inner = [
            k for k in ("state_dict", "model_state_dict", "model", "state_dict_ema") if isinstance(state.get(k), dict)
        ]
        if not inner:
            raise ModelLoadError(
                f"{path} holds a {type(state).__name__} with keys {sorted(map(str, state))[:6]}, "
                "not a state dict of tensors"
            )
        state = state[inner[0]]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, not a state dict")
    if state and all(str(k).startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _fit_state(module: nn.Module, state: dict, path: Path, arch: str) -> None:
    """Load ``state`` strictly, or raise one line naming missing / unexpected keys and shape mismatches."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("with another shape", shapes)):
            if keys:
                more = f", … {len(keys) - 3} more" if len(keys) > 3 else ""
                parts.append(f"{len(keys)} {what} ({', '.join(keys[:3])}{more})")
        raise ModelLoadError(
            f"weights {path.name} do not fit architecture {arch!r}: "
            + "; ".join(parts)
            + " — check 'architecture' and 'architecture_kwargs'"
        )
    module.load_state_dict(state)


def _build(card: ModelCard, path: Path, log) -> nn.Module:
    from torch import nn

    from .architectures import resolve_architecture

    if not card.architecture:
        raise ModelLoadError(
            f"{path.name} holds only weights (a state dict): name the code that builds the model in the card's "
            "'architecture' ('file.py:ClassName', 'package.module:factory', 'timm:resnet34' or a registered "
            "name), or save the model as TorchScript or torch.export instead"
        )
    factory, note = resolve_architecture(card.architecture, card.base_dir())
    if note and log is not None:
        log(note)
    try:
        module = factory(**card.architecture_kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's constructor
        raise ModelLoadError(
            f"architecture {card.architecture!r} with {card.architecture_kwargs} fails to build: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(module, nn.Module):
        raise ModelLoadError(
            f"architecture {card.architecture!r} returned a {type(module).__name__}, not a torch.nn.Module"
        )
    return module


def _load_export(path: Path) -> nn.Module:
    import torch

    program = torch.export.load(str(path))
    inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    if len(inputs) != 1:
        raise ModelLoadError(
            f"{path.name} is a torch.export program with {len(inputs)} inputs; one image batch input is needed"
        )
    val = inputs[0].meta.get("val")
    if val is not None and isinstance(val.shape[0], int):
        raise ModelLoadError(
            f"{path.name} was exported for batches of exactly {val.shape[0]} image(s); export it with a dynamic "
            "batch: torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim('batch')},))"
        )
    return program.module()


def _load_module(card: ModelCard, trust_pickle: bool, log=None) -> nn.Module:
    import torch
    from torch import nn

    path = card.weights_path()
    if not path.exists():
        raise ModelLoadError(f"weights file {path} (from model card {card.path}) does not exist")
    fmt = card.format or infer_format(path)
    refuse_pickle = (
        f"{path} is a full pickled module: loading it runs arbitrary code from the file. Load it only "
        "if you trust where it came from (trust_pickle=True / --trust-pickle), or save a state_dict, "
        "TorchScript or torch.export file instead."
    )
    try:
        if fmt in ("state_dict", "safetensors"):
            if fmt == "safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path), device="cpu")
            else:
                try:
                    state = torch.load(path, map_location="cpu", weights_only=True)
                except pickle.UnpicklingError:
                    if card.format == "state_dict":
                        raise
                    if not trust_pickle:  # inferred: a whole pickled object, not a state dict
                        raise ModelLoadError(refuse_pickle) from None
                    state, fmt = torch.load(path, map_location="cpu", weights_only=False), "pickle"
            if isinstance(state, nn.Module):
                module = state
            else:
                module = _build(card, path, log)
                _fit_state(module, _unwrap_state(state, path), path, card.architecture)
        elif fmt == "torchscript":
            module = torch.jit.load(str(path), map_location="cpu")
        elif fmt == "export":
            module = _load_export(path)
        else:
            if not trust_pickle:
                raise ModelLoadError(refuse_pickle)
            module = torch.load(path, map_location="cpu", weights_only=False)
    except ModelLoadError:
        raise
    except KeyError as exc:
        raise ModelLoadError(str(exc.args[0])) from exc
    except Exception as exc:  # noqa: BLE001 - corrupt files raise many different types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load {fmt} model from {path}: {first}") from exc
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{path} does not contain a torch module (got {type(module).__name__})")
    card.format = fmt
    return module


def load_model(
    model: str | os.PathLike | ModelCard | None = None, device=DEFAULT_DEVICE, trust_pickle: bool = False, log=None
) -> LoadedModel:
    """Load a model from its card (JSON path or :class:`ModelCard`); ``None`` loads the shipped demo model.

    Parameters
    ----------
    model : path to a ``*.json`` card, a :class:`ModelCard`, or None
    device : {"auto", "cuda", "mps", "cpu"} or torch.device
    trust_pickle : bool
        Allow full pickled modules (runs code from the file).
    log : callable(str), optional
        Told which user code is imported to build an architecture (one line), e.g. ``print``.

    Returns
    -------
    LoadedModel
        Its card has ``format`` (inferred when the card left it out) and ``input_channels`` (probed when left
        out) filled in.

    Raises
    ------
    ModelLoadError
        Unreadable card or weights, unknown architecture, state dict that does not fit the architecture,
        pickled module without trust, ``torch.export`` program with a fixed batch size.
    """
    import torch

    from .device import resolve_device

    if model is None:
        model = DEMO_CARD_PATH
    card = model if isinstance(model, ModelCard) else None
    if card is None:
        path = Path(model)
        if path.suffix.lower() != ".json":
            raise ModelLoadError(
                f"{path}: give the model's card (a .json file naming the weights, labels, channels and "
                "normalisation), not the weights file itself; 'global-xai card MODEL_FILE --out CARD.json' "
                "writes one"
            )
        card = ModelCard.from_json(path)
    module = _load_module(card, trust_pickle, log)
    dev = resolve_device(device)
    module = module.to(dev)
    try:
        module = module.to(memory_format=torch.channels_last)
    except Exception:  # noqa: BLE001 - scripted/exported modules may not support it; it is only a speed-up
        pass
    return LoadedModel(module, card, dev)


def load_demo_model(device=DEFAULT_DEVICE) -> LoadedModel:
    """The shipped demo model (:data:`DEMO_CARD_PATH`)."""
    return load_model(DEMO_CARD_PATH, device=device)
