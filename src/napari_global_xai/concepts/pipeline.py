"""The XNN concept pipeline (:func:`run_concepts`): features of one layer (one forward per image), training of the
explanation network (:mod:`.network`), image-wise and global concept maps, written to a folder by :mod:`.result`.

Choices (pooled features, concept maps, global maps, weights, faithfulness) are documented in the Notes of
:mod:`napari_global_xai.concepts`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..analysis_config import ConceptConfig
from ..batching import Cancelled
from ..control import RunControl
from .anatomy import concept_anatomy
from .network import ExplanationNet, train_explanation_net
from .result import ConceptResult

__all__ = ["concept_image_maps", "extract_features", "forward_with_layer", "layer_tap", "run_concepts"]


# ------------------------------------------------------------------------------------------------- features


def layer_tap(model, layer: str | None, example: torch.Tensor):
    """The :class:`~napari_global_xai.models.taps.LayerTap` of the concept layer (``layer``, else the card's
    ``cam_layer``, else the last spatial layer), on any model format (nn.Module, TorchScript, ``torch.export``)."""
    from ..models.taps import LayerTap
    from ..saliency.captum_methods import find_cam_layer

    name = layer or model.card.cam_layer or find_cam_layer(model.module, example)
    try:
        return LayerTap(model.module, [name])
    except ValueError as exc:
        raise ValueError(f"concept layer: {exc} (set --layer or the card's cam_layer)") from None


def _pool(acts: torch.Tensor) -> torch.Tensor:
    """``(n, C, h, w)`` → ``(n, 2C)``: spatial mean and spatial max per channel."""
    return torch.cat([acts.mean(dim=(2, 3)), acts.amax(dim=(2, 3))], dim=1)


def forward_with_layer(tap, x: torch.Tensor):
    """``(layer activations (n, C, h, w), model output)`` of one forward pass through ``tap``."""
    out, (acts,) = tap(x)
    if not isinstance(acts, torch.Tensor) or acts.ndim != 4:
        raise ValueError(f"the concept layer {tap.names[0]!r} does not output a (n, C, h, w) feature map")
    return acts, out


def _frame(stack, model):
    """The stack in the model's frame (left eye when the card harmonises laterality); arrays pass through."""
    if isinstance(stack, np.ndarray):
        return stack
    from ..data.conform import model_frame

    return model_frame(stack, model.card)


def _chunks(images, size: int):
    if isinstance(images, np.ndarray):
        for s in range(0, len(images), size):
            yield np.arange(s, min(len(images), s + size)), images[s : s + size]
    else:
        yield from images.iter_chunks(size)


@torch.no_grad()
def extract_features(
    model,
    images,
    layer: str | None = None,
    chunk_size: int = 8,
    *,
    control: RunControl | None = None,
):
    """Pooled layer features and model logits for every image.

    Parameters
    ----------
    model : LoadedModel
    images : AlignedStack or (n, H, W, C) array in the model's frame
    layer : str, optional
    chunk_size : int
    control : RunControl, optional
        Progress (stage ``"features"``, in images) and cancel, checked before each chunk.

    Returns
    -------
    features : (n, 2C) float32
    logits : (n, L) float32
    done : (n,) bool
        False for images not reached before a cancel.
    mean_acts : torch.Tensor, (C, h, w), or None
        The layer's activation map averaged over the images (the reference of the concept maps).
    """
    control = control or RunControl()
    n = len(images)
    features = logits = None
    act_sum = None
    done = np.zeros(n, bool)
    tap = None
    for idx, pixels in _chunks(images, chunk_size):
        if control.cancelled():
            break
        x = model.preprocess(pixels)
        tap = tap or layer_tap(model, layer, x[:1])
        acts, out = forward_with_layer(tap, x)
        f = _pool(acts.float()).cpu().numpy()
        part = acts.float().sum(dim=0).cpu().double()
        act_sum = part if act_sum is None else act_sum + part
        if features is None:
            features = np.full((n, f.shape[1]), np.nan, np.float32)
            logits = np.full((n, out.shape[1]), np.nan, np.float32)
        features[idx], logits[idx], done[idx] = f, out.float().cpu().numpy(), True
        control.report(int(done.sum()), n, "features")
    if features is None:
        features, logits = np.zeros((n, 0), np.float32), np.zeros((n, len(model.labels)), np.float32)
    mean_acts = None if act_sum is None else (act_sum / max(1, int(done.sum()))).float()
    return features, logits, done, mean_acts


# ------------------------------------------------------------------------------------------------- maps


def _concept_cams(
    acts: torch.Tensor, net: ExplanationNet, reference: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concept maps on the layer, ``(n, K, h, w)``, and concept activations ``(n, K)``."""
    a = acts.detach().float().requires_grad_(True)
    with torch.enable_grad():
        z = net.concepts(_pool(a))
        maps = []
        for k in range(z.shape[1]):
            (g,) = torch.autograd.grad(z[:, k].sum(), a, retain_graph=k + 1 < z.shape[1])
            maps.append(torch.relu((g * (a - reference)).sum(dim=1)))
    return torch.stack(maps, dim=1).detach(), z.detach()


def concept_image_maps(result: ConceptResult, indices, size: tuple[int, int]) -> np.ndarray:
    """Image-wise concept maps of some images upsampled to ``size`` (bilinear, as Grad-CAM): ``(k, K, H, W)``."""
    low = torch.from_numpy(np.ascontiguousarray(result.image_maps[np.asarray(indices)]))
    return F.interpolate(low, size=tuple(size), mode="bilinear", align_corners=False).clamp_min(0).numpy()


def run_concepts(
    stack,
    model,
    config: ConceptConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    control: RunControl | None = None,
) -> ConceptResult:
    """XNN concepts for a stack: features, explanation network, concept maps, weights, top images, faithfulness.

    Parameters
    ----------
    stack : AlignedStack, or (n, H, W, C) uint8 array already in the model's frame
        Labels (when the stack has them for the model's labels) give the faithfulness AUROCs.
    model : LoadedModel
    config : ConceptConfig, optional
    out_dir : path, optional
        Written with :meth:`ConceptResult.write` (atomically, also after a cancel). Checked before the model runs.
    control : RunControl, optional
        Progress (stages ``features``, ``train``, ``concept maps``) and cancel: a cancel stops at the next chunk /
        training check; what finished is kept (images not reached have NaN concepts and zero maps; training
        stopped early keeps the network reached).

    Returns
    -------
    ConceptResult

    Raises
    ------
    ModelLoadError
        The model does not fit the stack.
    ValueError
        Bad settings, an unusable layer, an output folder that cannot be written, fewer than 2 images.
    """
    control = control or RunControl()
    config = config or ConceptConfig()
    if out_dir is not None:
        from ..io_utils import check_output_folder

        check_output_folder(out_dir)
    shape = stack.shape
    model.check_input(shape)
    images = _frame(stack, model)
    n, h, w = shape[0], shape[1], shape[2]
    timings = {}

    t0 = time.perf_counter()
    features, logits, done, mean_acts = extract_features(
        model, images, config.layer, config.chunk_size, control=control
    )
    timings["features_s"] = time.perf_counter() - t0
    cancelled = not done.all()
    if done.sum() < 2:
        raise (
            Cancelled("cancelled before two images had features")
            if cancelled
            else ValueError("at least 2 images are needed")
        )

    t0 = time.perf_counter()
    net, losses, stopped, units = train_explanation_net(features[done], logits[done], config, control=control)
    timings["train_s"] = time.perf_counter() - t0
    cancelled = cancelled or stopped

    k = net.encoder.out_features  # the concepts kept (dead ones pruned)
    z_all = np.full((n, k), np.nan, np.float32)
    image_maps = None
    global_sum = np.zeros((k, h, w), np.float64)
    weight_sum = np.zeros(k, np.float64)
    mapped = np.zeros(n, bool)
    t0 = time.perf_counter()
    tap = None
    for idx, pixels in [] if cancelled else _chunks(images, config.chunk_size):
        if control.cancelled():
            cancelled = True
            break
        x = model.preprocess(pixels)
        tap = tap or layer_tap(model, config.layer, x[:1])
        with torch.no_grad():
            acts, _ = forward_with_layer(tap, x)
        cams, z = _concept_cams(acts.cpu(), net, mean_acts)
        if image_maps is None:
            image_maps = np.zeros((n, k) + tuple(cams.shape[-2:]), np.float32)
        image_maps[idx], z_all[idx], mapped[idx] = cams.numpy(), z.numpy(), True
        up = F.interpolate(cams, size=(h, w), mode="bilinear", align_corners=False).clamp_min(0).double()
        mass = up.sum(dim=(2, 3), keepdim=True)
        up = torch.where(mass > 0, up / mass.clamp_min(1e-30), torch.zeros_like(up))
        zw = z.double()
        global_sum += torch.einsum("nk,nkhw->khw", zw, up).numpy()
        weight_sum += zw.sum(dim=0).numpy()
        control.report(int(mapped.sum()), n, "concept maps")
    timings["maps_s"] = time.perf_counter() - t0
    if image_maps is None:
        image_maps = np.zeros((n, k, 1, 1), np.float32)
    global_maps = np.where(
        weight_sum[:, None, None] > 0, global_sum / np.maximum(weight_sum, 1e-30)[:, None, None], 0
    ).astype(np.float32)

    with torch.no_grad():
        f_t = torch.as_tensor(np.nan_to_num(features), dtype=torch.float32)
        z_feat, s_hat, _ = net(f_t)
    concept_logits = np.where(done[:, None], s_hat.numpy(), np.nan).astype(np.float32)
    z_use = np.where(mapped[:, None], z_all, np.where(done[:, None], z_feat.numpy(), np.nan))
    predictor = net.predictor.weight.numpy().T.copy()  # (K, L)
    weights = predictor * np.nanmean(np.where(done[:, None], z_feat.numpy(), np.nan), axis=0)[:, None]
    order = np.argsort(-np.nan_to_num(z_use, nan=-np.inf), axis=0, kind="stable")
    top = order[: min(int(config.top_n), n)].T.copy()

    labels = list(model.labels)
    auroc_model = auroc_concepts = None
    truth = _truth(stack, labels)
    if truth is not None and done.any():
        from ..metrics import auroc

        auroc_model = auroc(truth[done], logits[done])
        auroc_concepts = auroc(truth[done], concept_logits[done])
    anatomy = images.mean(axis=0) if isinstance(images, np.ndarray) else images.mean_image()
    placed = concept_anatomy(global_maps, anatomy, _left_eye(images))
    result = ConceptResult(
        concepts=z_use.astype(np.float32),
        image_maps=image_maps,
        global_maps=global_maps,
        weights=weights.astype(np.float32),
        predictor=predictor.T.astype(np.float32),
        top_images=top,
        model_logits=logits,
        concept_logits=concept_logits,
        auroc_model=auroc_model,
        auroc_concepts=auroc_concepts,
        labels=labels,
        image_ids=_ids(stack, n),
        config=config,
        losses=losses,
        timings=timings,
        cancelled=cancelled,
        net=net,
        units=units,
        fov_mass=placed.fov_mass,
        region_tables=placed.tables,
        anatomy_note=placed.note,
    )
    if out_dir is not None:
        result.write(out_dir, anatomy=None if isinstance(images, np.ndarray) else anatomy)
    return result


def _left_eye(images) -> bool:
    """Whether the images are in the left-eye frame (the landmark detector's): harmonised, or no right eye."""
    if isinstance(images, np.ndarray) or images.frame == "left" or images.laterality is None:
        return True
    return not np.any(np.asarray(images.laterality) == "R")


def _truth(stack, labels: list[str]) -> np.ndarray | None:
    table = getattr(stack, "labels", None)
    if table is None or not all(n in table.names for n in labels):
        return None
    return np.stack([table.column(n) for n in labels], axis=1).astype(np.uint8)


def _ids(stack, n: int) -> list[str]:
    ids = getattr(stack, "image_ids", None)
    return list(ids) if ids is not None else [f"image_{i:05d}" for i in range(n)]
