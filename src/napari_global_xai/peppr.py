"""PEPPR (Progressive Erasing Plus Progressive Restoration) and per-image deletion/insertion on one curve engine.

PEPPR (Engelmann et al. 2021, arXiv 2112.09591) checks that a *global* explanation of an aligned image modality is
faithful: the pixels it ranks as most important are erased (or restored) progressively in **all** images at once,
and the model is scored on the whole stack after each step. Only the paper's abstract could be read, so the
procedure here is the reconstruction of methods.md §1.7; every choice that is ours is listed in the Notes of the
function that makes it.

One engine (:class:`CurveEngine`) serves every curve in the package::

    ranking ──► removed-pixel mask per fraction ──► filled images made on the fly on the device
            ──► batched inference (torch.inference_mode) ──► logits ──► metric (AUROC or probability)

* dataset level (PEPPR, :func:`erase_restore_curves`, :func:`run_peppr`): one ranking shared by every image, metric
  = per-label AUROC over the stack (or the mean predicted probability when no ground truth is given);
* image level (:func:`deletion_insertion`): every image has its own ranking and the metric is that image's
  probability of its target label (RISE / I-GOS deletion and insertion, methods.md §2.5 and §3).

The engine never materialises all filled images: images are loaded in chunks, and a batch of the model holds several
``(image, mask)`` pairs (across images *and* fractions). Forwards whose answer is already known are not run:
unmodified images are forwarded once and reused by every curve (erase at p = 0, restore at p = 1, every ranking), the
fully filled image is forwarded once for the whole stack when the fill is a constant (``zero`` / ``black``), and
masks that coincide (restoring the top k pixels of a ranking removes the same pixels as erasing the top H·W − k of
the reverse ranking) are forwarded once. ``n_forwards`` counts the image forwards run, ``n_skipped`` those saved;
their sum is the naive count (one forward per curve, fraction and image).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .batching import Cancelled, images_per_pass, iterate_batches
from .perturb.fills import FILLS, impute_linear, make_fill

__all__ = [
    "DEFAULT_FRACTIONS",
    "complete_fractions",
    "MODES",
    "Cancelled",
    "Curves",
    "PerImageCurves",
    "PepprResult",
    "CurveEngine",
    "pixel_ranking",
    "random_ranking",
    "fraction_counts",
    "removed_mask",
    "apply_fill",
    "blend",
    "activate",
    "auroc",
    "curve_area",
    "restoration_point",
    "summarise",
    "erase_restore_curves",
    "deletion_insertion",
    "run_peppr",
    "collect_maps",
]

#: Fractions of pixels erased / restored; dense near 0 where faithful maps act (methods.md §1.7).
DEFAULT_FRACTIONS = (0, .01, .02, .05, .1, .15, .2, .3, .4, .5, .6, .7, .8, .9, 1.0)
#: The two curves: erase the top-k pixels (the rest kept), or restore only the top-k pixels (the rest filled).
MODES = ("erase", "restore")
#: Fills whose fully filled image does not depend on the image (one forward serves the whole stack).
CONSTANT_FILLS = ("zero", "black")

_ORIG, _ALL, _NONE = 0, 1, -1  # key ids: nothing removed, everything removed, curve not requested
_TIE_STREAM, _RANDOM_STREAM, _NOISE_STREAM = 0x7A1E, 0x3A2D, 0x1D0E


# ----------------------------------------------------------------------------------------------------- rankings


def pixel_ranking(global_map: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pixel order of a map, most important first.

    Parameters
    ----------
    global_map : numpy.ndarray, (H, W)
        Importance per pixel (higher = more important). NaN counts as ``-inf`` (least important).
    seed : int
        Seed of the tie-breaking key.

    Returns
    -------
    numpy.ndarray of int64, (H * W,)
        Flat pixel indices; ``ranking[::-1]`` is the reverse (least important first) order.

    Notes
    -----
    methods.md §1.7 proposes breaking ties with a tiny seeded jitter (cf. ROAD's 1e-4 noise). A jitter can reorder
    two *distinct* values closer than the jitter and cannot break ties between ``-inf`` values, so ties are broken
    instead by a seeded random **secondary sort key** (a random permutation of the pixels): pixels with different
    values keep their order exactly, equal values (including NaN / ``-inf``) are ordered randomly but
    deterministically for a given ``seed``. The key is drawn from a stream (``default_rng([seed, 0x7A1E])``) distinct
    from :func:`random_ranking`'s, so a binary region map's within-region order is not the random baseline's order.
    """
    g = np.asarray(global_map, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"a global map must be 2-D (H, W), got shape {g.shape}")
    g = np.where(np.isnan(g), -np.inf, g).ravel()
    tie_key = np.random.default_rng([int(seed), _TIE_STREAM]).permutation(g.size)
    return np.lexsort((tie_key, -g)).astype(np.int64)


def random_ranking(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A random pixel order (the random-order baseline), ``(H * W,)`` int64, reproducible from ``seed``."""
    h, w = shape
    return np.random.default_rng([int(seed), _RANDOM_STREAM]).permutation(int(h) * int(w)).astype(np.int64)


def fraction_counts(fractions: Sequence[float], n_pixels: int) -> np.ndarray:
    """Pixels per fraction, ``k = round(p * n_pixels)`` with halves rounded up (not to even)."""
    f = _check_fractions(fractions)
    return np.floor(f * n_pixels + 0.5).astype(np.int64)


def _check_fractions(fractions) -> np.ndarray:
    f = np.asarray(fractions, dtype=np.float64).ravel()
    if f.size == 0 or np.any(~np.isfinite(f)) or f.min() < 0 or f.max() > 1 or np.any(np.diff(f) <= 0):
        raise ValueError(f"fractions must be strictly increasing values in [0, 1], got {list(fractions)}")
    return f


def complete_fractions(fractions: Sequence[float]) -> tuple[tuple[float, ...], list[float]]:
    """User-given fractions, checked, with the endpoints 0 and 1 added when missing.

    Parameters
    ----------
    fractions : sequence of float
        Strictly increasing values in ``[0, 1]`` (e.g. ``0 0.05 0.1 0.5 1`` for a quick check).

    Returns
    -------
    (tuple of float, list of float)
        The fractions to use and the endpoints that were added (empty when both were given).

    Raises
    ------
    UsageError
        Empty, not finite, outside ``[0, 1]``, or not strictly increasing (the message shows the values given).

    Notes
    -----
    Endpoints are added rather than required: the curves are read against them (erase at 0 and restore at 1 score
    the intact image; the restoration point and the areas assume both ends), so a grid without them would give
    scores that cannot be compared with a default run. Unsorted input is refused rather than sorted, since it is
    more likely a typo than a wish.
    """
    from .errors import UsageError

    values = [float(v) for v in fractions]
    f = np.asarray(values, dtype=np.float64)
    if f.size == 0 or not np.all(np.isfinite(f)) or f.min() < 0 or f.max() > 1:
        raise UsageError(f"fractions must be numbers in [0, 1], got {values}")
    if np.any(np.diff(f) <= 0):
        raise UsageError(f"fractions must be strictly increasing (no repeats), got {values}")
    added = [e for e in (0.0, 1.0) if e not in values]
    return tuple(sorted(set(values) | set(added))), added


def _inverse(ranking: np.ndarray, n_pixels: int) -> np.ndarray:
    """Rank position of every pixel (the inverse permutation); validates that ``ranking`` is a permutation."""
    r = np.asarray(ranking).ravel()
    if r.size != n_pixels or not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"a ranking must be {n_pixels} integer pixel indices, got {r.size} of dtype {r.dtype}")
    if r.min() < 0 or r.max() >= n_pixels or np.bincount(r, minlength=n_pixels).max() != 1:
        raise ValueError("a ranking must be a permutation of the pixel indices 0 .. H*W-1")
    pos = np.empty(n_pixels, np.int32 if n_pixels < 2 ** 31 else np.int64)
    pos[r] = np.arange(n_pixels)
    return pos


def removed_mask(ranking: np.ndarray, shape: tuple[int, int], mode: str, fraction: float) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels replaced by the fill at one fraction (True = filled).

    ``mode="erase"`` removes the top ``k`` pixels of ``ranking``; ``mode="restore"`` keeps only them.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    h, w = shape
    k = int(fraction_counts([fraction], h * w)[0])
    pos = _inverse(ranking, h * w)
    removed = pos < k if mode == "erase" else pos >= k
    return removed.reshape(h, w)


# --------------------------------------------------------------------------------------------------------- fills


def apply_fill(x: torch.Tensor, removed: torch.Tensor, fill: str = "zero", *, fill_image: torch.Tensor | None = None,
               mean=None, std=None, sigma: float | None = None, noise: float = 0.01,
               noise_seeds: Sequence[int] | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """Replace the removed pixels of normalised images by the fill: ``x * keep + fill * (1 - keep)``.

    Parameters
    ----------
    x : torch.Tensor, (n, c, H, W)
        Normalised images (any leading dimensions broadcasting with ``removed`` for the mask-independent fills).
    removed : torch.Tensor of bool, (n, 1, H, W) or (H, W)
        True where a pixel is replaced.
    fill : {"zero", "black", "blur", "impute"}
        See :mod:`napari_global_xai.fills`.
    fill_image : torch.Tensor, optional
        Precomputed :func:`~napari_global_xai.fills.make_fill` result (broadcastable to ``x``) for the
        mask-independent fills, so a chunk's blur is computed once.
    mean, std : sequence of float, optional
        The model's normalisation (``"black"`` fill).
    sigma : float, optional
        Blur width (``"blur"`` fill).
    noise : float
        ``"impute"`` only: standard deviation of the noise added to imputed pixels (ROAD default 0.01).
    noise_seeds : sequence of int, optional
        ``"impute"`` only: one seed per image, so the noise of an ``(image, mask)`` pair does not depend on the batch
        it was computed in.
    out : torch.Tensor, optional
        Preallocated result (mask-independent fills only), e.g. a reused batch buffer.

    Returns
    -------
    torch.Tensor, (n, c, H, W)

    Notes
    -----
    The blend is computed literally as ``x * keep + (1 - keep) * fill`` with a 0/1 float mask (exact: each pixel is
    either ``x`` or the fill), and as ``x * keep`` alone for ``"zero"``; on CPU this was 3-4x faster than a boolean
    ``torch.where`` on channels-last batches. For ``"impute"`` the noise-free imputation comes from
    :func:`~napari_global_xai.fills.impute_linear` (``noise=0``) and the N(0, noise²) noise of ROAD is added here
    from per-image generators (methods.md §3), which keeps results independent of batching.
    """
    if removed.ndim == 2:
        removed = removed.view(1, 1, *removed.shape)
    removed = removed.to(x.device)
    if fill == "impute":
        y = impute_linear(x, removed, noise=0.0)
        if noise:
            y = y + removed * (noise * _seeded_noise(x.shape, noise_seeds)).to(y.device, y.dtype)
        return y
    keep = torch.logical_not(removed).to(x.dtype)
    if fill != "zero" and fill_image is None:
        fill_image = make_fill(fill, x, mean=mean, std=std, sigma=sigma)
    return blend(x, keep, out=out, fill_image=None if fill == "zero" else fill_image)


def blend(x: torch.Tensor, keep: torch.Tensor, *, out: torch.Tensor | None = None,
          fill_term: torch.Tensor | None = None, fill_image: torch.Tensor | None = None) -> torch.Tensor:
    """``x * keep`` plus the fill where ``keep`` is 0: ``+ fill_term`` (precomputed ``(1 - keep) * fill``) or
    ``+ (1 - keep) * fill_image``; nothing more for the zero fill. All arguments broadcast; exact for a 0/1 ``keep``.
    """
    y = torch.mul(x, keep, out=out) if out is not None else torch.mul(x, keep)
    if fill_term is not None:
        y.add_(fill_term)
    if fill_image is not None:
        y.addcmul_(1 - keep, fill_image)
    return y


def _seeded_noise(shape, seeds) -> torch.Tensor:
    n = shape[0]
    seeds = list(seeds) if seeds is not None else list(range(n))
    out = torch.empty(shape, dtype=torch.float32)
    for i in range(n):
        out[i] = torch.randn(shape[1:], generator=torch.Generator().manual_seed(int(seeds[i]) % (2 ** 63)))
    return out


def _rows(t: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    """``t[idx]``: a view when ``idx`` is a consecutive ascending run (the common case), else a gather."""
    if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
        return t[int(idx[0]):int(idx[-1]) + 1]
    return t[torch.as_tensor(idx, device=t.device)]


def _grid(kids: np.ndarray, local: np.ndarray) -> tuple[int, int, int] | None:
    """``(n_keys, first image, n_images)`` when a batch is K keys × one run of consecutive images, else None."""
    change = np.nonzero(np.diff(kids))[0]
    n_img = int(change[0]) + 1 if len(change) else len(kids)
    if len(kids) % n_img:
        return None
    run = local[:n_img]
    if run[-1] - run[0] != n_img - 1 or np.any(np.diff(run) != 1):
        return None
    grid_kids, grid_local = kids.reshape(-1, n_img), local.reshape(-1, n_img)
    if np.any(grid_kids != grid_kids[:, :1]) or np.any(grid_local != run) or \
            np.any(np.diff(grid_kids[:, 0]) == 0):
        return None
    return len(kids) // n_img, int(run[0]), n_img


def _cat(tensors) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _cancel_callable(cancel) -> Callable[[], bool] | None:
    """Accept a callable or a ``threading.Event``."""
    if cancel is None:
        return None
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    return cancel


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


def _harmonised(images):
    """A lazy stack with a left-eye view (``to_left_eye``) is used in that frame; arrays are taken as given."""
    to_left = getattr(images, "to_left_eye", None)
    return to_left() if callable(to_left) and not isinstance(images, np.ndarray) else images


def _image_hw(images) -> tuple[int, int]:
    if hasattr(images, "shape") and len(images.shape) >= 3:
        return int(images.shape[1]), int(images.shape[2])
    first = _take(images, np.array([0]))
    return int(first.shape[1]), int(first.shape[2])


# ------------------------------------------------------------------------------------------------------ engine


@dataclass
class _Request:
    keys: np.ndarray                 # (2, F) key ids: erase row, restore row
    images: np.ndarray | None        # global image indices, None = every image
    position: dict | None            # global image index -> column in the output (explicit image lists)


@dataclass
class _Plan:
    active: np.ndarray               # images any request uses, ascending
    needs: dict                      # image -> key ids to forward for it
    every: list                      # requests on every image
    by_image: dict                   # image -> requests with an explicit image list containing it
    n_forwards: int                  # planned image forwards (incl. the shared fully filled image)
    n_naive: int                     # one forward per (request, mode, fraction, image)
    uses_shared: bool                # whether the shared constant fully filled image is needed


class CurveEngine:
    """Scores of ``(image, ranking, mode, fraction)`` for many curves in one batched, deduplicated pass.

    Parameters
    ----------
    model : LoadedModel
        Anything with ``preprocess``, ``scores(x, probability=False)``, ``device``, ``labels`` and
        ``card.activation``.
    images : array-like, (n, H, W, C)
        Raw harmonised (left-eye frame) pixels, or an indexable lazy stack.
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

    def __init__(self, model, images, fractions=DEFAULT_FRACTIONS, fill: str = "zero", *,
                 batch_size: int | None = None, chunk_size: int | None = None, fill_sigma: float | None = None,
                 impute_noise: float = 0.01, seed: int = 0):
        if fill not in FILLS:
            raise ValueError(f"unknown fill {fill!r}; choose from {FILLS}")
        self.model = model
        self.images = _harmonised(images)
        self.n_images = _n_images(self.images)
        self.shape = _image_hw(self.images)
        self.n_pixels = self.shape[0] * self.shape[1]
        self.fractions = _check_fractions(fractions)
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
        self._keeps: OrderedDict[int, tuple] = OrderedDict()
        self._fill_value: torch.Tensor | None = None
        self._input_buffer: torch.Tensor | None = None

    # -- building the job

    def add_ranking(self, ranking: np.ndarray) -> int:
        """Register a ranking (flat pixel indices, most important first); returns its id.

        A ranking equal to one already registered gets that one's id, so two maps with the same order (e.g. an
        overall map equal to a label map) share their forwards.
        """
        pos = _inverse(ranking, self.n_pixels)
        digest = hashlib.blake2b(pos.tobytes(), digest_size=16).digest()
        if digest not in self._ranking_ids:
            self._ranking_ids[digest] = len(self._positions)
            self._positions.append(pos)
        return self._ranking_ids[digest]

    def add_request(self, ranking_id: int, reverse: bool = False, images: Sequence[int] | None = None,
                    modes: Sequence[str] = MODES) -> int:
        """Ask for the curves of one ranking (or its reverse) on ``images`` (default all); returns the request id.

        ``modes`` picks the curves (default erase and restore); a curve not asked for costs nothing and comes back
        as NaN.
        """
        if not 0 <= ranking_id < len(self._positions):
            raise ValueError(f"unknown ranking id {ranking_id}")
        if not modes or set(modes) - set(MODES):
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {modes}")
        keys = np.array([[self._key(ranking_id, reverse, mode, int(k)) if mode in modes else _NONE
                          for k in self.counts] for mode in MODES])
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

    def run(self, progress: Callable[[int, int], None] | None = None, cancel=None) -> list[dict[str, np.ndarray]]:
        """Run every request.

        Parameters
        ----------
        progress : callable(done, total), optional
            Called after each model pass, in image-forward units.
        cancel : callable() -> bool or threading.Event, optional
            Checked before each model pass; :class:`~napari_global_xai.batching.Cancelled` is raised when set.

        Returns
        -------
        list of dict
            Per request, ``{"erase": (F, k, L), "restore": (F, k, L)}`` float64 raw model outputs (logits) for its
            ``k`` images (in the order given, or all images) and every model output; :func:`activate` turns them into
            probabilities.
        """
        cancel = _cancel_callable(cancel)
        plan = self._plan()
        n_labels = len(self.model.labels)
        outputs = [{m: np.full((len(self.fractions), self.n_images if q.images is None else len(q.images),
                                n_labels), np.nan) for m in MODES} for q in self._requests]
        self.n_forwards, self.n_naive = 0, plan.n_naive
        shared, done = None, 0
        with torch.inference_mode():
            for start in range(0, len(plan.active), self.chunk_size):
                chunk = plan.active[start:start + self.chunk_size]
                x = self.model.preprocess(_take(self.images, chunk))
                if plan.uses_shared and shared is None:
                    shared = self._forward(x, None, np.array([_ALL]), np.array([0]), chunk)[0]
                    done += 1
                    self._report(progress, done, plan.n_forwards)
                scores, rows = self._run_chunk(x, chunk, plan.needs, cancel, progress, done, plan.n_forwards)
                done += len(scores)
                self._scatter(outputs, chunk, scores, rows, shared, plan)
        self.n_forwards = done
        return outputs

    @property
    def n_skipped(self) -> int:
        """Forwards saved by the last :meth:`run` (naive count minus forwards run)."""
        return self.n_naive - self.n_forwards

    def _report(self, progress, done, total):
        if progress is not None:
            progress(done, total)

    def _run_chunk(self, x, chunk, needs, cancel, progress, done, total):
        """Forward every needed ``(image, key)`` of a chunk, key-major so a batch shares few masks."""
        pairs = sorted((int(kid), j) for j, g in enumerate(chunk) for kid in needs[int(g)])
        kids = np.array([p[0] for p in pairs], np.int64)
        local = np.array([p[1] for p in pairs], np.int64)
        rows = {(j, k): i for i, (k, j) in enumerate(pairs)}
        fill_image = make_fill("blur", x, sigma=self.fill_sigma) if self.fill == "blur" else None

        def run(sl):
            return self._forward(x, fill_image, kids[sl], local[sl], chunk)

        scores = np.empty((len(pairs), len(self.model.labels)), np.float64)
        longest = 0
        for sl, s in iterate_batches(len(pairs), self.batch_size, run, cancel=cancel):
            scores[sl] = s
            done += sl.stop - sl.start
            if sl.stop < len(pairs):
                longest = max(longest, sl.stop - sl.start)
            self._report(progress, done, total)
        if longest and longest < self.batch_size:  # an out-of-memory back-off happened: keep the smaller batch
            self.batch_size = longest
        return scores, rows

    def _constant_fill(self, x) -> torch.Tensor:
        """The constant fill as a ``(1, c, 1, 1)`` tensor, made once."""
        if self._fill_value is None or self._fill_value.device != x.device:
            card = getattr(self.model, "card", None)
            self._fill_value = make_fill(self.fill, x[:1, :, :1, :1], mean=getattr(card, "mean", None),
                                         std=getattr(card, "std", None))
        return self._fill_value

    def _forward(self, x, fill_image, kids, local, chunk) -> np.ndarray:
        """Fill a batch of ``(chunk image, key)`` pairs and return the model's raw outputs ``(B, n_outputs)``.

        A batch that is a grid (K keys × the same run of J consecutive images, the usual case of the key-major
        order) is filled by one broadcast multiply into a reused buffer, without gathering the images. Masks are
        cached per key as channels-last float ``keep`` tensors (and, for a non-zero constant fill, the fill term
        ``(1 - keep) * fill``): a same-layout multiply was ~2x faster on CPU than broadcasting a one-channel mask.
        """
        if self.fill == "impute":
            seeds = [int(np.random.SeedSequence([self.seed, _NOISE_STREAM, int(g), int(k)]).generate_state(1)[0])
                     for g, k in zip(chunk[local], kids)]
            masks = torch.stack([self._removed(int(k), x.device) for k in kids]).unsqueeze(1)
            filled = apply_fill(_rows(x, local), masks, "impute", noise=self.impute_noise, noise_seeds=seeds)
        else:
            grid = _grid(kids, local)
            if grid is not None:
                n_keys, start, n_img = grid
                unique_kids = kids[::n_img]
                xs = x[start:start + n_img].unsqueeze(0)                       # (1, J, c, H, W)
                fill_rows = None if fill_image is None else fill_image[start:start + n_img].unsqueeze(0)
            else:
                n_keys, unique_kids = len(kids), kids
                xs, fill_rows = _rows(x, local), None if fill_image is None else _rows(fill_image, local)
            keeps, terms = zip(*(self._keep(int(k), x) for k in unique_kids))
            keep, term = _cat(keeps), None if terms[0] is None else _cat(terms)
            filled = self._buffer(len(kids), x)
            view = filled.view(n_keys, -1, *filled.shape[1:]) if grid is not None else filled
            if grid is not None:
                keep, term = keep.unsqueeze(1), None if term is None else term.unsqueeze(1)
            blend(xs, keep, out=view, fill_term=term, fill_image=fill_rows)
        out = self.model.scores(filled.contiguous(memory_format=torch.channels_last), probability=False)
        return out.float().cpu().numpy().astype(np.float64)

    def _buffer(self, n: int, x: torch.Tensor) -> torch.Tensor:
        """A reused channels-last ``(n, c, H, W)`` input buffer (no large allocation per batch)."""
        buf = self._input_buffer
        if buf is None or buf.shape[0] < n or buf.shape[1:] != x.shape[1:] or buf.device != x.device \
                or buf.dtype != x.dtype:
            buf = torch.empty((max(n, self.batch_size), *x.shape[1:]), dtype=x.dtype, device=x.device)
            buf = buf.contiguous(memory_format=torch.channels_last)
            self._input_buffer = buf
        return buf[:n]

    def _keep(self, kid: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Cached ``(1, c, H, W)`` channels-last float keep mask of a key, and its constant fill term (or None)."""
        cached = self._keeps.get(kid)
        if cached is not None and cached[0].device == x.device and cached[0].dtype == x.dtype:
            self._keeps.move_to_end(kid)
            return cached
        h, w = self.shape
        keep = torch.logical_not(self._removed(kid, x.device)).to(x.dtype).view(1, 1, h, w)
        keep = keep.expand(1, x.shape[1], h, w).contiguous(memory_format=torch.channels_last)
        term = None
        if self.fill == "black":
            term = ((1 - keep) * self._constant_fill(x)).contiguous(memory_format=torch.channels_last)
        self._keeps[kid] = (keep, term)
        while len(self._keeps) > 16:
            self._keeps.popitem(last=False)
        return keep, term

    def _removed(self, kid: int, device) -> torch.Tensor:
        """``(H, W)`` bool mask of the pixels a key removes."""
        h, w = self.shape
        if kid in (_ORIG, _ALL):
            return torch.full((h, w), kid == _ALL, dtype=torch.bool, device=device)
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
        """Copy a chunk's scores into every curve that uses them."""
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
                        outputs[r][mode][f, col] = shared if (kid == _ALL and self.shared_fill) else \
                            scores[rows[(j, kid)]]


# ---------------------------------------------------------------------------------------------------- metrics


def auroc(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-label ROC AUC of many score sets at once (Mann–Whitney U with average ranks for ties).

    Parameters
    ----------
    truth : (n, L) array of 0/1
    scores : (..., n, L) array
        Higher = more likely positive.

    Returns
    -------
    numpy.ndarray, (..., L)
        NaN for a label whose truth has a single class.

    Notes
    -----
    Equals sklearn's ``roc_auc_score`` per column, ties counted as one half (checked in the tests), but ranks every
    fraction and label in one vectorised call instead of one sklearn call each: with sklearn's input validation the
    metric took ~10 % of a PEPPR run on a small CPU model.
    """
    from scipy.stats import rankdata

    truth = np.asarray(truth).astype(bool)
    n_pos = truth.sum(axis=0).astype(np.float64)
    n_neg = truth.shape[0] - n_pos
    ranks = rankdata(np.asarray(scores, np.float64), axis=-2)
    rank_sum = np.where(truth, ranks, 0.0).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), out, np.nan)


def _activation(model) -> str:
    return getattr(getattr(model, "card", None), "activation", "sigmoid")


def activate(logits: np.ndarray, activation: str = "sigmoid") -> np.ndarray:
    """Probabilities from raw outputs ``(..., n_outputs)`` in float64 (sigmoid per output, or softmax)."""
    z = np.asarray(logits, np.float64)
    if activation == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _ranking_scores(logits: np.ndarray, activation: str) -> np.ndarray:
    """A score with the same order as each output's probability that does not saturate (AUROC input).

    Sigmoid: the logit itself; softmax: log-softmax. Float32 probabilities round to exactly 1.0 above a logit of
    about 17, which would turn confident predictions into ties.
    """
    z = np.asarray(logits, np.float64)
    if activation == "softmax":
        m = z.max(axis=-1, keepdims=True)
        return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))
    return z


def _stack_metric(logits: np.ndarray, idx, truth: np.ndarray | None, activation: str) -> np.ndarray:
    """(F, n, L_all) raw outputs -> (F, L): per-label AUROC over the images, or the mean probability."""
    if truth is None:
        return activate(logits, activation)[..., idx].mean(axis=1)
    return auroc(truth, _ranking_scores(logits, activation)[..., idx])


def curve_area(fractions: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Normalised trapezoid area under a curve (or the columns of ``(F, ...)`` curves).

    Notes
    -----
    ``∫ y dp / (p_max − p_min)`` by the trapezoid rule on the given fractions (RISE's ``auc`` on an even grid;
    methods.md §1.7 summary scores). With fractions spanning [0, 1] this is the plain area, in metric units.
    """
    f = _check_fractions(fractions)
    y = np.asarray(values, np.float64)
    if len(f) < 2:
        return y[0] if y.ndim else y
    return np.trapezoid(y, f, axis=0) / (f[-1] - f[0])


def restoration_point(fractions: Sequence[float], restore: np.ndarray, full: float | None = None,
                      tolerance: float = 0.01, interpolate: bool = True) -> float:
    """``p*``: the smallest restored fraction whose metric reaches ``full − tolerance``.

    Parameters
    ----------
    fractions : sequence of float
    restore : (F,) restore curve
    full : float, optional
        The full-image metric; default the curve's value at the largest fraction (p = 1 restores everything).
    tolerance : float
        δ of methods.md §1.7 (0.01, a proposal).
    interpolate : bool
        True: linear interpolation between the last fraction below the target and the first reaching it;
        False: the first grid fraction reaching it.

    Returns
    -------
    float
        NaN when the curve never reaches the target (or is NaN).
    """
    f = _check_fractions(fractions)
    y = np.asarray(restore, np.float64)
    full = y[-1] if full is None else full
    if not np.isfinite(full):
        return float("nan")
    target = full - tolerance
    hit = np.nonzero(y >= target)[0]
    if hit.size == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0 or not interpolate:
        return float(f[i])
    y0, y1 = y[i - 1], y[i]
    return float(f[i - 1] + (target - y0) / (y1 - y0) * (f[i] - f[i - 1]))


# ---------------------------------------------------------------------------------------------------- results


@dataclass
class Curves:
    """Erase and restore curves of one ranking on a stack.

    Attributes
    ----------
    fractions : numpy.ndarray, (F,)
    erase, restore : numpy.ndarray, (F, L)
        Metric per fraction and label.
    metric : {"auroc", "mean_probability"}
    labels : list of str
    n_forwards, n_skipped : int
        Image forwards run / saved by the engine run that produced these curves (shared by all curves of a
        :func:`run_peppr` call).
    fill : str
    map_name, order : str
        Which map and which order (``"true"``, ``"reverse"``, ``"random"``).
    seed : int or None
        Random-order seed.
    erase_scores, restore_scores : numpy.ndarray, (F, n, L), optional
        The probabilities behind the curves.
    """

    fractions: np.ndarray
    erase: np.ndarray
    restore: np.ndarray
    metric: str
    labels: list[str]
    n_forwards: int
    n_skipped: int
    fill: str
    map_name: str = ""
    order: str = "true"
    seed: int | None = None
    erase_scores: np.ndarray | None = field(default=None, repr=False)
    restore_scores: np.ndarray | None = field(default=None, repr=False)

    @property
    def erase_macro(self) -> np.ndarray:
        """(F,) mean over labels (NaN labels skipped)."""
        return _nanmean_rows(self.erase)

    @property
    def restore_macro(self) -> np.ndarray:
        return _nanmean_rows(self.restore)

    def curve(self, mode: str, label: str) -> np.ndarray:
        """(F,) curve of ``mode`` for a label name or ``"macro"``."""
        values = getattr(self, mode)
        if label == "macro":
            return _nanmean_rows(values)
        return values[:, self.labels.index(label)]


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float64)
    ok = np.isfinite(values)
    count = ok.sum(axis=1)
    total = np.where(ok, values, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.full(len(values), np.nan), where=count > 0)


@dataclass
class PerImageCurves:
    """Per-image deletion (erase) and insertion (restore) curves of each image's own map.

    Attributes
    ----------
    fractions : numpy.ndarray, (F,)
    deletion, insertion : numpy.ndarray, (n, F)
        Probability of each image's target label after erasing / restoring its top pixels.
    targets : numpy.ndarray of int, (n,)
        Model output index per image.
    target_names : list of str
    fill : str
    n_forwards, n_skipped : int
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    targets: np.ndarray
    target_names: list[str]
    fill: str
    n_forwards: int
    n_skipped: int

    def areas(self) -> dict[str, np.ndarray]:
        """Per-image normalised trapezoid areas: ``deletion`` (lower = better), ``insertion`` (higher)."""
        return {"deletion": curve_area(self.fractions, self.deletion.T),
                "insertion": curve_area(self.fractions, self.insertion.T)}

    def summary(self) -> dict[str, float]:
        """Mean areas over images and their difference (insertion − deletion)."""
        a = self.areas()
        d, i = float(np.mean(a["deletion"])), float(np.mean(a["insertion"]))
        return {"deletion": d, "insertion": i, "gap": i - d}


@dataclass
class PepprResult:
    """Everything one PEPPR run produced.

    Attributes
    ----------
    fractions : numpy.ndarray, (F,)
    labels : list of str
        Evaluated labels (curve columns).
    metric : {"auroc", "mean_probability"}
    fill : str
    maps : list of str
        Evaluated maps, in order.
    headline : dict[str, list[str]]
        Per map, the labels (or ``"macro"``) it is judged on (``maps_for``).
    curves, reverse : dict[str, Curves]
        True-order and reverse-order curves per map.
    random : list of Curves
        Random-order curves, one per seed (shared by every map: they do not depend on it).
    summary : dict
        Per map, :func:`summarise` against the random curves (per label and ``"macro"``), with the reverse order's
        areas added.
    table : list of dict
        One row per (map, headline label): the numbers a report shows.
    specificity : dict
        ``maps`` (label maps), ``labels`` and ``erase`` / ``restore`` area matrices (map a × label b) plus
        ``erase_gain`` = random A_erase(b) − A_erase(a, b) and ``restore_gain`` = A_restore(a, b) − random
        A_restore(b).
    split_note : dict
        Which split built the maps and which is evaluated (the circularity guard), as given.
    n_images, n_forwards, n_skipped : int
    seconds : float
    eval_indices : numpy.ndarray or None
    """

    fractions: np.ndarray
    labels: list[str]
    metric: str
    fill: str
    maps: list[str]
    headline: dict[str, list[str]]
    curves: dict[str, Curves]
    reverse: dict[str, Curves]
    random: list[Curves]
    summary: dict
    table: list[dict]
    specificity: dict
    split_note: dict
    n_images: int
    n_forwards: int
    n_skipped: int
    seconds: float = 0.0
    eval_indices: np.ndarray | None = None

    def random_band(self, mode: str, label: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sample standard deviation (over seeds) of the random-order curve, ``(F,)`` each."""
        stack = np.array([c.curve(mode, label) for c in self.random])
        if len(stack) == 0:
            nan = np.full(len(self.fractions), np.nan)
            return nan, nan
        sd = stack.std(axis=0, ddof=1) if len(stack) > 1 else np.zeros(stack.shape[1])
        return stack.mean(axis=0), sd


# --------------------------------------------------------------------------------------------------- summary


def _area_block(curves: Curves, label: str) -> dict[str, float]:
    e = float(curve_area(curves.fractions, curves.curve("erase", label)))
    r = float(curve_area(curves.fractions, curves.curve("restore", label)))
    return {"A_erase": e, "A_restore": r, "gap": r - e}


def summarise(curves: Curves, reference: Curves | Sequence[Curves] | None = None,
              tolerance: float = 0.01) -> dict[str, dict[str, float]]:
    """PEPPR summary scores per label and ``"macro"``.

    Parameters
    ----------
    curves : Curves
    reference : Curves or sequence of Curves, optional
        The baseline (random-order curves, one per seed); their areas are averaged over seeds.
    tolerance : float
        δ for ``p_star``.

    Returns
    -------
    dict
        ``{label: {...}}`` with ``A_erase`` (lower = more faithful), ``A_restore`` (higher), ``gap`` =
        A_restore − A_erase, ``full`` (metric of the unmodified images = erase at p = 0), ``filled`` (erase at
        p = 1), ``p_star`` (interpolated), ``p_star_grid``; the reference's ``random_A_erase``,
        ``random_A_erase_sd``, ``random_A_restore``, ``random_A_restore_sd``, ``random_gap``, ``random_gap_sd`` and the
        differences ``d_erase`` = A_erase − random (negative = better), ``d_restore`` = A_restore − random
        (positive = better), ``d_gap`` (NaN without a reference: every block has the same keys).

    Notes
    -----
    Summary definitions are proposals of methods.md §1.7 [I]: areas are normalised trapezoid areas
    (:func:`curve_area`); ``p_star`` = smallest restored fraction with metric ≥ full − δ, linearly interpolated
    between the grid fractions around the first crossing (``p_star_grid`` is the first grid fraction reaching it).
    The full-image metric is the erase curve at p = 0 (the unmodified images) when the grid starts at 0, else the
    restore curve at its largest fraction. The reference's standard deviation is the sample sd over seeds (0 for
    one seed).
    """
    refs = [] if reference is None else ([reference] if isinstance(reference, Curves) else list(reference))
    out = {}
    for label in list(curves.labels) + ["macro"]:
        block = _area_block(curves, label)
        restore = curves.curve("restore", label)
        full = curves.curve("erase", label)[0] if curves.fractions[0] == 0 else restore[-1]
        block.update(full=float(full), filled=float(curves.curve("erase", label)[-1]),
                     p_star=restoration_point(curves.fractions, restore, full, tolerance, True),
                     p_star_grid=restoration_point(curves.fractions, restore, full, tolerance, False))
        ref_blocks = [_area_block(ref, label) for ref in refs]
        for key in ("A_erase", "A_restore", "gap"):
            vals = np.array([b[key] for b in ref_blocks])
            block[f"random_{key}"] = float(vals.mean()) if len(vals) else float("nan")
            block[f"random_{key}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else (0.0 if len(vals) else
                                                                                      float("nan"))
        block["d_erase"] = block["A_erase"] - block["random_A_erase"]
        block["d_restore"] = block["A_restore"] - block["random_A_restore"]
        block["d_gap"] = block["gap"] - block["random_gap"]
        out[label] = block
    return out


# ------------------------------------------------------------------------------------------------- front ends


def _label_selection(model, label_indices, truth, n_images):
    names = list(model.labels)
    idx = list(range(len(names))) if label_indices is None else [int(i) for i in label_indices]
    if truth is not None:
        truth = np.asarray(truth)
        if truth.ndim == 1:
            truth = truth[:, None]
        if truth.shape != (n_images, len(idx)):
            raise ValueError(f"truth must be (n_images, n_labels) = {(n_images, len(idx))}, got {truth.shape}")
    return idx, [names[i] for i in idx], truth


def _curves_from(raw: dict[str, np.ndarray], idx, names, truth, engine, **meta) -> Curves:
    act = _activation(engine.model)
    curves = {m: _stack_metric(raw[m], idx, truth, act) for m in MODES}
    probs = {m: activate(raw[m], act)[..., idx] for m in MODES}
    return Curves(fractions=engine.fractions.copy(), erase=curves["erase"], restore=curves["restore"],
                  metric="auroc" if truth is not None else "mean_probability", labels=list(names),
                  n_forwards=engine.n_forwards, n_skipped=engine.n_skipped, fill=engine.fill,
                  erase_scores=probs["erase"], restore_scores=probs["restore"], **meta)


def erase_restore_curves(model, images, ranking: np.ndarray, fractions=DEFAULT_FRACTIONS, fill: str = "zero",
                         truth: np.ndarray | None = None, label_indices: Sequence[int] | None = None,
                         progress=None, cancel=None, *, batch_size: int | None = None,
                         chunk_size: int | None = None, fill_sigma: float | None = None) -> Curves:
    """Dataset-level erase and restore curves of one pixel ranking shared by every image (PEPPR's core).

    Parameters
    ----------
    model : LoadedModel
    images : array-like, (n, H, W, C) uint8
        Raw harmonised (left-eye frame) pixels, or an indexable lazy stack returning such arrays for index arrays.
    ranking : numpy.ndarray, (H * W,)
        Pixel order, most important first (:func:`pixel_ranking`, :func:`random_ranking`).
    fractions : sequence of float
        Strictly increasing in [0, 1].
    fill : {"zero", "black", "blur", "impute"}
    truth : numpy.ndarray, (n, L), optional
        0/1 ground truth of the evaluated labels; metric = per-label AUROC. Without it the metric is the mean
        predicted probability of each label.
    label_indices : sequence of int, optional
        Model outputs evaluated (columns of ``truth``); default all.
    progress : callable(done, total), optional
        In image forwards.
    cancel : callable() -> bool or threading.Event, optional
    batch_size, chunk_size : int, optional
        See :class:`CurveEngine`.
    fill_sigma : float, optional
        Blur width for ``fill="blur"``.

    Returns
    -------
    Curves

    Notes
    -----
    methods.md §1.7: with ``k = round(p·H·W)``, erasing replaces the ``k`` top-ranked pixels of every image by the
    fill, restoring keeps only them; both use the same ranking for every image (aligned modality). The fill is
    applied in normalised input space (``zero`` = training mean, the default erase value of §1.7).
    """
    engine = CurveEngine(model, images, fractions, fill, batch_size=batch_size, chunk_size=chunk_size,
                         fill_sigma=fill_sigma)
    idx, names, truth = _label_selection(model, label_indices, truth, engine.n_images)
    engine.add_request(engine.add_ranking(ranking))
    return _curves_from(engine.run(progress, cancel)[0], idx, names, truth, engine)


def deletion_insertion(model, images, maps: np.ndarray, targets: Sequence, fractions=DEFAULT_FRACTIONS,
                       fill: str = "zero", *, seed: int = 0, progress=None, cancel=None,
                       batch_size: int | None = None, chunk_size: int | None = None,
                       fill_sigma: float | None = None) -> PerImageCurves:
    """Per-image deletion / insertion curves (RISE / I-GOS style) on the same engine as PEPPR.

    Parameters
    ----------
    model : LoadedModel
    images : array-like, (n, H, W, C)
        Raw harmonised pixels.
    maps : numpy.ndarray, (n, H, W)
        Each image's own saliency map.
    targets : sequence of int or str, (n,)
        Each image's target label (model output index or name).
    fractions : sequence of float
    fill : {"zero", "black", "blur", "impute"}
    seed : int
        Tie-breaking seed of :func:`pixel_ranking`.

    Returns
    -------
    PerImageCurves

    Notes
    -----
    Differences to the published implementations (methods.md §2.5, §3): pixels are ranked at image resolution
    (RISE; I-GOS ranks mask cells), the step grid is ``fractions`` instead of a fixed number of pixels per step, the
    score is the card's activation (sigmoid for multi-label models, not softmax), and the same fill is used for
    deletion and insertion (RISE inserts into a blurred image: pass ``fill="blur"`` for that). Areas use the
    normalised trapezoid rule (:func:`curve_area`), as RISE's ``auc``.
    """
    maps = np.asarray(maps)
    engine = CurveEngine(model, images, fractions, fill, batch_size=batch_size, chunk_size=chunk_size,
                         fill_sigma=fill_sigma)
    if maps.shape != (engine.n_images, *engine.shape):
        raise ValueError(f"maps must be (n, H, W) = {(engine.n_images, *engine.shape)}, got {maps.shape}")
    names = list(model.labels)
    tgt = np.array([names.index(t) if isinstance(t, str) else int(t) for t in targets], np.int64)
    if len(tgt) != engine.n_images:
        raise ValueError(f"need one target per image ({engine.n_images}), got {len(tgt)}")
    for i in range(engine.n_images):
        engine.add_request(engine.add_ranking(pixel_ranking(maps[i], seed)), images=[i])
    outputs = engine.run(progress, cancel)
    act = _activation(model)
    curves = {m: np.array([activate(out[m][:, 0], act)[:, t] for out, t in zip(outputs, tgt)]) for m in MODES}
    return PerImageCurves(fractions=engine.fractions.copy(), deletion=curves["erase"], insertion=curves["restore"],
                          targets=tgt, target_names=[names[t] for t in tgt], fill=fill,
                          n_forwards=engine.n_forwards, n_skipped=engine.n_skipped)


def collect_maps(global_maps, shape) -> dict[str, np.ndarray]:
    """Name -> (H, W) map from a GlobalMaps (its labels, then "overall") or a dict; all-NaN maps are dropped."""
    if isinstance(global_maps, dict):
        items = list(global_maps.items())
    else:
        items = [(name, global_maps.mean[i]) for i, name in enumerate(global_maps.labels)]
        items.append(("overall", global_maps.overall))
    maps = {}
    for name, m in items:
        m = np.asarray(m, np.float64)
        if m.shape != tuple(shape):
            raise ValueError(f"map {name!r} has shape {m.shape}, the images are {tuple(shape)}")
        if np.isfinite(m).any():
            maps[str(name)] = m
    if not maps:
        raise ValueError("no usable global map (every map is empty or NaN)")
    return maps


def _headlines(map_names, label_names, maps_for) -> dict[str, list[str]]:
    if maps_for == "all":
        return {m: list(label_names) + ["macro"] for m in map_names}
    if maps_for != "labelwise":
        raise ValueError(f"maps_for must be 'labelwise' or 'all', got {maps_for!r}")
    return {m: [m] if m in label_names else list(label_names) + ["macro"] for m in map_names}


def _split_note(map_split, eval_split) -> dict:
    note = {"map_split": map_split, "eval_split": eval_split}
    if map_split is None or eval_split is None:
        note["note"] = ("split provenance not fully given: make sure the global maps were not built on the evaluated "
                        "images (circularity, methods.md §1.6 item 5)")
    elif str(map_split) == str(eval_split):
        note["note"] = (f"maps built and evaluated on the same split ({map_split!r}): faithfulness may be "
                        "overestimated (circularity); report a disjoint-split run as well")
    else:
        note["note"] = f"maps built on {map_split!r}, evaluated on {eval_split!r} (disjoint as given)"
    return note


def _map_summary(curves: Curves, reverse: Curves | None, random: list[Curves], tolerance: float) -> dict:
    """:func:`summarise` against the random curves, with the reverse order's areas added (NaN without it)."""
    summary = summarise(curves, random or None, tolerance)
    for label, block in summary.items():
        rev = _area_block(reverse, label) if reverse is not None else {"A_erase": np.nan, "A_restore": np.nan}
        block["reverse_A_erase"], block["reverse_A_restore"] = rev["A_erase"], rev["A_restore"]
    return summary


def _table_rows(summary, headline) -> list[dict]:
    return [{"map": name, "label": label, **summary[name][label]}
            for name, labels in headline.items() for label in labels]


def _specificity(summary, map_names, label_names) -> dict:
    """Label map a × label b area matrices and their gains over the random order (same for every map)."""
    label_maps = [m for m in map_names if m in label_names]

    def grab(key):
        return np.array([[summary[m][b][key] for b in label_names] for m in label_maps]).reshape(
            len(label_maps), len(label_names))

    erase, restore = grab("A_erase"), grab("A_restore")
    return {"maps": label_maps, "labels": list(label_names), "erase": erase, "restore": restore,
            "erase_gain": grab("random_A_erase") - erase, "restore_gain": restore - grab("random_A_restore")}


def run_peppr(model, images, global_maps, truth: np.ndarray | None, label_names: Sequence[str] | None = None, *,
              maps_for: str = "labelwise", fractions=DEFAULT_FRACTIONS, fill: str = "zero",
              random_seeds: int | Sequence[int] = 5, include_reverse: bool = True, specificity: bool = True,
              eval_indices: Sequence[int] | None = None, map_split: str | None = None,
              eval_split: str | None = None, tolerance: float = 0.01, tie_seed: int = 0, progress=None,
              cancel=None, batch_size: int | None = None, chunk_size: int | None = None,
              fill_sigma: float | None = None) -> PepprResult:
    """PEPPR: erase and restore curves of global maps, with random-order, reverse-order and specificity baselines.

    Parameters
    ----------
    model : LoadedModel
    images : array-like, (n, H, W, C)
        Raw harmonised (left-eye frame) pixels or a lazy indexable stack.
    global_maps : GlobalMaps or dict[str, (H, W)]
        A :class:`~napari_global_xai.aggregate.GlobalMaps` contributes every label map plus ``"overall"``.
    truth : numpy.ndarray, (n, L) or None
        0/1 labels of ``label_names`` for all ``n`` images (rows picked by ``eval_indices``); None = the metric is
        the mean predicted probability.
    label_names : sequence of str, optional
        Evaluated labels (truth columns), each a model label; default all model labels.
    maps_for : {"labelwise", "all"}
        ``"labelwise"``: a map named like a label is judged on that label's metric, any other map (``"overall"``)
        on every label and the macro mean; ``"all"``: every map on every label and the macro mean. Curves for every
        label are computed either way (one forward scores all labels).
    fractions : sequence of float
    fill : {"zero", "black", "blur", "impute"}
    random_seeds : int or sequence of int
        Random-order baseline seeds (an int n means seeds 0 .. n-1).
    include_reverse : bool
        Also run the reverse order (least important first).
    specificity : bool
        Build the label-specificity matrix (label map a × label b).
    eval_indices : sequence of int, optional
        Images evaluated (default all).
    map_split, eval_split : str, optional
        Split that built the maps / split evaluated, recorded in ``split_note`` as given.
    tolerance : float
        δ of ``p_star``.
    tie_seed : int
        Tie-breaking seed of :func:`pixel_ranking`.
    progress : callable(done, total), optional
        In image forwards.
    cancel : callable() -> bool or threading.Event, optional
        Checked between batches; raises :class:`~napari_global_xai.batching.Cancelled`.
    batch_size, chunk_size, fill_sigma
        See :class:`CurveEngine`.

    Returns
    -------
    PepprResult

    Notes
    -----
    Reconstruction of methods.md §1.7 (only the paper's abstract is available; every item below is our choice):

    * ranking: :func:`pixel_ranking` of each global map at full image resolution, ties broken by a seeded secondary
      key; reverse order = the ranking reversed; random order = :func:`random_ranking` per seed (≥ 5 seeds by
      default, mean ± sample sd);
    * masks: ``k = round(p·H·W)`` top pixels, the same mask for every image; erase removes them, restore keeps only
      them; fill in normalised space (``zero`` = training mean per channel by default);
    * metric: per-label AUROC over the evaluated images (:func:`auroc`, equal to sklearn's ``roc_auc_score``; NaN
      for a label with one class) and the macro mean over labels (NaN labels skipped); without truth the mean
      predicted probability.
      AUROC is computed on the logits (sigmoid models) or log-softmax (softmax models): the same order as the
      probabilities, but float32 probabilities of confident predictions round to exactly 1.0 (logit ≳ 17) and
      would become ties, which pulls AUROC towards 0.5 on a confident model;
    * summary: normalised trapezoid areas, gap = A_restore − A_erase, differences to the random order's mean, and
      ``p_star`` (see :func:`summarise`); the reverse order's areas are added to each row;
    * specificity: computed from **both** curves, label map a × label b: A_erase and A_restore matrices and their
      gains over the random order (``erase_gain`` = random A_erase(b) − A_erase(a, b), ``restore_gain`` =
      A_restore(a, b) − random A_restore(b)); a specific map has its largest gains on the diagonal. It costs no
      extra forward: every forward scores all labels;
    * one engine run serves every map, order and seed, so the unmodified images and the constant fully filled
      image are forwarded once for all of them, and a map's reverse-order masks that coincide with its own
      restore masks are not forwarded twice;
    * circularity: the split that built the maps and the evaluated split are recorded as given (methods.md §1.6).
    """
    t0 = time.perf_counter()
    names = list(model.labels)
    label_names = list(names if label_names is None else label_names)
    missing = [n for n in label_names if n not in names]
    if missing:
        raise ValueError(f"labels {missing} are not outputs of the model (outputs: {names})")
    label_idx = [names.index(n) for n in label_names]
    engine = CurveEngine(model, images, fractions, fill, batch_size=batch_size, chunk_size=chunk_size,
                         fill_sigma=fill_sigma)
    evaluated = None if eval_indices is None else np.asarray(eval_indices, np.int64)
    n_eval = engine.n_images if evaluated is None else len(evaluated)
    if truth is not None:
        truth = np.asarray(truth)
        truth = truth[:, None] if truth.ndim == 1 else truth
        if truth.shape != (engine.n_images, len(label_names)):
            raise ValueError(f"truth must be (n_images, n_labels) = {(engine.n_images, len(label_names))}, "
                             f"got {truth.shape}")
        truth = truth if evaluated is None else truth[evaluated]
    maps = collect_maps(global_maps, engine.shape)
    seeds = list(range(random_seeds)) if isinstance(random_seeds, (int, np.integer)) else list(random_seeds)

    jobs = []  # (request id, map name, order, seed)
    for name, m in maps.items():
        rid = engine.add_ranking(pixel_ranking(m, tie_seed))
        jobs.append((engine.add_request(rid, images=evaluated), name, "true", None))
        if include_reverse:
            jobs.append((engine.add_request(rid, reverse=True, images=evaluated), name, "reverse", None))
    for s in seeds:
        rid = engine.add_ranking(random_ranking(engine.shape, s))
        jobs.append((engine.add_request(rid, images=evaluated), "random", "random", s))
    outputs = engine.run(progress, cancel)

    curves, reverse, random = {}, {}, []
    for rid, name, order, seed in jobs:
        c = _curves_from(outputs[rid], label_idx, label_names, truth, engine, map_name=name, order=order, seed=seed)
        if order == "random":
            random.append(c)
        else:
            (curves if order == "true" else reverse)[name] = c
    summary = {name: _map_summary(c, reverse.get(name), random, tolerance) for name, c in curves.items()}
    headline = _headlines(list(maps), label_names, maps_for)
    return PepprResult(
        fractions=engine.fractions.copy(), labels=label_names,
        metric="auroc" if truth is not None else "mean_probability", fill=fill, maps=list(maps), headline=headline,
        curves=curves, reverse=reverse, random=random, summary=summary,
        table=_table_rows(summary, headline),
        specificity=_specificity(summary, list(maps), label_names) if specificity else {},
        split_note=_split_note(map_split, eval_split), n_images=n_eval, n_forwards=engine.n_forwards,
        n_skipped=engine.n_skipped, seconds=time.perf_counter() - t0, eval_indices=evaluated)
