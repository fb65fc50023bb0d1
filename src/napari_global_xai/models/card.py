"""Model cards and safe model loading.

A model card (JSON) says everything the rest of the pipeline needs to know about a model: how to load it, its
labels and output activation, which stack channels it reads, the input size, the normalisation and the layer for
CAM methods. Loading is safe by default: state dicts with ``weights_only=True`` into a registered architecture,
TorchScript, or ``torch.export`` programs. Full pickled modules load only when the caller says it trusts the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .architectures import build_architecture
from .device import resolve_device

__all__ = ["ModelCard", "LoadedModel", "ModelLoadError", "load_model", "DEMO_CARD_PATH", "load_demo_model"]

DEMO_CARD_PATH = Path(__file__).parent / "weights" / "demo_net.card.json"
FORMATS = ("state_dict", "torchscript", "export", "pickle")


class ModelLoadError(ValueError):
    """A model file or card cannot be used; the message says why and what to do."""


@dataclass
class ModelCard:
    """What the pipeline needs to know about a model.

    Attributes
    ----------
    name : str
    labels : list of str
        One name per model output.
    weights : str
        Weights file, relative to the card's folder (or absolute).
    format : {"state_dict", "torchscript", "export", "pickle"}
    activation : {"sigmoid", "softmax"}
        Sigmoid multi-label or softmax multi-class.
    architecture : str, optional
        Registered architecture name (``state_dict`` format only), with ``architecture_kwargs``.
    input_channels : list of int
        Stack channels fed to the model, in order (e.g. ``[0, 1]`` = red and green of an RGB stack).
    input_size : [H, W], optional
        Required input size; ``None`` if the model takes any size.
    pixel_scale : float
        Raw pixels are divided by this before normalisation (255 for uint8).
    mean, std : list of float
        Per input channel normalisation, applied after ``pixel_scale``.
    cam_layer : str, optional
        Dotted name of the module whose output CAM methods use.
    harmonise_laterality : bool
        Whether the model expects right eyes mirrored to left-eye orientation.
    metrics, provenance : dict
        Free-form facts: held-out AUROC per label, seed, command that made it, ...
    """

    name: str
    labels: list[str]
    weights: str
    format: str = "state_dict"
    activation: str = "sigmoid"
    architecture: str | None = None
    architecture_kwargs: dict = field(default_factory=dict)
    input_channels: list[int] = field(default_factory=lambda: [0, 1])
    input_size: list[int] | None = None
    pixel_scale: float = 255.0
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0])
    cam_layer: str | None = None
    harmonise_laterality: bool = True
    metrics: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    path: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ModelLoadError(f"model card format must be one of {FORMATS}, got {self.format!r}")
        if self.activation not in ("sigmoid", "softmax"):
            raise ModelLoadError(f"model card activation must be 'sigmoid' or 'softmax', got {self.activation!r}")
        n = len(self.input_channels)
        if len(self.mean) != n or len(self.std) != n:
            raise ModelLoadError(
                f"model card has {n} input channels but {len(self.mean)} mean and {len(self.std)} std values"
            )
        if self.format == "state_dict" and not self.architecture:
            raise ModelLoadError("a state_dict model card needs an 'architecture' name")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "ModelCard":
        """Read a card; unknown keys are an error (catches typos)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot read model card {path}: {exc}") from exc
        known = {f.name for f in fields(cls)} - {"path"}
        unknown = set(data) - known
        if unknown:
            raise ModelLoadError(f"model card {path} has unknown keys {sorted(unknown)}; known: {sorted(known)}")
        try:
            card = cls(**data)
        except TypeError as exc:
            raise ModelLoadError(f"model card {path} is incomplete: {exc}") from exc
        card.path = str(path)
        return card

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the card atomically."""
        data = asdict(self)
        data.pop("path")
        from ..io_utils import atomic_write_text

        atomic_write_text(path, json.dumps(data, indent=2) + "\n")

    def weights_path(self) -> Path:
        p = Path(self.weights)
        if not p.is_absolute() and self.path:
            p = Path(self.path).parent / p
        return p


class LoadedModel:
    """A model on a device, with its card: turns raw stack pixels into scores.

    Attributes
    ----------
    module : torch.nn.Module
        In ``eval()`` mode, parameters frozen.
    card : ModelCard
    device : torch.device
    """

    def __init__(self, module: nn.Module, card: ModelCard, device: torch.device):
        try:
            module.eval()
        except NotImplementedError:  # torch.export modules have no train/eval switch: already inference graphs
            pass
        self.module = module
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.card = card
        self.device = device
        self._mean = torch.tensor(card.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(card.std, dtype=torch.float32).view(1, -1, 1, 1)

    @property
    def labels(self) -> list[str]:
        return list(self.card.labels)

    @property
    def n_channels(self) -> int:
        return len(self.card.input_channels)

    def preprocess(self, images, device: torch.device | None = None) -> torch.Tensor:
        """Raw harmonised pixels ``(n, H, W, C)`` (or ``(n, H, W)``) → normalised ``(n, c, H, W)`` float32 tensor."""
        arr = np.asarray(images)
        if arr.ndim == 3:
            arr = arr[..., None]
        channels = self.card.input_channels
        if max(channels) >= arr.shape[-1]:
            raise ModelLoadError(
                f"model {self.card.name!r} reads stack channels {channels} but the images have "
                f"{arr.shape[-1]} channel(s)"
            )
        x = torch.from_numpy(np.ascontiguousarray(arr[..., channels], dtype=np.float32))
        x = x.permute(0, 3, 1, 2).div_(self.card.pixel_scale)
        x = (x - self._mean) / self._std
        return x.to(device or self.device).contiguous(memory_format=torch.channels_last)

    def scores(self, x: torch.Tensor, probability: bool = False) -> torch.Tensor:
        """Model outputs for normalised inputs: logits, or probabilities (sigmoid/softmax per the card)."""
        out = self.module(x)
        if not probability:
            return out
        return torch.sigmoid(out) if self.card.activation == "sigmoid" else torch.softmax(out, dim=1)

    def check_input(self, shape) -> None:
        """Fail fast, with a clear message, if images of ``shape`` ``(n, H, W[, C])`` do not fit the model.

        Runs one tiny forward pass, so shape mismatches inside the network surface before a long run starts.
        """
        h, w = shape[1], shape[2]
        c = shape[3] if len(shape) == 4 else 1
        name = self.card.name
        if self.card.input_size is not None and tuple(self.card.input_size) != (h, w):
            raise ModelLoadError(
                f"model {name!r} expects images of H×W = {tuple(self.card.input_size)} but the stack is {(h, w)}; "
                "resize the stack when reading it (resize=...)"
            )
        if max(self.card.input_channels) >= c:
            raise ModelLoadError(f"model {name!r} reads channels {self.card.input_channels}; stack has {c}")
        probe = torch.zeros(1, self.n_channels, h, w, device=self.device)
        try:
            with torch.inference_mode():
                out = self.module(probe.contiguous(memory_format=torch.channels_last))
        except Exception as exc:  # noqa: BLE001 - any failure here means "does not fit"
            raise ModelLoadError(f"model {name!r} fails on a {tuple(probe.shape)} input: {exc}") from exc
        if out.ndim != 2 or out.shape[1] != len(self.card.labels):
            raise ModelLoadError(
                f"model {name!r} returns shape {tuple(out.shape)}, but its card lists {len(self.card.labels)} labels"
            )

    def to(self, device) -> "LoadedModel":
        device = resolve_device(device)
        self.module.to(device)
        self.device = device
        return self


def _load_module(card: ModelCard, trust_pickle: bool) -> nn.Module:
    path = card.weights_path()
    if not path.exists():
        raise ModelLoadError(f"weights file {path} (from model card {card.path}) does not exist")
    try:
        if card.format == "state_dict":
            module = build_architecture(card.architecture, **card.architecture_kwargs)
            state = torch.load(path, map_location="cpu", weights_only=True)
            module.load_state_dict(state)
        elif card.format == "torchscript":
            module = torch.jit.load(str(path), map_location="cpu")
        elif card.format == "export":
            module = torch.export.load(str(path)).module()
        else:
            if not trust_pickle:
                raise ModelLoadError(
                    f"{path} is a full pickled module: loading it runs arbitrary code from the file. Load it only "
                    "if you trust where it came from (trust_pickle=True / --trust-pickle), or save a state_dict, "
                    "TorchScript or torch.export file instead."
                )
            module = torch.load(path, map_location="cpu", weights_only=False)
    except ModelLoadError:
        raise
    except KeyError as exc:
        raise ModelLoadError(str(exc.args[0])) from exc
    except Exception as exc:  # noqa: BLE001 - corrupt files raise many different types
        raise ModelLoadError(f"cannot load {card.format} model from {path}: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{path} does not contain a torch module (got {type(module).__name__})")
    return module


def load_model(model: str | os.PathLike | ModelCard | None = None, device="auto",
               trust_pickle: bool = False) -> LoadedModel:
    """Load a model from its card (JSON path or :class:`ModelCard`); ``None`` loads the shipped demo model.

    Parameters
    ----------
    model : path to a ``*.json`` card, a :class:`ModelCard`, or None
    device : {"auto", "cuda", "mps", "cpu"} or torch.device
    trust_pickle : bool
        Allow full pickled modules (runs code from the file).

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelLoadError
        Unreadable card or weights, unknown architecture, pickled module without trust.
    """
    if model is None:
        model = DEMO_CARD_PATH
    card = model if isinstance(model, ModelCard) else None
    if card is None:
        path = Path(model)
        if path.suffix.lower() != ".json":
            raise ModelLoadError(
                f"{path}: give the model's card (a .json file naming the weights, labels, channels and "
                "normalisation), not the weights file itself"
            )
        card = ModelCard.from_json(path)
    module = _load_module(card, trust_pickle)
    dev = resolve_device(device)
    module = module.to(dev)
    try:
        module = module.to(memory_format=torch.channels_last)
    except Exception:  # noqa: BLE001 - scripted/exported modules may not support it; it is only a speed-up
        pass
    return LoadedModel(module, card, dev)


def load_demo_model(device="auto") -> LoadedModel:
    """The shipped demo model (:data:`DEMO_CARD_PATH`)."""
    return load_model(DEMO_CARD_PATH, device=device)
