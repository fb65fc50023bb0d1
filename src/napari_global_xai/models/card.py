"""Model cards and safe model loading.

A model card (JSON) says everything the rest of the pipeline needs to know about a model: how to load it, its
labels and output activation, which stack channels it reads, the input size, the normalisation and the layer for
CAM methods. Only ``weights`` and ``labels`` are required: the format is read from the file (``loading.infer_format``),
the name defaults to the file's stem and the input channels to the number of ``mean`` values (else probed).

Loading (safe by default) is :mod:`napari_global_xai.models.loading`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..samples import DEMO_CARD_PATH  # the shipped demo model sits with the sample data

if TYPE_CHECKING:  # torch is imported where a model is loaded or run, so ModelCard imports without it
    import torch
    from torch import nn

__all__ = ["ModelCard", "LoadedModel", "ModelLoadError", "DEMO_CARD_PATH", "apply_activation", "FORMATS", "ACTIVATIONS"]

FORMATS = ("state_dict", "safetensors", "torchscript", "export", "pickle")
ACTIVATIONS = ("sigmoid", "softmax")  # sigmoid multi-label, softmax multi-class


class ModelLoadError(ValueError):
    """A model file or card cannot be used; the message says why and what to do."""


@dataclass
class ModelCard:
    """What the pipeline needs to know about a model.

    Attributes
    ----------
    name : str, optional
        Default: the weights file's stem.
    labels : list of str
        One name per model output (required).
    weights : str
        Model file, relative to the card's folder (or absolute) (required).
    format : {"state_dict", "safetensors", "torchscript", "export", "pickle"}, optional
        Default: inferred from the file (:func:`~napari_global_xai.models.loading.infer_format`).
    activation : {"sigmoid", "softmax"}
        Sigmoid multi-label or softmax multi-class.
    architecture : str, optional
        Code that builds the model for a state dict (``state_dict`` / ``safetensors``): a registered name,
        ``"package.module:factory"``, ``"file.py:ClassName"`` (relative to the card) or ``"timm:name"``
        (:func:`~napari_global_xai.models.architectures.resolve_architecture`), called with
        ``architecture_kwargs``.
    input_channels : list of int, optional
        Stack channels fed to the model, in order (e.g. ``[0, 1]`` = red and green of an RGB stack). Default: the
        first C channels, C = the number of ``mean`` values, else probed from the model when it is loaded.
    input_size : [H, W], optional
        Required input size; ``None`` if the model takes any size.
    pixel_scale : float
        Raw pixels are divided by this before normalisation (255 for uint8).
    mean, std : list of float, optional
        Per input channel normalisation, applied after ``pixel_scale`` (default 0 and 1: none).
    cam_layer : str, optional
        Dotted name of the module whose output CAM methods use.
    harmonise_laterality : bool
        Whether the model expects right eyes mirrored to left-eye orientation.
    metrics, provenance : dict
        Free-form facts: held-out AUROC per label, seed, command that made it, ...
    """

    name: str | None = None
    labels: list[str] = field(default_factory=list)
    weights: str = ""
    format: str | None = None
    activation: str = "sigmoid"
    architecture: str | None = None
    architecture_kwargs: dict = field(default_factory=dict)
    input_channels: list[int] | None = None
    input_size: list[int] | None = None
    pixel_scale: float = 255.0
    mean: list[float] | None = None
    std: list[float] | None = None
    cam_layer: str | None = None
    harmonise_laterality: bool = True
    metrics: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    path: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if not self.labels:
            raise ModelLoadError("a model card needs 'labels' (one name per model output)")
        if not self.weights:
            raise ModelLoadError("a model card needs 'weights' (the model file, relative to the card)")
        if self.name is None:
            self.name = Path(self.weights).stem
        if self.format is not None and self.format not in FORMATS:
            raise ModelLoadError(
                f"model card format must be one of {FORMATS} (or left out to infer it from the "
                f"file), got {self.format!r}"
            )
        if self.activation not in ACTIVATIONS:
            raise ModelLoadError(f"model card activation must be 'sigmoid' or 'softmax', got {self.activation!r}")
        if self.input_channels is None and (self.mean is not None or self.std is not None):
            self.input_channels = list(range(len(self.mean if self.mean is not None else self.std)))
        if self.input_channels is not None:
            self.set_channels(self.input_channels)

    def set_channels(self, channels) -> None:
        """Set ``input_channels`` (default mean 0 / std 1 for each) and check mean/std have one value per channel."""
        self.input_channels = [int(c) for c in channels]
        n = len(self.input_channels)
        self.mean = [0.0] * n if self.mean is None else list(self.mean)
        self.std = [1.0] * n if self.std is None else list(self.std)
        if len(self.mean) != n or len(self.std) != n:
            raise ModelLoadError(
                f"model card has {n} input channels but {len(self.mean)} mean and {len(self.std)} std values"
            )
        _check_normalisation(self.mean, self.std, self.pixel_scale)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> ModelCard:
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
        except ModelLoadError as exc:
            raise ModelLoadError(f"model card {path}: {exc}") from None
        card.path = str(path)
        return card

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the card atomically."""
        data = asdict(self)
        data.pop("path")
        from ..io_utils import save_json

        save_json(path, data)

    def base_dir(self) -> Path | None:
        """The card's folder (where relative paths start), or None for a card not read from a file."""
        return Path(self.path).parent if self.path else None

    def weights_path(self) -> Path:
        p = Path(self.weights)
        if not p.is_absolute() and self.path:
            p = Path(self.path).parent / p
        return p


def _check_normalisation(mean, std, pixel_scale) -> None:
    """Refuse a normalisation that makes every input non-finite (a zero or non-finite std, a NaN mean, ...)."""
    import math
    import numbers

    def finite(v) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

    if not finite(pixel_scale) or pixel_scale <= 0:
        raise ModelLoadError(f"model card pixel_scale must be a finite number > 0, got {pixel_scale!r}")
    if not all(finite(v) for v in mean):
        raise ModelLoadError(f"model card mean must be finite numbers, got {list(mean)}")
    bad = [v for v in std if not finite(v) or v <= 0]
    if bad:
        raise ModelLoadError(
            f"model card std must be finite numbers > 0 (inputs are divided by it), got {list(std)}; a zero std "
            "would make every input and probability NaN or infinite: set the per-channel std used in training"
        )


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
        import torch

        try:
            module.eval()
        except NotImplementedError:  # torch.export modules have no train/eval switch: already inference graphs
            pass
        self.module = module
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.card = card
        self.device = device
        if card.input_channels is None:
            from .probe import probe_input

            card.set_channels(range(probe_input(module, size=card.input_size).channels))
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
        import torch

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
        return apply_activation(out, self.card.activation) if probability else out

    def check_input(self, shape) -> None:
        """Fail fast, with a clear message, if images of ``shape`` ``(n, H, W[, C])`` do not fit the model.

        Runs one tiny forward pass on a blank input, so shape mismatches inside the network and NaN or infinite
        outputs surface before a long run starts.
        """
        import torch

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
        if not torch.isfinite(out).all():
            raise ModelLoadError(
                f"model {name!r} returns NaN or infinite outputs for a blank (all-zero) input, so every probability "
                "and map would be meaningless; check the model file and its card"
            )

    def to(self, device) -> LoadedModel:
        from .device import resolve_device

        device = resolve_device(device)
        self.module.to(device)
        self.device = device
        return self


def apply_activation(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """Probabilities from ``(n, L)`` logits (``sigmoid`` or ``softmax``): the one place the card's activation meets
    a tensor (:meth:`LoadedModel.scores`, the explain wrappers); ``metrics.activate`` is the NumPy twin."""
    import torch

    return torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=1)
