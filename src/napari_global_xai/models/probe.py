"""Find out what a model file needs: input channels, input size, output count, CAM layers; write its card.

``global-xai card MODEL_FILE --out CARD.json`` calls :func:`make_card`. Everything is probed with dummy (zero)
inputs; nothing the probe cannot know (normalisation, label names without a CSV, the output activation) is guessed
silently: :func:`make_card` returns the list of what the user must still check or fill in.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .taps import module_kind, spatial_layers

__all__ = ["CAM_CANDIDATES", "CHANNEL_CANDIDATES", "SIZE_CANDIDATES", "ProbeResult", "make_card", "probe_input"]

#: Channel counts tried when neither the card nor the first convolution says (1 = grey, 2 = red+green, 3 = RGB).
CHANNEL_CANDIDATES = (1, 2, 3)
#: (H, W) sizes tried in order when none is given; the UWF model's 384×512 first.
SIZE_CANDIDATES = ((384, 512), (224, 224), (256, 256), (512, 512), (299, 299), (64, 64))
#: How many CAM layer candidates a card lists (deepest first).
CAM_CANDIDATES = 5


@dataclass
class ProbeResult:
    """What a dummy forward pass found.

    Attributes
    ----------
    channels : int
    size : (H, W)
        The size that ran.
    size_fixed : bool
        True when the model needs exactly this size (another size failed, or an exported program fixes it).
    n_outputs : int
    cam_layers : list of str
        Candidate CAM layers (spatial outputs), deepest first.
    """

    channels: int
    size: tuple[int, int]
    size_fixed: bool
    n_outputs: int
    cam_layers: list[str] = field(default_factory=list)


def _first_conv_channels(module) -> int | None:
    """Input channels of the first 4-D weight (a Conv2d), when the parameters are reachable."""
    try:
        for _, p in module.named_parameters():
            if p.ndim == 4:
                return int(p.shape[1])
    except Exception:  # noqa: BLE001 - exotic modules
        return None
    return None


def _export_input_shape(module):
    """Static (C, H, W) of a ``torch.export`` graph's image input, entries None where dynamic."""
    for node in module.graph.nodes:
        if node.op == "placeholder" and node.meta.get("val") is not None and node.meta["val"].ndim == 4:
            return [int(d) if isinstance(d, int) else None for d in node.meta["val"].shape[1:]]
    return None


def _module_device(module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _runs(module, c, size):
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, c, *size, device=_module_device(module)))
    except Exception as exc:  # noqa: BLE001 - a failing candidate is the expected outcome of a probe
        return None, exc
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        return None, ValueError(
            f"the model returns {type(out).__name__} of shape {tuple(getattr(out, 'shape', ()))}, not (batch, outputs)"
        )
    return out, None


def probe_input(module, channels: int | None = None, size=None, cam: bool = False) -> ProbeResult:
    """Run zero inputs through ``module`` until one fits; report channels, size, outputs (and CAM layers).

    Parameters
    ----------
    module : nn.Module, TorchScript module or ``torch.export`` graph module
    channels : int, optional
        Known input channel count; default: the first convolution's, else :data:`CHANNEL_CANDIDATES`.
    size : (H, W), optional
        Known input size; default: an exported program's, else :data:`SIZE_CANDIDATES`.
    cam : bool
        Also list candidate CAM layers (:func:`~napari_global_xai.models.taps.spatial_layers`).

    Returns
    -------
    ProbeResult

    Raises
    ------
    ValueError
        No candidate input runs through the model (the message has the last error).

    Notes
    -----
    A size counts as fixed when the model fails on a second, different size; models with global pooling take
    any size and get no ``input_size``.
    """
    with contextlib.suppress(NotImplementedError):  # exported graphs have no train/eval switch
        module.eval()
    fixed_shape = _export_input_shape(module) if module_kind(module) == "export" else None
    if channels is None and fixed_shape and fixed_shape[0]:
        channels = fixed_shape[0]
    if size is None and fixed_shape and fixed_shape[1] and fixed_shape[2]:
        size = tuple(fixed_shape[1:])
    first = _first_conv_channels(module)
    chans = [channels] if channels else list(dict.fromkeys([c for c in (first, *CHANNEL_CANDIDATES) if c]))
    sizes = [tuple(size)] if size else list(SIZE_CANDIDATES)
    last_error = None
    for s in sizes:
        for c in chans:
            out, err = _runs(module, c, s)
            if out is None:
                last_error = err
                continue
            fixed = bool(fixed_shape and fixed_shape[1] and fixed_shape[2])
            if not fixed:
                other = (s[0] + 32, s[1] + 32)
                fixed = _runs(module, c, other)[0] is None
            cams = []
            if cam:
                layers = spatial_layers(module, torch.zeros(1, c, *s, device=_module_device(module)))
                cams = [name for name, _ in reversed(layers)][:CAM_CANDIDATES]
            return ProbeResult(c, tuple(s), fixed, int(out.shape[1]), cams)
    first_line = str(last_error).strip().splitlines()[0] if last_error is not None else ""
    raise ValueError(
        f"no zero input of {chans} channel(s) and size(s) {sizes} runs through the model (last "
        f"error: {first_line}); give the channel count and size"
    )


def make_card(
    model_file: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels_csv=None,
    architecture=None,
    architecture_kwargs=None,
    channels: int | None = None,
    size=None,
    activation: str = "sigmoid",
    trust_pickle: bool = False,
    log=None,
    overwrite: bool = False,
):
    """Probe a model file and write a card for it.

    Parameters
    ----------
    model_file : path
        TorchScript, ``torch.export`` (``.pt2``), state dict (``.pt``/``.pth``) or ``.safetensors`` file.
    out : path
        The card to write (JSON; the weights path in it is relative to the card's folder when possible).
    labels_csv : path, optional
        Label names: the CSV's columns whose values are all 0/1, in file order, when their number equals the
        model's output count; else ``label_0``, ``label_1``, ...
    architecture : str, optional
        Needed for a state dict (:func:`~napari_global_xai.models.architectures.resolve_architecture`).
    architecture_kwargs : dict, optional
    channels : int, optional
    size : (H, W), optional
    activation : {"sigmoid", "softmax"}
    trust_pickle : bool
    log : callable(str), optional
        Told which user code is imported.
    overwrite : bool
        Replace an existing file at ``out`` (otherwise refused before the model is loaded: it may be a card filled
        in by hand).

    Returns
    -------
    (ModelCard, list of str)
        The written card and what the user must still check or fill in (one sentence each).

    Raises
    ------
    ModelLoadError
        The file cannot be loaded, or no dummy input fits it.
    OutputFolderError
        ``out`` exists and ``overwrite`` is false, or is a folder.
    """
    from ..errors import OutputFolderError
    from .card import ModelCard, ModelLoadError
    from .loading import _load_module

    out = Path(out)
    if out.is_dir():
        raise OutputFolderError(f"card {out} is a folder; give the card's file name (e.g. {out / 'model.card.json'})")
    if out.exists() and not overwrite:
        raise OutputFolderError(
            f"card {out} exists and is never replaced unless asked (it may be filled in by hand); give another "
            "--out, or --overwrite to replace it"
        )
    model_file = Path(model_file)
    try:
        rel = os.path.relpath(model_file.resolve(), out.resolve().parent)
    except ValueError:  # another drive (Windows)
        rel = str(model_file.resolve())
    arch = architecture
    file_part, _, cls = (arch or "").rpartition(":")
    if file_part.endswith(".py") and not Path(file_part).is_absolute():
        arch = f"{os.path.relpath(Path(file_part).resolve(), out.resolve().parent)}:{cls}"
    probe_card = ModelCard(
        labels=["probe"],
        weights=str(model_file.resolve()),
        architecture=architecture,
        architecture_kwargs=dict(architecture_kwargs or {}),
        activation=activation,
    )
    module = _load_module(probe_card, trust_pickle, log)
    try:
        found = probe_input(module, channels=channels, size=size, cam=True)
    except ValueError as exc:
        raise ModelLoadError(f"{model_file.name}: {exc}") from None
    todo = []
    names, source = _label_names(labels_csv, found.n_outputs, todo)
    card = ModelCard(
        name=model_file.stem,
        labels=names,
        weights=rel,
        format=probe_card.format,
        activation=activation,
        architecture=arch,
        architecture_kwargs=dict(architecture_kwargs or {}),
        input_channels=list(range(found.channels)),
        input_size=list(found.size) if found.size_fixed else None,
        cam_layer=found.cam_layers[0] if found.cam_layers else None,
        provenance={
            "card_written_by": "global-xai card",
            "probe": {
                "channels": found.channels,
                "ran_on_size": list(found.size),
                "size_fixed": found.size_fixed,
                "n_outputs": found.n_outputs,
                "cam_layer_candidates": found.cam_layers,
                "labels_from": source,
            },
        },
    )
    card.to_json(out)
    todo += [
        (
            f"mean/std: set the per-channel normalisation used in training (now mean 0, std 1 for "
            f"{found.channels} channel(s))"
        ),
        (
            f"input_channels: the stack channels the model reads, in order (now {card.input_channels}: the first "
            f"{found.channels}; red+green of an RGB stack is [0, 1])"
        ),
        f"activation: check '{activation}' ('sigmoid' multi-label or 'softmax' multi-class)",
        "pixel_scale: raw pixels are divided by 255 before normalisation (set 65535 for 16-bit images)",
        (
            "harmonise_laterality: true mirrors right eyes to left-eye orientation (set false if the model never saw "
            "mirrored images)"
        ),
    ]
    if found.size_fixed:
        todo.append(f"input_size: the model needs {list(found.size)}; stacks are resized to it")
    else:
        todo.append("input_size: the model takes any size; set the size it was trained on to have stacks resized to it")
    if found.cam_layers:
        todo.append(
            f"cam_layer: '{found.cam_layers[0]}' (deepest spatial layer); other candidates: {found.cam_layers[1:]}"
        )
    else:
        todo.append("cam_layer: no spatial layer found; Grad-CAM will not be available")
    return card, todo


def _label_names(labels_csv, n_outputs: int, todo: list) -> tuple[list[str], str]:
    default = [f"label_{i}" for i in range(n_outputs)]
    if labels_csv is None:
        todo.append(
            f"labels: {n_outputs} placeholders label_0..label_{n_outputs - 1}; name them as in your "
            "labels CSV, in model output order"
        )
        return default, "placeholders"
    columns = _binary_columns(labels_csv)
    if len(columns) != n_outputs:
        todo.append(
            f"labels: {labels_csv} has {len(columns)} 0/1 column(s) {columns} but the model has "
            f"{n_outputs} outputs; the card has placeholders label_0..; name them in model output order"
        )
        return default, "placeholders"
    todo.append(
        f"labels: taken from the 0/1 columns of {Path(labels_csv).name} in file order {columns}; check "
        "that this is the model's output order"
    )
    return columns, str(labels_csv)


def _binary_columns(path) -> list[str]:
    """Columns of a CSV whose non-empty values are all 0/1 (any of ``,`` ``;`` tab as delimiter)."""
    import csv

    from .card import ModelLoadError

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ModelLoadError(f"cannot read labels CSV {path}: {exc}") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(text.splitlines(), dialect))
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    out = []
    for j, name in enumerate(header):
        values = {r[j].strip() for r in body if j < len(r) and r[j].strip()}
        if values and values <= {"0", "1", "0.0", "1.0"}:
            out.append(name.strip())
    return out
