"""The curve engine: scores of ``(image, ranking, mode, fraction)`` for many curves in one batched, de-duplicated pass.

PEPPR (Engelmann et al. 2021, arXiv 2112.09591) checks that a *global* explanation of an aligned image modality is
faithful: the pixels it ranks as most important are erased (or restored) progressively in **all** images at once,
and the model is scored on the whole stack after each step (reconstruction: methods.md §1.7). One engine
(:class:`CurveEngine`) serves every curve in the package::

    ranking ──► removed-pixel mask per fraction (a key) ──► perturb.MaskedScorer: filled images made on the fly on
            the device, batched inference, each distinct (image, mask) once ──► logits ──► metric

* dataset level (:func:`~napari_global_xai.peppr.curve_functions.erase_restore_curves`,
  :func:`~napari_global_xai.peppr.pipeline.run_peppr`): one ranking shared by every image, metric = per-label AUROC
  over the stack (or the mean predicted probability without truth);
* image level (:func:`~napari_global_xai.peppr.curve_functions.deletion_insertion`): every image has its own
  ranking and the metric is that image's probability of its target label (RISE / I-GOS deletion and insertion,
  methods.md §2.5 and §3).

The engine never materialises all filled images: images are loaded in chunks and a model batch holds several
``(image, mask)`` pairs (across images *and* fractions). Forwards whose answer is already known are not run:
unmodified images are forwarded once and reused by every curve (erase at p = 0, restore at p = 1, every ranking), the
fully filled image is forwarded once for the whole stack when the fill is a constant (``zero`` / ``black``), and
masks that coincide (restoring the top k pixels of a ranking removes the same pixels as erasing the top H·W − k of
the reverse ranking) are one key, forwarded once. ``n_forwards`` counts the image forwards run, ``n_skipped`` those
saved; their sum is the naive count (one forward per curve, fraction and image).

:class:`CurveEngine` is one algorithm (plan the keys of every curve, load images in chunks, score each distinct key
once, fold the scores back into curves) whose steps share its state; the functions that turn its raw outputs into
curves are :mod:`napari_global_xai.peppr.curve_functions`.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..batching import images_per_pass
from ..config import CONSTANT_FILLS, DEFAULT_FRACTIONS, MODES, check_fill
from ..control import Cancelled, RunControl
from ..perturb.rankings import check_fractions, fraction_counts, rank_positions
from ..perturb.scorer import KEEP_ALL, REMOVE_ALL, MaskedScorer

__all__ = ["CurveEngine"]

_ORIG, _ALL, _NONE = 0, 1, -1  # key ids: nothing removed, everything removed, curve not requested


def _scorer_key(kid: int):
    """The scorer's key of an engine key id (the two special masks need no mask function)."""
    return KEEP_ALL if kid == _ORIG else REMOVE_ALL if kid == _ALL else kid


# ------------------------------------------------------------------------------------------------------ images


def _n_images(images) -> int:
    if hasattr(images, "shape"):
        return int(images.shape[0])
    if hasattr(images, "n"):
        return int(images.n)
    return len(images)


def _take(images, indices: np.ndarray) -> np.ndarray:
    """Raw pixels ``(k, H, W, C)`` of the given images (numpy, memmap, dask, zarr, or an object with ``get``)."""
    if not isinstance(images, np.ndarray) and callable(getattr(images, "get", None)) and not isinstance(images, dict):
        return np.asarray(images.get(indices))
    return np.asarray(images[indices])


def _image_hw(images) -> tuple[int, int]:
    if hasattr(images, "shape") and len(images.shape) >= 3:
        return int(images.shape[1]), int(images.shape[2])
    first = _take(images, np.array([0]))
    return int(first.shape[1]), int(first.shape[2])


# ------------------------------------------------------------------------------------------------------ engine


@dataclass
class _Request:
    keys: np.ndarray  # (2, F) key ids: erase row, restore row
    images: np.ndarray | None  # global image indices, None = every image
    position: dict | None  # global image index -> column in the output (explicit image lists)


@dataclass
class _Plan:
    active: np.ndarray  # images any request uses, ascending
    needs: dict  # image -> key ids to forward for it
    every: list  # requests on every image
    by_image: dict  # image -> requests with an explicit image list containing it
    n_forwards: int  # planned image forwards (incl. the shared fully filled image)
    n_naive: int  # one forward per (request, mode, fraction, image)
    uses_shared: bool  # whether the shared constant fully filled image is needed


class CurveEngine:
    """Scores of ``(image, ranking, mode, fraction)`` for many curves in one batched, deduplicated pass.

    Parameters
    ----------
    model : LoadedModel
        Anything with ``preprocess``, ``scores(x, probability=False)``, ``device``, ``labels`` and
        ``card.activation``.
    images : array-like, (n, H, W, C)
        Raw pixels in the frame the rankings live in (numpy, memmap, dask, or an object with ``get(indices)`` such
        as an :class:`~napari_global_xai.data.AlignedStack`, read in that stack's own frame). The engine never
        flips images: the pipeline decides the frame once (:mod:`napari_global_xai.peppr.pipeline`).
    fractions : sequence of float
        Strictly increasing, in [0, 1].
    fill : {"zero", "black", "blur", "impute"}
    batch_size : int, optional
        ``(image, mask)`` pairs per model pass; default :func:`~napari_global_xai.batching.images_per_pass`.
        Halved on out-of-memory.
    chunk_size : int, optional
        Images loaded and preprocessed at once; default ``max(16, batch_size)``.
    fill_sigma : float, optional
        Blur width for ``fill="blur"``.
    impute_noise : float
        Noise of ``fill="impute"``.
    seed : int
        Seed of the imputation noise.

    Notes
    -----
    A mask is identified by a key: ``(ranking, prefix, t)`` removes the pixels at rank positions ``< t`` and
    ``(ranking, suffix, t)`` those at positions ``>= t``. With ``k = round(p * H * W)``:
    erase = prefix ``k``; restore = suffix ``k``; erase of the reverse order = suffix ``H*W - k``; restore of the
    reverse order = prefix ``H*W - k``. Empty masks map to one key (the unmodified image) and full masks to another
    (the fully filled image, shared by all images for constant fills), so equal masks are forwarded once per image;
    identical rankings are registered once.
    """

    def __init__(
        self,
        model,
        images,
        fractions=DEFAULT_FRACTIONS,
        fill: str = "zero",
        *,
        batch_size: int | None = None,
        chunk_size: int | None = None,
        fill_sigma: float | None = None,
        impute_noise: float = 0.01,
        seed: int = 0,
    ):
        check_fill(fill)
        self.model = model
        self.images = images
        self.n_images = _n_images(self.images)
        self.shape = _image_hw(self.images)
        self.n_pixels = self.shape[0] * self.shape[1]
        self.fractions = check_fractions(fractions)
        self.counts = fraction_counts(self.fractions, self.n_pixels)
        self.fill = fill
        self.batch_size = int(batch_size or images_per_pass(model.device))
        self.chunk_size = int(chunk_size or max(16, self.batch_size))
        self.fill_sigma = fill_sigma
        self.impute_noise = impute_noise
        self.seed = int(seed)
        self.n_forwards = 0
        self.n_naive = 0
        self._positions: list[np.ndarray] = []
        self._ranking_ids: dict[bytes, int] = {}
        self._keys: list[tuple] = [("orig",), ("all",)]
        self._key_ids: dict[tuple, int] = {}
        self._requests: list[_Request] = []
        self._device_positions: OrderedDict[int, torch.Tensor] = OrderedDict()

    # -- building the job

    def add_ranking(self, ranking: np.ndarray) -> int:
        """Register a ranking (flat pixel indices, most important first); returns its id.

        A ranking equal to one already registered gets that one's id, so two maps with the same order (e.g. an
        overall map equal to a label map) share their forwards.
        """
        pos = rank_positions(ranking, self.n_pixels)
        digest = hashlib.blake2b(pos.tobytes(), digest_size=16).digest()
        if digest not in self._ranking_ids:
            self._ranking_ids[digest] = len(self._positions)
            self._positions.append(pos)
        return self._ranking_ids[digest]

    def add_request(
        self, ranking_id: int, reverse: bool = False, images: Sequence[int] | None = None, modes: Sequence[str] = MODES
    ) -> int:
        """Ask for the curves of one ranking (or its reverse) on ``images`` (default all); returns the request id.

        ``modes`` picks the curves (default erase and restore); a curve not asked for costs nothing and comes back
        as NaN.
        """
        if not 0 <= ranking_id < len(self._positions):
            raise ValueError(f"unknown ranking id {ranking_id}")
        if not modes or set(modes) - set(MODES):
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {modes}")
        keys = np.array(
            [
                [self._key(ranking_id, reverse, mode, int(k)) if mode in modes else _NONE for k in self.counts]
                for mode in MODES
            ]
        )
        idx, position = None, None
        if images is not None:
            idx = np.asarray(images, np.int64).ravel()
            if idx.size and (idx.min() < 0 or idx.max() >= self.n_images):
                raise ValueError(f"image indices must be in [0, {self.n_images})")
            position = {int(g): j for j, g in enumerate(idx)}
        self._requests.append(_Request(keys, idx, position))
        return len(self._requests) - 1

    def _key(self, ranking_id: int, reverse: bool, mode: str, k: int) -> int:
        hw = self.n_pixels
        if mode == "erase":
            suffix, t = (True, hw - k) if reverse else (False, k)
        else:
            suffix, t = (False, hw - k) if reverse else (True, k)
        if (not suffix and t == 0) or (suffix and t == hw):
            return _ORIG
        if (not suffix and t == hw) or (suffix and t == 0):
            return _ALL
        key = (ranking_id, suffix, t)
        if key not in self._key_ids:
            self._key_ids[key] = len(self._keys)
            self._keys.append(key)
        return self._key_ids[key]

    # -- planning

    @property
    def shared_fill(self) -> bool:
        """Whether the fully filled image is the same for every image (constant fill)."""
        return self.fill in CONSTANT_FILLS

    def _requests_by_image(self) -> tuple[list[int], dict[int, list[int]], np.ndarray]:
        every = [r for r, q in enumerate(self._requests) if q.images is None]
        by_image: dict[int, list[int]] = {}
        for r, q in enumerate(self._requests):
            if q.images is not None:
                for g in q.images:
                    by_image.setdefault(int(g), []).append(r)
        active = np.arange(self.n_images) if every else np.array(sorted(by_image), np.int64)
        return every, by_image, active

    def _plan(self) -> _Plan:
        """Active images, the key ids each one needs (shared full fill excluded), and the forward counts."""
        every, by_image, active = self._requests_by_image()
        cache: dict[tuple, np.ndarray] = {}
        needs: dict[int, np.ndarray] = {}
        n_image_forwards, n_naive, uses_shared = 0, 0, False
        for g in active:
            reqs = tuple(every + by_image.get(int(g), []))
            if reqs not in cache:
                kids = np.unique(np.concatenate([self._requests[r].keys.ravel() for r in reqs]))
                kids = kids[kids != _NONE]
                uses_shared |= self.shared_fill and bool((kids == _ALL).any())
                cache[reqs] = kids[kids != _ALL] if self.shared_fill else kids
            needs[int(g)] = cache[reqs]
            n_image_forwards += len(cache[reqs])
            n_naive += sum(int((self._requests[r].keys != _NONE).sum()) for r in reqs)
        return _Plan(active, needs, every, by_image, n_image_forwards + int(uses_shared), n_naive, uses_shared)

    def planned_forwards(self) -> tuple[int, int]:
        """``(forwards that will run, naive forwards)`` of the current requests."""
        plan = self._plan()
        return plan.n_forwards, plan.n_naive

    # -- running

    def run(
        self,
        control: RunControl | None = None,
        *,
        stage: str = "peppr",
        executor=None,
    ) -> list[dict[str, np.ndarray]]:
        """Run every request.

        Parameters
        ----------
        control : RunControl, optional
            Progress is reported as ``(done, total, stage)`` in image forwards, after each model pass (in-process)
            or each finished chunk (an executor elsewhere); the cancel is checked before each model pass.
        stage : str
            The stage name of the progress reports.
        executor : ChunkExecutor, optional
            Where the chunks of images run (:mod:`napari_global_xai.chunks`): default this process, one chunk after
            another; a :class:`~napari_global_xai.scale.executor.DaskExecutor` runs them on a cluster. The
            outputs are the same either way (each chunk is scored alone, in the same batches).

        Returns
        -------
        list of dict
            Per request, ``{"erase": (F, k, L), "restore": (F, k, L)}`` float64 raw model outputs (logits) for its
            ``k`` images (in the order given, or all images) and every model output;
            :func:`~napari_global_xai.metrics.activate` turns them into probabilities.

        Raises
        ------
        Cancelled
            When cancelled; its ``partial`` is ``(outputs, finished)``: the outputs so far (NaN where not run) and
            the sorted stack indices of the images whose chunks finished (their curves are complete).
        """
        from ..chunks import InProcessExecutor
        from .task import CurveChunkTask

        control = control or RunControl()
        progress = control.stage(stage)
        plan = self._plan()
        n_labels = len(self.model.labels)
        outputs = [
            {
                m: np.full(
                    (len(self.fractions), self.n_images if q.images is None else len(q.images), n_labels), np.nan
                )
                for m in MODES
            }
            for q in self._requests
        ]
        self.n_forwards, self.n_naive = 0, plan.n_naive
        task = CurveChunkTask(self.model, self.images, self, plan, self.chunk_size)
        done, finished, in_chunk = 0, [], 0

        def on_forwards(n, *_):  # in-process: after every model pass
            nonlocal in_chunk
            in_chunk += n
            progress(min(done + in_chunk, plan.n_forwards), plan.n_forwards)

        cancel_fn = control.cancel_fn
        try:
            for result in (executor or InProcessExecutor()).map_chunks(
                task, range(task.n_chunks), cancel=cancel_fn, on_maps=on_forwards
            ):
                self._scatter(outputs, result.images, result.scores, result.rows, result.shared, plan)
                self.n_forwards += result.n_forwards
                self.batch_size = min(self.batch_size, result.batch_size)  # smaller after an out-of-memory back-off
                done, in_chunk = done + result.n_forwards, 0
                finished.extend(int(g) for g in result.images)
                if executor is not None:
                    progress(min(done, plan.n_forwards), plan.n_forwards)
            if len(finished) < len(plan.active):  # an executor elsewhere stops quietly on a cancel
                raise Cancelled(f"cancelled after {len(finished)} of {len(plan.active)} images")
        except Cancelled as exc:
            exc.partial = (outputs, np.array(sorted(finished), np.int64))
            raise
        return outputs

    def detached(self) -> CurveEngine:
        """A copy without model, images and device caches: what a chunk task ships to a worker."""
        shell = copy.copy(self)
        shell.model = shell.images = None
        shell._device_positions = OrderedDict()
        return shell

    def scorer(self, model) -> MaskedScorer:
        """The batched, de-duplicating scorer of this engine's masks with ``model``."""
        return MaskedScorer(
            model,
            self.fill,
            masks=self._removed,
            fill_sigma=self.fill_sigma,
            impute_noise=self.impute_noise,
            seed=self.seed,
            batch_size=self.batch_size,
        )

    def score_chunk(self, scorer: MaskedScorer, x: torch.Tensor, chunk: np.ndarray, plan: _Plan, on_batch=None):
        """Score one chunk's images ``chunk`` (preprocessed ``x``): ``(scores, rows, shared)``.

        ``scores[rows[(j, kid)]]`` holds the outputs of image ``chunk[j]`` under key ``kid``; ``shared`` those of
        the constant fully filled image (None when no curve needs it or the fill is not constant).
        """
        ids = [int(g) for g in chunk]
        with torch.inference_mode():
            scorer.load(x, ids)
            if plan.uses_shared:
                scorer.score([ids[0]], [REMOVE_ALL], on_batch)  # once per process, before the chunk's pairs
            pairs = sorted((int(kid), j) for j, g in enumerate(ids) for kid in plan.needs[g])
            scores = scorer.score([ids[j] for _, j in pairs], [_scorer_key(k) for k, _ in pairs], on_batch)
            shared = scorer.score([ids[0]], [REMOVE_ALL])[0] if plan.uses_shared else None
            scorer.forget(ids)
        return np.asarray(scores), {(j, k): i for i, (k, j) in enumerate(pairs)}, shared

    @property
    def n_skipped(self) -> int:
        """Forwards saved by the last :meth:`run` (naive count minus forwards run)."""
        return self.n_naive - self.n_forwards

    def _removed(self, kid: int, device) -> torch.Tensor:
        """``(H, W)`` bool mask of the pixels a key removes (the scorer's mask function)."""
        h, w = self.shape
        ranking_id, suffix, t = self._keys[kid]
        pos = self._position_tensor(ranking_id, device)
        return (pos >= t if suffix else pos < t).view(h, w)

    def _position_tensor(self, ranking_id: int, device, keep: int = 64) -> torch.Tensor:
        """Rank positions on the device, cached (LRU of ``keep`` rankings: per-image rankings come and go)."""
        cached = self._device_positions.get(ranking_id)
        if cached is None or cached.device != torch.device(device):
            cached = torch.as_tensor(self._positions[ranking_id], device=device)
            self._device_positions[ranking_id] = cached
            while len(self._device_positions) > keep:
                self._device_positions.popitem(last=False)
        self._device_positions.move_to_end(ranking_id)
        return cached

    def _scatter(self, outputs, chunk, scores, rows, shared, plan):
        """Copy a chunk's scores (:meth:`score_chunk`) into every curve that uses them."""
        for j, g in enumerate(chunk):
            g = int(g)
            for r in plan.every + plan.by_image.get(g, []):
                req = self._requests[r]
                col = g if req.position is None else req.position[g]
                for m, mode in enumerate(MODES):
                    for f, kid in enumerate(req.keys[m]):
                        kid = int(kid)
                        if kid == _NONE:
                            continue
                        outputs[r][mode][f, col] = (
                            shared if (kid == _ALL and self.shared_fill) else scores[rows[(j, kid)]]
                        )
