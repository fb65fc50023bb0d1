"""XNN concept explanations (Qi, Khorram, Li; arXiv 1709.05360) with global concept maps over aligned anatomy.

An *explanation network* embeds the features of one layer (the card's CAM layer) into ``K`` non-negative concepts
from which the model's predictions are rebuilt (faithfulness), trained as a sparse reconstruction autoencoder with a
pull-away term. Each concept then gets image-wise maps (Grad-CAM of the concept activation on the layer), a global
map over the mean anatomy (aligned images make the image-wise maps comparable pixel by pixel), its weight in each
label's prediction and the images that activate it most.

Pipeline (:func:`run_concepts`): features (one forward per image) → training (features only, cheap) → concept maps
(one more forward per image; the gradients stop at the layer, so no backward through the model) → outputs.

The module is the whole XNN pipeline and reads best whole; it is over 500 lines mostly for these Notes.

Notes
-----
Only the paper's abstract and the official repository's README could be read (``/work/shared/docs/methods.md``
§2.2), so every detail below is a documented choice:

* **Features**: the layer's output pooled per channel by spatial mean *and* spatial max, ``f = [mean A, max A]``
  (``2C`` values), centred over the stack and divided by **one layer-wide scale** (the RMS of the centred features),
  ``f̃ = (f − μ) / s``. The mean carries extent, the max small focal evidence (the demo head uses both); the paper
  embeds a fully connected layer, which a generic conv model does not name. Why one scale rather than standardising
  each feature (``feature_scale="feature"``, the first version): the regularisers below are not scale-invariant, and
  per-feature standardisation blew the near-constant spatial-mean channels (demo model: median std 0.12 against 1.9
  for the spatial max) up to the max channels' footing, so concepts were built from spatial means, whose maps are
  diffuse by construction (a spatially uniform gradient times every deviation in the image). One scale keeps the
  layer's own units, those the model's head reads: the demo model's peripheral_lesion logit draws 10.8 of its
  positives' logit change from the max half and 0.15 from the mean half; the first version's best peripheral
  concept drew +1.3 from the mean half.
* **Embedding**: ``z = relu(E f̃ + b)`` (one linear layer, ``K`` concepts). One layer keeps every concept a
  direction in feature space, so its image-wise map is CAM-style; ReLU keeps concepts non-negative (present/absent).
* **Prediction layer** (faithfulness): ``ŝ = V z + c`` rebuilds the model's logits; loss = mean squared error per
  label divided by that label's logit variance (labels weigh equally).
* **Sparsity**: ``λ_s · mean |z|``; **pull-away**: ``λ_p · mean_{k≠l} cos²(E_k, E_l)`` over the concept directions
  (rows of ``E``), as in EBGAN's pull-away term applied to the explanation bases; **feature reconstruction**: a
  linear decoder ``f̃ ≈ D z + d``, ``λ_r · MSE``. Defaults ``λ_s = 0.2, λ_p = 0.1, λ_r = 0.5`` (the paper's
  weights were not found); Adam, full batch, ``steps`` iterations, seeded initialisation.
* **Predictor sparsity** ``λ_v · mean_l Σ_k |V_lk|`` (default 0.05): the abstract's "predictions can be constructed
  from the *few* concepts" read as each label's logit being rebuilt from few concepts. Without it, the prediction
  layer is free to spread a label over several concepts and the concepts over several labels (a rotation of ``z``
  that ``V`` undoes fits equally well): on the demo sample the best peripheral concept also tracked the absence of
  disc swelling (AUROC 0.89 for peripheral_lesion, 0.30 for disc_swelling) and half its map's mass lay inside
  the annulus' inner edge (0.38 in the annulus).
  With it, each disease gets its own concept on every seed tried; 0.1 began to cost faithfulness on one seed of five.
* **Encoder decay** ``λ_e · mean_k ‖E_k‖²`` (default 0.03): ridge on the concept directions. A stack has fewer images
  than pooled features (the sample: 64 images, rank 63, 192 features), so directions of ``E`` outside the features'
  span leave every activation unchanged and are fixed only by the random initialisation, yet a concept map is the
  gradient along ``E``: the ridge term picks the minimum-norm encoder, whose maps follow what the stack varies in.
* **Image-wise concept map**: ``relu(Σ_c ∂z_k/∂A_c ⊙ (A_c − Ā_c))``, the gradient of the concept activation times
  the layer's deviation from its stack-mean map ``Ā`` (HiResCAM-style, element-wise, at feature resolution, then
  upsampled bilinearly like Grad-CAM). Both halves of the choice were measured on the demo model and sample: with
  Grad-CAM's spatially averaged gradient, or without subtracting ``Ā``, the maps of the concepts that carry a label
  put most of their mass on anatomy shared by every image (field-of-view rim, vessels; measured with per-feature
  standardisation); the deviation from the mean anatomy is what is specific to an image, which aligned images make
  well defined. Also measured and not taken: ``Σ relu(∂z/∂A)·relu(A − Ā)`` (excitatory evidence only) and rectifying
  only after summing the signed maps over the stack moved the periphery by −0.3 and +0.1–0.4 (area-share ratio),
  while the choices above moved it from 2.1 to 3.2 (``benchmarks/RESULTS.md``).
* **Global concept map**: the mean of the mass-normalised image-wise maps, each image weighted by its concept
  activation ``z_k`` (images without the concept do not dilute it).
* **Concept × label weight**: ``V_lk · mean_i z_ik``, the concept's mean contribution to the label's logit; the raw
  ``V`` is kept too.
* **Faithfulness**: per-label AUROC of ``ŝ`` against the labels, next to the model's own AUROC.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .batching import Cancelled

__all__ = [
    "FEATURE_SCALES",
    "ConceptConfig",
    "ConceptResult",
    "ExplanationNet",
    "concept_image_maps",
    "extract_features",
    "run_concepts",
    "train_explanation_net",
    "write_concept_outputs",
]

ProgressFn = Callable[[int, int, str], None]
#: How the pooled features are scaled before the encoder (see the module Notes).
FEATURE_SCALES = ("layer", "feature")


@dataclass
class ConceptConfig:
    """Settings of an XNN concept run (recorded in the outputs).

    Attributes
    ----------
    k : int
        Number of concepts.
    steps : int
        Full-batch Adam iterations.
    lr : float
    sparsity, pull_away, reconstruction : float
        Loss weights (faithfulness has weight 1).
    predictor_sparsity : float
        Weight of the L1 penalty on the prediction layer (each label rebuilt from few concepts).
    encoder_decay : float
        Weight of the ridge penalty on the concept directions (minimum-norm encoder).
    feature_scale : {"layer", "feature"}
        Divide the centred pooled features by one layer-wide scale (default) or standardise each feature.
    seed : int
    chunk_size : int
        Images per forward pass (progress and cancel granularity).
    top_n : int
        Images listed per concept.
    layer : str, optional
        Layer whose features are embedded; default the card's ``cam_layer`` (else the last spatial layer).
    """

    k: int = 8
    steps: int = 800
    lr: float = 0.01
    sparsity: float = 0.2
    pull_away: float = 0.1
    reconstruction: float = 0.5
    predictor_sparsity: float = 0.05
    encoder_decay: float = 0.03
    feature_scale: str = "layer"
    seed: int = 0
    chunk_size: int = 8
    top_n: int = 8
    layer: str | None = None

    def __post_init__(self):
        if int(self.k) < 1:
            raise ValueError(f"k (number of concepts) must be at least 1, got {self.k}")
        if int(self.steps) < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.feature_scale not in FEATURE_SCALES:
            raise ValueError(f"feature_scale must be one of {', '.join(FEATURE_SCALES)}, got {self.feature_scale!r}")


class ExplanationNet(torch.nn.Module):
    """``f → z = relu(E standardise(f))`` (concepts) → ``V z`` (logits) and ``D z`` (features)."""

    def __init__(self, n_features: int, k: int, n_outputs: int, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.encoder = torch.nn.Linear(n_features, k)
        self.predictor = torch.nn.Linear(k, n_outputs)
        self.decoder = torch.nn.Linear(k, n_features)

    def standardise(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.mean) / self.std

    def concepts(self, f: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.encoder(self.standardise(f)))

    def forward(self, f: torch.Tensor):
        z = self.concepts(f)
        return z, self.predictor(z), self.decoder(z)


@dataclass
class ConceptResult:
    """Everything a concept run produced (partial when ``cancelled``).

    Attributes
    ----------
    concepts : (n, K) float32
        Concept activations per image (rows of unfinished images are NaN after a cancel).
    image_maps : (n, K, h, w) float32
        Image-wise concept maps at the layer's resolution (see :func:`concept_image_maps` for image size).
    global_maps : (K, H, W) float32
        Global concept maps, each summing to 1 (zeros for a concept no image activates).
    weights : (K, L) float32
        Concept × label weights ``V_lk · mean z_k`` (mean logit contribution).
    predictor : (L, K) float32
        Raw prediction-layer weights ``V``.
    top_images : (K, top_n) int
        Images that activate each concept most (indices into the stack), strongest first.
    model_logits, concept_logits : (n, L) float32
    auroc_model, auroc_concepts : (L,) float64 or None
        Per-label AUROC of the model and of the concept model (None without labels).
    labels : list of str
    image_ids : list of str
    config : ConceptConfig
    losses : dict of float
        Final value of each loss term.
    timings : dict of float
        Seconds per stage.
    cancelled : bool
    net : ExplanationNet or None
    """

    concepts: np.ndarray
    image_maps: np.ndarray
    global_maps: np.ndarray
    weights: np.ndarray
    predictor: np.ndarray
    top_images: np.ndarray
    model_logits: np.ndarray
    concept_logits: np.ndarray
    auroc_model: np.ndarray | None
    auroc_concepts: np.ndarray | None
    labels: list[str]
    image_ids: list[str]
    config: ConceptConfig
    losses: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    cancelled: bool = False
    net: ExplanationNet | None = None

    def faithfulness(self) -> dict:
        """``{label: {"model": auroc, "concepts": auroc}}`` (empty without labels)."""
        if self.auroc_model is None:
            return {}
        return {
            n: {"model": float(a), "concepts": float(b)}
            for n, a, b in zip(self.labels, self.auroc_model, self.auroc_concepts)
        }


# ------------------------------------------------------------------------------------------------- features


def _layer_module(model, layer: str | None, example: torch.Tensor) -> torch.nn.Module:
    from .explain.captum_methods import find_cam_layer

    name = layer or model.card.cam_layer or find_cam_layer(model.module, example)
    try:
        return model.module.get_submodule(name)
    except AttributeError:
        raise ValueError(f"the model has no layer {name!r} (set layer= or the card's cam_layer)") from None


def _pool(acts: torch.Tensor) -> torch.Tensor:
    """``(n, C, h, w)`` → ``(n, 2C)``: spatial mean and spatial max per channel."""
    return torch.cat([acts.mean(dim=(2, 3)), acts.amax(dim=(2, 3))], dim=1)


def _forward_with_layer(model, x: torch.Tensor, layer: torch.nn.Module):
    store = {}

    def hook(_m, _i, out):
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            raise ValueError("the concept layer does not output a (n, C, h, w) feature map")
        store["a"] = out

    handle = layer.register_forward_hook(hook)
    try:
        logits = model.module(x)
    finally:
        handle.remove()
    return store["a"], logits


def _frame(stack, model):
    """The stack in the model's frame (left eye when the card harmonises laterality); arrays pass through."""
    if isinstance(stack, np.ndarray):
        return stack
    from .data.conform import model_frame

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
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
):
    """Pooled layer features and model logits for every image.

    Parameters
    ----------
    model : LoadedModel
    images : AlignedStack or (n, H, W, C) array in the model's frame
    layer : str, optional
    chunk_size : int
    progress, cancel : callables, optional

    Returns
    -------
    features : (n, 2C) float32
    logits : (n, L) float32
    done : (n,) bool
        False for images not reached before a cancel.
    mean_acts : torch.Tensor, (C, h, w), or None
        The layer's activation map averaged over the images (the reference of the concept maps).
    """
    n = len(images)
    features = logits = None
    act_sum = None
    done = np.zeros(n, bool)
    module = None
    for idx, pixels in _chunks(images, chunk_size):
        if cancel is not None and cancel():
            break
        x = model.preprocess(pixels)
        module = module or _layer_module(model, layer, x[:1])
        acts, out = _forward_with_layer(model, x, module)
        f = _pool(acts.float()).cpu().numpy()
        part = acts.float().sum(dim=0).cpu().double()
        act_sum = part if act_sum is None else act_sum + part
        if features is None:
            features = np.full((n, f.shape[1]), np.nan, np.float32)
            logits = np.full((n, out.shape[1]), np.nan, np.float32)
        features[idx], logits[idx], done[idx] = f, out.float().cpu().numpy(), True
        if progress is not None:
            progress(int(done.sum()), n, "features")
    if features is None:
        features, logits = np.zeros((n, 0), np.float32), np.zeros((n, len(model.labels)), np.float32)
    mean_acts = None if act_sum is None else (act_sum / max(1, int(done.sum()))).float()
    return features, logits, done, mean_acts


# ------------------------------------------------------------------------------------------------- training


def _pull_away(e: torch.Tensor) -> torch.Tensor:
    k = e.shape[0]
    if k < 2:
        return e.new_zeros(())
    u = F.normalize(e, dim=1)
    cos2 = (u @ u.T).pow(2)
    return (cos2.sum() - cos2.diagonal().sum()) / (k * (k - 1))


#: Loss terms besides faithfulness, each weighted by the ConceptConfig field of the same name.
_PENALTIES = ("sparsity", "pull_away", "reconstruction", "predictor_sparsity", "encoder_decay")


def train_explanation_net(
    features: np.ndarray,
    logits: np.ndarray,
    config: ConceptConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
):
    """Train the explanation network on ``(features, model logits)``.

    Returns
    -------
    net : ExplanationNet
    losses : dict
        Final ``faithfulness``, ``sparsity``, ``pull_away``, ``reconstruction``, ``predictor_sparsity``,
        ``encoder_decay`` and ``total`` losses.
    cancelled : bool
        True when ``cancel`` stopped training early (the network is the one reached so far).
    """
    config = config or ConceptConfig()
    f = torch.as_tensor(features, dtype=torch.float32)
    s = torch.as_tensor(logits, dtype=torch.float32)
    if len(f) < 2:
        raise ValueError(f"at least 2 images are needed to train concepts, got {len(f)}")
    mean = f.mean(dim=0)
    if config.feature_scale == "feature":
        std = f.std(dim=0).clamp_min(1e-6)
    else:  # one scale for the whole layer: the pooled features keep the layer's units relative to each other
        std = (f - mean).pow(2).mean().sqrt().clamp_min(1e-6).expand_as(mean).clone()
    s_var = s.var(dim=0).clamp_min(1e-6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.seed))
        net = ExplanationNet(f.shape[1], int(config.k), s.shape[1], mean, std)
    opt = torch.optim.Adam(net.parameters(), lr=float(config.lr))
    target = net.standardise(f)
    cancelled = False
    terms = {}
    report = max(1, int(config.steps) // 50)
    for step in range(int(config.steps)):
        if cancel is not None and step % report == 0 and cancel():
            cancelled = True
            break
        z, s_hat, f_hat = net(f)
        terms = {
            "faithfulness": ((s_hat - s).pow(2) / s_var).mean(),
            "sparsity": z.abs().mean(),
            "pull_away": _pull_away(net.encoder.weight),
            "reconstruction": (f_hat - target).pow(2).mean(),
            "predictor_sparsity": net.predictor.weight.abs().sum(dim=1).mean(),
            "encoder_decay": net.encoder.weight.pow(2).sum(dim=1).mean(),
        }
        total = terms["faithfulness"] + sum(getattr(config, name) * terms[name] for name in _PENALTIES)
        opt.zero_grad()
        total.backward()
        opt.step()
        terms["total"] = total
        if progress is not None and (step + 1) % report == 0:
            progress(step + 1, int(config.steps), "train")
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, {k: float(v.detach()) for k, v in terms.items()}, cancelled


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
    out_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    control=None,
) -> ConceptResult:
    """XNN concepts for a stack: features, explanation network, concept maps, weights, top images, faithfulness.

    Parameters
    ----------
    stack : AlignedStack, or (n, H, W, C) uint8 array already in the model's frame
        Labels (when the stack has them for the model's labels) give the faithfulness AUROCs.
    model : LoadedModel
    config : ConceptConfig, optional
    out_dir : path, optional
        Written with :func:`write_concept_outputs` (atomically, also after a cancel). Checked before the model runs.
    progress : callable(done, total, stage), optional
        Stages ``features``, ``train``, ``concept maps``.
    cancel : callable() -> bool, optional
        Stops at the next chunk / training check; what finished is kept (images not reached have NaN concepts and
        zero maps; training stopped early keeps the network reached).
    control : RunControl, optional
        Progress and cancel in one object (:mod:`napari_global_xai.control`), instead of ``progress`` / ``cancel``.

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
    from .control import RunControl

    control = RunControl.of(control, progress, cancel)
    progress, cancel = control.report, control.cancel_fn
    config = config or ConceptConfig()
    if out_dir is not None:
        from .io_utils import check_output_folder

        check_output_folder(out_dir)
    shape = stack.shape
    model.check_input(shape)
    images = _frame(stack, model)
    n, h, w = shape[0], shape[1], shape[2]
    timings = {}

    t0 = time.perf_counter()
    features, logits, done, mean_acts = extract_features(
        model, images, config.layer, config.chunk_size, progress, cancel
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
    net, losses, stopped = train_explanation_net(features[done], logits[done], config, progress, cancel)
    timings["train_s"] = time.perf_counter() - t0
    cancelled = cancelled or stopped

    k = int(config.k)
    z_all = np.full((n, k), np.nan, np.float32)
    image_maps = None
    global_sum = np.zeros((k, h, w), np.float64)
    weight_sum = np.zeros(k, np.float64)
    mapped = np.zeros(n, bool)
    t0 = time.perf_counter()
    module = None
    for idx, pixels in [] if cancelled else _chunks(images, config.chunk_size):
        if cancel is not None and cancel():
            cancelled = True
            break
        x = model.preprocess(pixels)
        module = module or _layer_module(model, config.layer, x[:1])
        with torch.no_grad():
            acts, _ = _forward_with_layer(model, x, module)
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
        if progress is not None:
            progress(int(mapped.sum()), n, "concept maps")
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
        from .metrics import auroc

        auroc_model = auroc(truth[done], logits[done])
        auroc_concepts = auroc(truth[done], concept_logits[done])
    result = ConceptResult(
        z_use.astype(np.float32),
        image_maps,
        global_maps,
        weights.astype(np.float32),
        predictor.T.astype(np.float32),
        top,
        logits,
        concept_logits,
        auroc_model,
        auroc_concepts,
        labels,
        _ids(stack, n),
        config,
        losses,
        timings,
        cancelled,
        net,
    )
    if out_dir is not None:
        write_concept_outputs(result, out_dir, anatomy=None if isinstance(images, np.ndarray) else images.mean_image())
    return result


def _truth(stack, labels: list[str]) -> np.ndarray | None:
    table = getattr(stack, "labels", None)
    if table is None or not all(n in table.names for n in labels):
        return None
    return np.stack([table.column(n) for n in labels], axis=1).astype(np.uint8)


def _ids(stack, n: int) -> list[str]:
    ids = getattr(stack, "image_ids", None)
    return list(ids) if ids is not None else [f"image_{i:05d}" for i in range(n)]


# ------------------------------------------------------------------------------------------------- outputs


def write_concept_outputs(result: ConceptResult, out_dir: str | Path, anatomy: np.ndarray | None = None) -> Path:
    """Write a concept run, every file atomically.

    Files: ``global_concept_maps.tif`` (K, H, W), ``concept_image_maps.tif`` (n, K, h, w; layer resolution),
    ``concepts.csv`` (image × concept activations), ``concept_label_weights.csv``, ``top_images.csv``,
    ``concepts.json`` (faithfulness, losses, settings, timings), ``explanation_net.pt`` (state dict),
    ``mean_anatomy.tif`` when ``anatomy`` is given.
    """
    import io

    import tifffile

    from .io_utils import atomic_path, atomic_write_bytes, atomic_write_text, save_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"concept_{i}" for i in range(result.global_maps.shape[0])]
    with atomic_path(out / "global_concept_maps.tif") as tmp:
        tifffile.imwrite(tmp, result.global_maps, photometric="minisblack", metadata={"axes": "QYX", "concepts": names})
    with atomic_path(out / "concept_image_maps.tif") as tmp:
        tifffile.imwrite(tmp, result.image_maps, photometric="minisblack", metadata={"axes": "QCYX"})
    if anatomy is not None:
        with atomic_path(out / "mean_anatomy.tif") as tmp:
            tifffile.imwrite(tmp, np.asarray(anatomy))

    def csv(header, rows):
        return "\n".join([",".join(header)] + [",".join(str(v) for v in r) for r in rows]) + "\n"

    atomic_write_text(
        out / "concepts.csv",
        csv(["image"] + names, [[i] + [f"{v:.6g}" for v in row] for i, row in zip(result.image_ids, result.concepts)]),
    )
    atomic_write_text(
        out / "concept_label_weights.csv",
        csv(["concept"] + result.labels, [[c] + [f"{v:.6g}" for v in row] for c, row in zip(names, result.weights)]),
    )
    atomic_write_text(
        out / "top_images.csv",
        csv(
            ["concept"] + [f"rank_{r + 1}" for r in range(result.top_images.shape[1])],
            [[c] + [result.image_ids[j] for j in row] for c, row in zip(names, result.top_images)],
        ),
    )
    save_json(
        out / "concepts.json",
        {
            "method": "xnn",
            "config": asdict(result.config),
            "faithfulness_auroc": result.faithfulness(),
            "losses": result.losses,
            "timings_s": result.timings,
            "cancelled": result.cancelled,
            "labels": result.labels,
            "n_images": len(result.image_ids),
            "weights": "V[l, k] * mean_i z[i, k] (mean logit contribution)",
        },
    )
    if result.net is not None:
        buf = io.BytesIO()
        torch.save(result.net.state_dict(), buf)
        atomic_write_bytes(out / "explanation_net.pt", buf.getvalue())
    return out
