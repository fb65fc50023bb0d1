"""SAG patch scoring: the model's confidence in a label when only some grid patches of an image are shown."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from ..batching import images_per_pass, iterate_batches
from ..config import BLUR_SIGMA_FRACTION
from ..fills import FILLS, impute_linear, make_fill
from .grid import patch_masks

__all__ = ["SagScorer", "score_together"]


class SagScorer:
    """Batched, cached confidence of patch sets for one image and label.

    ``confidence(R)`` = probability (sigmoid for multi-label cards, softmax otherwise) of the label on
    ``x ⊙ U(R) + fill ⊙ (1 − U(R))``, ``U(R)`` the union of the patch masks of ``R``.

    Parameters
    ----------
    model : LoadedModel
    x : torch.Tensor, (1, c, H, W)
        Normalised image on the model's device.
    label : int
    grid : (int, int)
    fill : str
        One of :data:`napari_global_xai.fills.FILLS` (``"impute"`` imputes each patch set separately).
    batch_size : int, optional
        Images per forward (default :func:`~napari_global_xai.batching.images_per_pass`).
    cancel : callable() -> bool, optional

    Attributes
    ----------
    n_forwards : int
        Images forwarded so far.
    n_batches : int
        Model calls so far.
    """

    def __init__(self, model, x: torch.Tensor, label: int, grid: tuple[int, int], fill: str = "zero",
                 batch_size: int | None = None, fill_sigma: float | None = None, cancel=None):
        if fill not in FILLS:
            raise ValueError(f"unknown fill {fill!r}; choose from {FILLS}")
        self.model = model
        self.x = x
        self.label = int(label)
        self.grid = tuple(grid)
        self.fill = fill
        self.cancel = cancel
        h, w = x.shape[-2:]
        self.n_patches = grid[0] * grid[1]
        masks = torch.from_numpy(patch_masks((h, w), grid)).to(x.device)
        self._masks = masks.view(self.n_patches, -1).to(x.dtype)
        if fill == "blur" and fill_sigma is None:
            fill_sigma = BLUR_SIGMA_FRACTION * min(h, w)
        self._fill = None if fill in ("zero", "impute") else make_fill(fill, x, model.card.mean, model.card.std,
                                                                         fill_sigma)
        self.batch_size = int(batch_size or images_per_pass(x.device))
        self.cache: dict[frozenset, float] = {}
        self.n_forwards = 0
        self.n_batches = 0

    def _inputs(self, sets: Sequence[frozenset]) -> torch.Tensor:
        ind = torch.zeros(len(sets), self.n_patches, dtype=self.x.dtype, device=self.x.device)
        for i, s in enumerate(sets):
            if s:
                ind[i, list(s)] = 1.0
        keep = (ind @ self._masks).view(len(sets), 1, *self.x.shape[-2:])
        if self.fill == "impute":
            return impute_linear(self.x.expand(len(sets), -1, -1, -1), keep < 0.5, noise=0.0)
        y = self.x * keep
        if self._fill is not None:
            y = y + self._fill * (1 - keep)
        return y.contiguous(memory_format=torch.channels_last)

    def missing(self, sets: Iterable[frozenset]) -> list[frozenset]:
        """The distinct sets of ``sets`` not scored yet, in first-seen order."""
        return list(dict.fromkeys(s for s in sets if s not in self.cache))

    def score(self, sets: Iterable[frozenset]) -> list[float]:
        """Confidences of ``sets`` (in order); new sets are scored in batched forwards of ``batch_size``."""
        return score_together([(self, sets)], self.batch_size, self.cancel)[0]

    def full(self) -> float:
        """Confidence on the full (unperturbed) image."""
        return self.score([frozenset(range(self.n_patches))])[0]


def score_together(requests: Sequence[tuple[SagScorer, Sequence[frozenset]]], batch_size: int,
                   cancel: Callable[[], bool] | None = None) -> list[list[float]]:
    """Score the uncached patch sets of several scorers (images) in shared batched forwards; fills their caches.

    A batch may mix images: each row is built by its own scorer, the rows are concatenated into one model call and
    each scorer reads its own label's probability. Every scorer's ``n_forwards`` counts its own rows and its
    ``n_batches`` the model calls it took part in. Out of memory halves the batch (finished batches are kept).

    Returns
    -------
    list of list of float
        The confidences of each request's sets, in order.
    """
    requests = [(scorer, [frozenset(s) for s in sets]) for scorer, sets in requests]
    jobs = [(scorer, s) for scorer, sets in requests for s in scorer.missing(sets)]
    if not jobs:
        return [[scorer.cache[s] for s in sets] for scorer, sets in requests]
    model = jobs[0][0].model

    def run(sl):
        part = jobs[sl]
        owners = list(dict.fromkeys(scorer for scorer, _ in part))
        with torch.inference_mode():
            z = torch.cat([o._inputs([s for sc, s in part if sc is o]) for o in owners])
            probs = model.scores(z.contiguous(memory_format=torch.channels_last), probability=True)
            rows = torch.arange(len(part), device=probs.device)
            labels = torch.tensor([o.label for o in owners for sc, _ in part if sc is o], device=probs.device)
            return owners, probs[rows, labels].float().cpu().numpy()

    for sl, (owners, probs) in iterate_batches(jobs, batch_size, run, cancel=cancel):
        ordered = [(sc, s) for o in owners for sc, s in jobs[sl] if sc is o]
        for (scorer, s), p in zip(ordered, probs):
            scorer.cache[s] = float(p)
            scorer.n_forwards += 1
        for o in owners:
            o.n_batches += 1
    return [[scorer.cache[s] for s in sets] for scorer, sets in requests]
