"""One batched, de-duplicating scorer of masked images: ``model(x ⊙ keep + fill ⊙ (1 − keep))`` for many pairs.

A request is an ``(image id, mask key)`` pair. The scorer holds the loaded images (normalised, on the device) and
turns a key into a removed-pixel mask with the caller's ``masks(key, device)`` function, so any family of masks fits:
PEPPR's rank prefixes and suffixes (:class:`~napari_global_xai.peppr.engine.CurveEngine`), per-image deletion and
insertion, SAG's patch sets. Two special keys need no mask function: :data:`KEEP_ALL` (the unmodified image) and
:data:`REMOVE_ALL` (the fully filled image, forwarded **once for all images** when the fill is a constant).

Every answer is cached per pair, so a pair asked twice (in one call or across calls) costs one image forward;
forwards are batched key-major (a batch shares few masks), with the out-of-memory back-off and the cancel check
of :func:`~napari_global_xai.batching.iterate_batches` between batches.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import torch

from ..batching import images_per_pass, iterate_batches
from ..config import CONSTANT_FILLS, check_fill
from ..control import RunControl
from .blend import apply_fill, blend
from .fills import make_fill

__all__ = ["MaskedScorer", "KEEP_ALL", "REMOVE_ALL", "MaskFn", "NOISE_STREAM"]

#: The unmodified image (nothing removed).
KEEP_ALL = "<keep all>"
#: The fully filled image (everything removed).
REMOVE_ALL = "<remove all>"
#: Seed stream of the ``impute`` noise.
NOISE_STREAM = 0x1D0E

#: ``masks(key, device) -> (H, W) bool tensor`` of the pixels a key removes (True = filled).
MaskFn = Callable[[Hashable, torch.device], torch.Tensor]


def _key_seed(key) -> int:
    """A stable integer per key for the ``impute`` noise (ints as themselves; sets by their sorted members)."""
    if key == KEEP_ALL:
        return 0
    if key == REMOVE_ALL:
        return 1
    if isinstance(key, (int, np.integer)):
        return int(key)
    text = repr(sorted(key)) if isinstance(key, (set, frozenset)) else repr(key)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def _rows(t: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
    """``t[idx]``: a view when ``idx`` is a consecutive ascending run (the common case), else a gather."""
    if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
        return t[int(idx[0]) : int(idx[-1]) + 1]
    return t[torch.as_tensor(idx, device=t.device)]


def _grid(codes: np.ndarray, local: np.ndarray) -> tuple[int, int, int] | None:
    """``(n_keys, first row, n_rows)`` when a batch is K keys × one run of consecutive rows, else None."""
    change = np.nonzero(np.diff(codes))[0]
    n_img = int(change[0]) + 1 if len(change) else len(codes)
    if len(codes) % n_img:
        return None
    run = local[:n_img]
    if run[-1] - run[0] != n_img - 1 or np.any(np.diff(run) != 1):
        return None
    grid_codes, grid_local = codes.reshape(-1, n_img), local.reshape(-1, n_img)
    if np.any(grid_codes != grid_codes[:, :1]) or np.any(grid_local != run) or np.any(np.diff(grid_codes[:, 0]) == 0):
        return None
    return len(codes) // n_img, int(run[0]), n_img


def _cat(tensors) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


class MaskedScorer:
    """Model outputs of masked images, batched and de-duplicated.

    Parameters
    ----------
    model : LoadedModel
        Anything with ``scores(x, probability=False)``, ``device`` and ``card.mean`` / ``card.std`` (``black``).
    fill : {"zero", "black", "blur", "impute"}
        Value of removed pixels (:mod:`napari_global_xai.perturb.fills`), in normalised input space.
    masks : callable(key, device) -> (H, W) bool tensor, optional
        Removed pixels of a key; needed for every key other than :data:`KEEP_ALL` / :data:`REMOVE_ALL`.
    fill_sigma : float, optional
        Blur σ in pixels (default :func:`~napari_global_xai.perturb.fills.default_sigma`).
    impute_noise : float
        Noise of the ``impute`` fill (ROAD: 0.01; 0 = noise-free imputation).
    seed : int
        Seed of the ``impute`` noise; a pair's noise comes from ``(seed, image id, key)`` only, never the batch.
    batch_size : int, optional
        Pairs per model pass; default :func:`~napari_global_xai.batching.images_per_pass`. Halved on out of memory
        (and kept smaller afterwards).
    probability : bool
        Return probabilities (the card's activation) instead of raw outputs.
    control : RunControl, optional
        Cancel checked before every model pass (:class:`~napari_global_xai.control.Cancelled` is raised; finished
        pairs stay cached).

    Attributes
    ----------
    n_forwards : int
        Image forwards run so far (a pair answered from the cache costs none).
    n_batches : int
        Model calls so far.
    forwards_by_image : collections.Counter
        Image forwards per image id (the shared fully filled image counts under ``None``).
    batches_by_image : collections.Counter
        Model calls each image id took part in.
    """

    def __init__(
        self,
        model,
        fill: str = "zero",
        *,
        masks: MaskFn | None = None,
        fill_sigma: float | None = None,
        impute_noise: float = 0.01,
        seed: int = 0,
        batch_size: int | None = None,
        probability: bool = False,
        control: RunControl | None = None,
    ):
        check_fill(fill)
        self.model = model
        self.fill = fill
        self.masks = masks
        self.fill_sigma = fill_sigma
        self.impute_noise = float(impute_noise)
        self.seed = int(seed)
        self.batch_size = int(batch_size or images_per_pass(model.device))
        self.probability = bool(probability)
        self.control = control or RunControl()
        self.n_forwards = 0
        self.n_batches = 0
        self.forwards_by_image: Counter = Counter()
        self.batches_by_image: Counter = Counter()
        self._cache: dict[tuple, np.ndarray] = {}
        self._x: torch.Tensor | None = None
        self._fill_image: torch.Tensor | None = None
        self._row: dict = {}
        self._keeps: OrderedDict = OrderedDict()
        self._fill_value: torch.Tensor | None = None
        self._buffer_t: torch.Tensor | None = None

    # -- images

    @property
    def shared_fill(self) -> bool:
        """Whether the fully filled image is the same for every image (constant fill: one forward serves all)."""
        return self.fill in CONSTANT_FILLS

    def load(self, x: torch.Tensor, ids: Sequence[Hashable] | None = None) -> None:
        """Make ``x`` (normalised ``(n, c, H, W)``, on the model's device) the images requests refer to.

        ``ids`` name the rows (default ``0 .. n-1``); cached answers of earlier images stay (see :meth:`forget`).
        The blur fill of the images is computed here, once.
        """
        ids = list(range(len(x))) if ids is None else list(ids)
        if len(ids) != len(x):
            raise ValueError(f"need one id per image ({len(x)}), got {len(ids)}")
        self._x = x
        self._row = {g: j for j, g in enumerate(ids)}
        self._fill_image = make_fill("blur", x, sigma=self.fill_sigma) if self.fill == "blur" else None

    def forget(self, ids: Sequence[Hashable] | None = None) -> None:
        """Drop the cached answers of ``ids`` (default all; the shared fully filled image is kept)."""
        if ids is None:
            self._cache = {k: v for k, v in self._cache.items() if k[0] is None}
        else:
            gone = set(ids)
            self._cache = {k: v for k, v in self._cache.items() if k[0] not in gone}

    # -- scoring

    def _cache_key(self, image_id, key) -> tuple:
        return (None, REMOVE_ALL) if key == REMOVE_ALL and self.shared_fill else (image_id, key)

    def missing(self, image_ids: Sequence[Hashable], keys: Sequence[Hashable]) -> list[tuple]:
        """The distinct pairs not answered yet (first-seen order), as cache keys ``(image id or None, key)``."""
        return list(dict.fromkeys(k for k in map(self._cache_key, image_ids, keys) if k not in self._cache))

    def score(
        self, image_ids: Sequence[Hashable], keys: Sequence[Hashable], on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Outputs of the pairs ``(image_ids[i], keys[i])``, ``(len, n_outputs)`` float64.

        New pairs are forwarded (each distinct pair once), key-major in batches of ``batch_size``; ``on_batch(k)``
        is called after each model pass with the number of image forwards it ran. The images of new pairs must be
        loaded (:meth:`load`).
        """
        image_ids, keys = list(image_ids), list(keys)
        if len(image_ids) != len(keys):
            raise ValueError(f"need one key per image id, got {len(image_ids)} ids and {len(keys)} keys")
        todo = self.missing(image_ids, keys)
        shared = [p for p in todo if p[0] is None]
        if shared:
            if self._x is None:
                raise ValueError("load images before scoring")
            self._run([(next(iter(self._row)), REMOVE_ALL)], on_batch, store=[shared[0]])
        self._run([p for p in todo if p[0] is not None], on_batch)
        if not keys:
            return np.empty((0, 0), np.float64)
        return np.stack([self._cache[k] for k in map(self._cache_key, image_ids, keys)])

    def _run(self, pairs: list[tuple], on_batch, store: list[tuple] | None = None) -> None:
        """Forward ``pairs`` key-major in batches, caching each answer under ``store`` (default the pair)."""
        if not pairs:
            return
        missing_rows = [g for g, _ in pairs if g not in self._row]
        if missing_rows:
            raise ValueError(f"image {missing_rows[0]!r} is not loaded")
        codes_of: dict = {}
        for _, key in pairs:
            codes_of.setdefault(key, len(codes_of))
        order = sorted(range(len(pairs)), key=lambda i: (codes_of[pairs[i][1]], self._row[pairs[i][0]]))
        pairs = [pairs[i] for i in order]
        store = pairs if store is None else [store[i] for i in order]
        codes = np.array([codes_of[k] for _, k in pairs], np.int64)
        local = np.array([self._row[g] for g, _ in pairs], np.int64)
        longest = 0
        for sl, out in iterate_batches(
            len(pairs),
            self.batch_size,
            lambda sl: self._forward(pairs[sl], codes[sl], local[sl]),
            cancel=self.control.cancel_fn,
        ):
            for cache_key, row in zip(store[sl], out):
                self._cache[cache_key] = row
                self.forwards_by_image[cache_key[0]] += 1
            self.batches_by_image.update(dict.fromkeys(k[0] for k in store[sl]).keys())
            n = sl.stop - sl.start
            self.n_forwards += n
            self.n_batches += 1
            if sl.stop < len(pairs):
                longest = max(longest, n)
            if on_batch is not None:
                on_batch(n)
        if longest and longest < self.batch_size:  # an out-of-memory back-off happened: keep the smaller batch
            self.batch_size = longest

    def _forward(self, pairs, codes, local) -> np.ndarray:
        """Fill one batch and return the model's outputs ``(B, n_outputs)`` float64.

        A batch that is a grid (K keys × the same run of J consecutive images, the usual case of the key-major
        order) is filled by one broadcast multiply into a reused buffer, without gathering the images. Masks are
        cached per key as channels-last float ``keep`` tensors (and, for the black fill, the fill term
        ``(1 - keep) * fill``): a same-layout multiply was ~2x faster on CPU than broadcasting a one-channel mask.
        """
        x = self._x
        keys = [k for _, k in pairs]
        with torch.inference_mode():
            if self.fill == "impute":
                seeds = [
                    int(
                        np.random.SeedSequence([self.seed, NOISE_STREAM, _key_seed(g), _key_seed(k)]).generate_state(1)[
                            0
                        ]
                    )
                    for g, k in pairs
                ]
                masks = torch.stack([self._removed(k, x.device) for k in keys]).unsqueeze(1)
                filled = apply_fill(_rows(x, local), masks, "impute", noise=self.impute_noise, noise_seeds=seeds)
            else:
                grid = _grid(codes, local)
                if grid is not None:
                    n_keys, start, n_img = grid
                    unique_keys = keys[::n_img]
                    xs = x[start : start + n_img].unsqueeze(0)  # (1, J, c, H, W)
                    fill_rows = (
                        None if self._fill_image is None else self._fill_image[start : start + n_img].unsqueeze(0)
                    )
                else:
                    n_keys, unique_keys = len(keys), keys
                    xs = _rows(x, local)
                    fill_rows = None if self._fill_image is None else _rows(self._fill_image, local)
                keeps, terms = zip(*(self._keep(k, x) for k in unique_keys))
                keep, term = _cat(keeps), None if terms[0] is None else _cat(terms)
                filled = self._buffer(len(keys), x)
                view = filled.view(n_keys, -1, *filled.shape[1:]) if grid is not None else filled
                if grid is not None:
                    keep, term = keep.unsqueeze(1), None if term is None else term.unsqueeze(1)
                blend(xs, keep, out=view, fill_term=term, fill_image=fill_rows)
            out = self.model.scores(filled.contiguous(memory_format=torch.channels_last), probability=self.probability)
        return out.float().cpu().numpy().astype(np.float64)

    # -- masks and buffers

    def _removed(self, key, device) -> torch.Tensor:
        """``(H, W)`` bool mask of the pixels a key removes."""
        h, w = self._x.shape[-2:]
        if key == KEEP_ALL or key == REMOVE_ALL:
            return torch.full((h, w), key == REMOVE_ALL, dtype=torch.bool, device=device)
        if self.masks is None:
            raise ValueError(f"no mask function for key {key!r}")
        removed = torch.as_tensor(self.masks(key, device), device=device)
        if removed.shape != (h, w):
            raise ValueError(f"mask of key {key!r} has shape {tuple(removed.shape)}, the images are {(h, w)}")
        return removed.to(torch.bool)

    def _constant_fill(self, x) -> torch.Tensor:
        """The constant fill as a ``(1, c, 1, 1)`` tensor, made once."""
        if self._fill_value is None or self._fill_value.device != x.device:
            card = getattr(self.model, "card", None)
            self._fill_value = make_fill(
                self.fill, x[:1, :, :1, :1], mean=getattr(card, "mean", None), std=getattr(card, "std", None)
            )
        return self._fill_value

    def _keep(self, key, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Cached ``(1, c, H, W)`` channels-last float keep mask of a key, and its constant fill term (or None)."""
        cached = self._keeps.get(key)
        if (
            cached is not None
            and cached[0].device == x.device
            and cached[0].dtype == x.dtype
            and cached[0].shape[1:] == x.shape[1:]
        ):
            self._keeps.move_to_end(key)
            return cached
        h, w = x.shape[-2:]
        keep = torch.logical_not(self._removed(key, x.device)).to(x.dtype).view(1, 1, h, w)
        keep = keep.expand(1, x.shape[1], h, w).contiguous(memory_format=torch.channels_last)
        term = None
        if self.fill == "black":
            term = ((1 - keep) * self._constant_fill(x)).contiguous(memory_format=torch.channels_last)
        self._keeps[key] = (keep, term)
        while len(self._keeps) > 16:
            self._keeps.popitem(last=False)
        return keep, term

    def _buffer(self, n: int, x: torch.Tensor) -> torch.Tensor:
        """A reused channels-last ``(n, c, H, W)`` input buffer (no large allocation per batch)."""
        buf = self._buffer_t
        if (
            buf is None
            or buf.shape[0] < n
            or buf.shape[1:] != x.shape[1:]
            or buf.device != x.device
            or buf.dtype != x.dtype
        ):
            buf = torch.empty((max(n, self.batch_size), *x.shape[1:]), dtype=x.dtype, device=x.device)
            buf = buf.contiguous(memory_format=torch.channels_last)
            self._buffer_t = buf
        return buf[:n]
