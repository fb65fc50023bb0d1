"""Image-wise maps for many (image, label) pairs: target selection, batching, post-processing.

The engine works on one chunk of harmonised images at a time and knows nothing about files, napari or progress
bars; :mod:`napari_global_xai.explain.pipeline` drives it chunk by chunk.
"""

from __future__ import annotations

import numpy as np
import torch

from ..batching import images_per_pass, iterate_batches, measure_bytes_per_image, memory_probe, to_device
from ..config import SUBSET_RULES, ExplainConfig
from ..control import RunControl
from .base import SaliencyMethod, get_method
from .postprocess import to_image_maps

__all__ = ["SUBSETS", "predict_probabilities", "select_pairs", "ImageMapEngine"]

#: Which images contribute to a label's global map (methods.md §1.6; the paper's choice is unknown).
SUBSETS = SUBSET_RULES


@torch.inference_mode()
def predict_probabilities(model, images: np.ndarray, batch: int | None = None) -> np.ndarray:
    """Model probabilities ``(k, n_labels)`` for harmonised raw images ``(k, H, W, C)``."""
    batch = batch or images_per_pass(model.device)
    out = [
        model.scores(model.preprocess(images[i : i + batch]), probability=True).float().cpu().numpy()
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, len(model.labels)), np.float32)


def select_pairs(
    subset: str,
    truth: np.ndarray | None,
    probabilities: np.ndarray,
    threshold: float = 0.5,
    known: np.ndarray | None = None,
) -> np.ndarray:
    """Which (image, label) maps enter each label's global map.

    Parameters
    ----------
    subset : {"positive", "predicted", "true_positive", "all"}
    truth : (n, L) 0/1 array or None
    probabilities : (n, L) array
    threshold : float
        A label is predicted positive when its probability exceeds it.
    known : (L,) bool array, optional
        Labels whose ``truth`` column is real (default: all). For ``positive`` / ``true_positive`` a label without
        ground truth falls back, alone, to its predicted positives; the others keep their ground truth.

    Returns
    -------
    numpy.ndarray of bool, (n, L)
    """
    predicted = probabilities > threshold
    if subset == "all":
        return np.ones_like(predicted, bool)
    if subset == "predicted":
        return predicted
    if truth is None:
        raise ValueError(
            f"subset {subset!r} needs ground-truth labels for the target labels; give a labels table "
            "or use subset='predicted'"
        )
    truth = np.asarray(truth).astype(bool)
    if subset == "positive":
        chosen = truth
    elif subset == "true_positive":
        chosen = truth & predicted
    else:
        raise ValueError(f"unknown subset {subset!r}; choose from {SUBSETS}")
    if known is None:
        return chosen
    known = np.asarray(known, bool).reshape(1, -1)
    return np.where(known, chosen, predicted)


class ImageMapEngine:
    """Compute normalised image-wise maps for selected (image, label) pairs of a chunk.

    Parameters
    ----------
    model : LoadedModel
    config : ExplainConfig
    target_indices : list of int
        Model output index of each target label (the L axis of the maps).
    image_size : (H, W), optional
        Size of the images to come (default the card's ``input_size``); when known, the method's requirements are
        checked here, before any work, else at the first :meth:`compute`.
    memory : object, optional
        The device's memory figures (``free()``, ``reset_peak()``, ``peak()``, see
        :class:`~napari_global_xai.batching.CudaMemory`); default :func:`~napari_global_xai.batching.memory_probe`
        (CUDA only). Tests inject a stand-in.

    Attributes
    ----------
    notes : list of str
        One-line warnings from the method's check (each also issued once as a :class:`SaliencyWarning`).
    bytes_per_image : int or None
        Device memory of one image's model pass (forward and backward for gradient methods), measured once on a
        probe pass where memory is measurable; None elsewhere.
    images_per_pass : int
        Images per model pass the batches were planned for (from free memory and ``bytes_per_image`` when
        measured, else the fixed default of :func:`~napari_global_xai.batching.images_per_pass`).
    maps_per_call : int
        Maps per method call; halved (and remembered) on out-of-memory.

    Raises
    ------
    MethodUnavailable
        The method is not defined on this model's format (one line naming the format to give).

    Notes
    -----
    The measured pass is the model alone on ``PROBE_IMAGES`` images (under the same autocast), not the method: a
    method's internal batching is planned from images per pass (:meth:`SaliencyMethod.plan_batches`), so what has to
    fit is one pass over that many images.
    """

    #: Images in the memory-measuring probe pass.
    PROBE_IMAGES = 2

    def __init__(self, model, config: ExplainConfig, target_indices: list[int], image_size=None, memory=None):
        self.model = model
        self.config = config
        self.target_indices = np.asarray(target_indices, np.int64)
        self.method: SaliencyMethod = get_method(config.method, model, probability=config.probability, **config.params)
        self.memory = memory if memory is not None else memory_probe(model.device)
        self.bytes_per_image: int | None = None
        self.images_per_pass = images_per_pass(model.device, memory=self.memory)
        self.maps_per_call: int | None = config.maps_per_call
        self._planned = False
        if self.memory is None:  # nothing to measure: plan now from the fixed default
            self._plan(None)
        self.notes: list[str] | None = None
        size = image_size or model.card.input_size
        if size is not None:
            example = torch.zeros(1, model.n_channels, *size, device=model.device)
            self.check(example)
            self._plan(example)

    def _plan(self, example: torch.Tensor | None) -> None:
        """Set images per pass (measured on ``example``'s size where memory is measurable) and maps per call, once."""
        if self._planned or (self.memory is not None and example is None):
            return
        if self.memory is not None:
            self.bytes_per_image = measure_bytes_per_image(
                lambda k: self._probe_pass(example, k), self.model.device, self.PROBE_IMAGES, memory=self.memory
            )
            self.images_per_pass = images_per_pass(self.model.device, self.bytes_per_image, memory=self.memory)
        if self.config.maps_per_call is None:
            self.maps_per_call = self.method.plan_batches(self.images_per_pass)
        self._planned = True

    def _probe_pass(self, example: torch.Tensor, k: int) -> None:
        """One model pass over ``k`` copies of ``example`` (with a backward pass for gradient methods)."""
        x = example[:1].expand(k, *example.shape[1:]).clone()
        if self.method.needs_grad:
            x.requires_grad_(True)
        with torch.enable_grad() if self.method.needs_grad else torch.inference_mode(), self._autocast():
            out = self.model.scores(x)
            if self.method.needs_grad:
                out[:, int(self.target_indices[0]) if len(self.target_indices) else 0].sum().backward()
        del x, out

    def check(self, example: torch.Tensor) -> list[str]:
        """Run the method's requirement check once (:meth:`SaliencyMethod.check_model`); warn once per note."""
        if self.notes is None:
            import warnings

            from .base import SaliencyWarning

            self.notes = self.method.check_model(example)
            for note in self.notes:
                warnings.warn(note, SaliencyWarning, stacklevel=3)
        return self.notes

    def _autocast(self):
        """Mixed precision on CUDA when asked for; a no-op context otherwise."""
        import contextlib

        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
        if self.config.autocast is None or self.model.device.type != "cuda":
            return contextlib.nullcontext()
        if self.config.autocast not in dtypes:
            raise ValueError(f"autocast must be one of {sorted(dtypes)} or None, got {self.config.autocast!r}")
        return torch.autocast("cuda", dtype=dtypes[self.config.autocast])

    def compute(
        self,
        images: np.ndarray,
        pairs: np.ndarray,
        control: RunControl | None = None,
        on_batch=None,
        out: np.ndarray | None = None,
        done: np.ndarray | None = None,
        zero: np.ndarray | None = None,
        stalled: np.ndarray | None = None,
        completeness: np.ndarray | None = None,
    ) -> np.ndarray:
        """Maps of one chunk.

        ``out`` and ``done`` (when given) are filled in place batch by batch, so a cancelled call
        (:class:`~napari_global_xai.batching.Cancelled` raised on a cancel of ``control``) leaves every finished map
        in them.

        Parameters
        ----------
        images : (k, H, W, C) raw harmonised pixels
        pairs : (k, L) bool
            Which maps to compute; the others stay 0.
        control : RunControl, optional
            Its cancel is checked before each method call (its progress is not used: see ``on_batch``).
        out : (k, L, H, W) float32 array, optional
        done : (k, L) bool array, optional
            Set True for each finished map.
        zero : (k, L) bool array, optional
            Set True for each finished map that is zero everywhere (e.g. Grad-CAM after its ReLU): such a map is no
            explanation and must not be averaged into a global map as one.
        stalled : (k, L) bool array, optional
            Set True for each finished map the method flagged (:attr:`SaliencyMethod.last_flags`).
        completeness : (k, L) float array, optional
            Set, for each finished map of a method that reports it (IG), to its completeness error
            ``|Σ attribution − (f(x) − f(b))| / |f(x) − f(b)|`` (:attr:`SaliencyMethod.last_completeness`).
        on_batch : callable(n_maps_done), optional
            Called after each method call with the number of maps it produced.

        Notes
        -----
        Methods with :attr:`~SaliencyMethod.shares_path` get an image's pairs in one call
        (:meth:`~SaliencyMethod.attribute_labels`, ``maps_per_call`` images per call), so the labels of one image
        share each forward pass; other methods get ``maps_per_call`` (image, label) pairs per call.

        Returns
        -------
        numpy.ndarray, (k, L, H, W) float32
        """
        k, n_targets = pairs.shape
        h, w = images.shape[1:3]
        if out is None:
            out = np.zeros((k, n_targets, h, w), np.float32)
        img_idx, tgt_idx = np.nonzero(pairs)
        if len(img_idx) == 0:
            return out
        x_all = to_device(self.model.preprocess(images, device=torch.device("cpu")), self.model.device)
        self.check(x_all[:1])
        self._plan(x_all[:1])
        if self.method.shares_path:
            return self._compute_grouped(x_all, pairs, control, on_batch, out, done, zero, stalled, completeness)
        targets_all = torch.as_tensor(self.target_indices[tgt_idx], device=self.model.device)

        def run(sl):
            x = x_all[torch.as_tensor(img_idx[sl], device=x_all.device)]
            attr = self._call(lambda: self.method.attribute(x, targets_all[sl]), x)
            maps = to_image_maps(attr, self.config.reduction, self.config.normalisation).cpu().numpy()
            return maps, self._row_values(self.method.last_flags, len(x), bool), self._completeness(len(x))

        def remember(size):
            self.maps_per_call = size

        for sl, (maps, flags, comp) in iterate_batches(
            len(img_idx),
            self.maps_per_call,
            run,
            cancel=None if control is None else control.cancel_fn,
            on_backoff=remember,
        ):
            rows, cols = img_idx[sl], tgt_idx[sl]
            self._store(rows, cols, maps, flags, comp, out, done, zero, stalled, completeness)
            if on_batch is not None:
                on_batch(sl.stop - sl.start)
        return out

    def _call(self, fn, x):
        """Run a method call under the method's grad mode and the autocast setting."""
        if self.method.needs_grad:
            x.requires_grad_(True)
        grad_ctx = torch.enable_grad() if self.method.needs_grad else torch.inference_mode()
        with grad_ctx, self._autocast():
            return fn()

    @staticmethod
    def _row_values(values, shape, dtype):
        """A method's per-map report (flags, completeness) as a numpy array of ``shape``; zeros / NaN when absent."""
        if values is None:
            return np.zeros(shape, bool) if dtype is bool else np.full(shape, np.nan, np.float64)
        return np.asarray(values.cpu() if hasattr(values, "cpu") else values, dtype).reshape(shape)

    def _completeness(self, shape):
        return self._row_values(self.method.last_completeness, shape, np.float64)

    @staticmethod
    def _store(rows, cols, maps, flags, comp, out, done, zero, stalled, completeness):
        out[rows, cols] = maps
        if stalled is not None:
            stalled[rows, cols] = flags
        if done is not None:
            done[rows, cols] = True
        if zero is not None:
            zero[rows, cols] = ~maps.reshape(len(maps), -1).any(axis=1)
        if completeness is not None:
            completeness[rows, cols] = comp

    def _compute_grouped(self, x_all, pairs, control, on_batch, out, done, zero, stalled, completeness):
        """:meth:`compute` for methods that share an image's forward passes between its labels."""
        images = np.flatnonzero(pairs.any(axis=1))
        m = int(pairs.sum(axis=1).max())
        table = np.full((len(pairs), m), -1, np.int64)  # target slot -> column of pairs (-1: none)
        for i in images:
            cols = np.flatnonzero(pairs[i])
            table[i, : len(cols)] = cols
        target_of = np.r_[self.target_indices, -1]

        def run(sl):
            rows = images[sl]
            x = x_all[torch.as_tensor(rows, device=x_all.device)]
            slots = table[rows]
            targets = torch.as_tensor(target_of[slots], device=x.device)  # -1 stays -1
            attr = self._call(lambda: self.method.attribute_labels(x, targets), x)
            valid = slots >= 0
            attr = attr[torch.as_tensor(valid, device=attr.device)]
            maps = to_image_maps(attr, self.config.reduction, self.config.normalisation).cpu().numpy()
            flags = self._row_values(self.method.last_flags, valid.shape, bool)[valid]
            return maps, flags, self._completeness(valid.shape)[valid], rows, slots

        def remember(size):
            self.maps_per_call = size

        for _sl, (maps, flags, comp, rows, slots) in iterate_batches(
            len(images),
            min(self.maps_per_call, len(images)),
            run,
            cancel=None if control is None else control.cancel_fn,
            on_backoff=remember,
        ):
            r, s = np.nonzero(slots >= 0)
            self._store(rows[r], slots[r, s], maps, flags, comp, out, done, zero, stalled, completeness)
            if on_batch is not None:
                on_batch(len(maps))
        return out
