"""SAG patch scoring: the model's confidence in a label when only some grid patches of an image are shown.

A thin adapter over the perturbation layer's one scorer (:class:`~napari_global_xai.perturb.MaskedScorer`): a group
of images searched together shares one ``MaskedScorer`` (one fill image per image, one cache, shared batched
forwards); a request key is the ``frozenset`` of shown patches, its mask the pixels outside their union. The fill,
blend, impute, batching, out-of-memory back-off, de-duplication and cancel are all the perturbation layer's; here
are only the patch masks and the label's probability (:func:`~napari_global_xai.metrics.activate`, the card's
activation).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from ..config import SagConfig
from ..control import RunControl
from ..metrics import activate, activation_of
from ..perturb import MaskedScorer
from .grid import patch_masks

__all__ = ["PatchScorer", "SagScorer", "score_together"]


class PatchScorer:
    """Confidences of patch sets for a group of same-size images (one label each), in shared batched forwards.

    ``confidence(i, R)`` = probability (the card's activation) of image ``i``'s label on
    ``x_i ⊙ U(R) + fill_i ⊙ (1 − U(R))``, ``U(R)`` the union of the patch masks of ``R``.

    Parameters
    ----------
    model : LoadedModel
    x : torch.Tensor, (k, c, H, W)
        Normalised images on the model's device.
    labels : int or sequence of int
        Output explained, per image (or one for all).
    grid : (int, int)
    fill : {"zero", "black", "blur", "impute"}
        Default ``SagConfig.fill``. ``impute`` is noise-free here (the search compares confidences of nested
        sets; noise would only blur that).
    fill_sigma : float, optional
        Blur σ in pixels (default :func:`~napari_global_xai.perturb.default_sigma`).
    batch_size : int, optional
        Patch sets per forward (default :func:`~napari_global_xai.batching.images_per_pass`).
    control : RunControl, optional
        Cancel, checked before every model pass (raises :class:`~napari_global_xai.control.Cancelled`).

    Attributes
    ----------
    scorer : MaskedScorer
    n_patches : int
    """

    def __init__(
        self,
        model,
        x: torch.Tensor,
        labels,
        grid: tuple[int, int],
        fill: str = SagConfig.fill,
        *,
        fill_sigma: float | None = None,
        batch_size: int | None = None,
        control: RunControl | None = None,
    ):
        control = control or RunControl()
        self.grid = tuple(int(g) for g in grid)
        self.n_patches = self.grid[0] * self.grid[1]
        self.labels = np.broadcast_to(np.asarray(labels, dtype=np.intp), (len(x),)).copy()
        self._masks = torch.from_numpy(patch_masks(tuple(x.shape[-2:]), self.grid)).to(x.device)
        self.activation = activation_of(model)
        self.scorer = MaskedScorer(
            model,
            fill,
            masks=self._removed,
            fill_sigma=fill_sigma,
            impute_noise=0.0,
            batch_size=batch_size,
            control=control,
        )
        self.scorer.load(x)

    def _removed(self, shown: frozenset, device) -> torch.Tensor:
        """Pixels outside the shown patches (the mask function of the MaskedScorer)."""
        if not shown:
            return torch.ones(self._masks.shape[1:], dtype=torch.bool, device=device)
        return ~self._masks[sorted(shown)].any(dim=0).to(device)

    def score(self, requests: Sequence[tuple[int, Sequence[frozenset]]]) -> list[list[float]]:
        """Confidences of each request's patch sets ``(image row, sets)``, in order; all requests share forwards."""
        requests = [(int(i), [frozenset(s) for s in sets]) for i, sets in requests]
        rows = [i for i, sets in requests for _ in sets]
        if not rows:
            return [[] for _ in requests]
        out = self.scorer.score(rows, [s for _, sets in requests for s in sets])
        probs = activate(out, self.activation)[np.arange(len(rows)), self.labels[rows]]
        split = np.cumsum([len(sets) for _, sets in requests])[:-1]
        return [[float(p) for p in part] for part in np.split(probs, split)]

    def forwards(self, row: int) -> int:
        """Image forwards run for image ``row`` so far."""
        return int(self.scorer.forwards_by_image[row])

    def batches(self, row: int) -> int:
        """Model calls image ``row`` took part in so far."""
        return int(self.scorer.batches_by_image[row])


class SagScorer:
    """Confidence of patch sets for one image and label: one row of a :class:`PatchScorer`.

    ``SagScorer(model, x, label, grid, ...)`` makes a group of its own (the older one-image form);
    :meth:`group` makes the scorers of images searched together, sharing forwards.

    Parameters
    ----------
    model : LoadedModel
    x : torch.Tensor, (1, c, H, W)
    label : int
    grid : (int, int)
    fill, fill_sigma, batch_size
        As in :class:`PatchScorer`.
    control : RunControl, optional
        Cancel, as in :class:`PatchScorer`.

    Attributes
    ----------
    n_forwards : int
        Image forwards run for this image so far.
    n_batches : int
        Model calls this image took part in so far (a call may serve several images of its group).
    """

    def __init__(
        self,
        model=None,
        x: torch.Tensor | None = None,
        label: int = 0,
        grid: tuple[int, int] = (7, 7),
        fill: str = SagConfig.fill,
        batch_size: int | None = None,
        fill_sigma: float | None = None,
        control: RunControl | None = None,
        *,
        _group: PatchScorer | None = None,
        _row: int = 0,
    ):
        self.group_scorer = _group or PatchScorer(
            model, x, [label], grid, fill, fill_sigma=fill_sigma, batch_size=batch_size, control=control
        )
        self.row = int(_row)
        self.n_patches = self.group_scorer.n_patches

    @classmethod
    def group(
        cls,
        model,
        x: torch.Tensor,
        labels,
        grid: tuple[int, int],
        fill: str = SagConfig.fill,
        *,
        fill_sigma: float | None = None,
        batch_size: int | None = None,
        control: RunControl | None = None,
    ) -> list[SagScorer]:
        """One scorer per image of ``x``, all on one shared :class:`PatchScorer`."""
        shared = PatchScorer(
            model, x, labels, grid, fill, fill_sigma=fill_sigma, batch_size=batch_size, control=control
        )
        return [cls(_group=shared, _row=i) for i in range(len(x))]

    @property
    def n_forwards(self) -> int:
        return self.group_scorer.forwards(self.row)

    @property
    def n_batches(self) -> int:
        return self.group_scorer.batches(self.row)

    def score(self, sets: Iterable[frozenset]) -> list[float]:
        """Confidences of ``sets`` (in order); new sets are scored in batched forwards."""
        return self.group_scorer.score([(self.row, list(sets))])[0]

    def full(self) -> float:
        """Confidence on the full (unperturbed) image."""
        return self.score([frozenset(range(self.n_patches))])[0]


def score_together(requests: Sequence[tuple[SagScorer, Sequence[frozenset]]]) -> list[list[float]]:
    """Confidences of several scorers' patch sets; the requests of scorers of one group share batched forwards.

    Batch size and cancel are the group's (set when it was made by :meth:`SagScorer.group`).

    Returns
    -------
    list of list of float
        The confidences of each request's sets, in order.
    """
    out: list = [None] * len(requests)
    groups: dict[int, list[int]] = {}
    for k, (scorer, _sets) in enumerate(requests):
        groups.setdefault(id(scorer.group_scorer), []).append(k)
    for members in groups.values():
        shared = requests[members[0]][0].group_scorer
        scored = shared.score([(requests[k][0].row, requests[k][1]) for k in members])
        for k, probs in zip(members, scored):
            out[k] = probs
    return out
