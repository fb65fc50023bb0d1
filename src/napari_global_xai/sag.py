"""Structured Attention Graphs (SAG): several minimal patch sets that each keep the model confident.

Shitole, Li, Kahng, Tadepalli, Fern (NeurIPS 2021), following the official code (repo
viv92/structured-attention-graphs, ``search.py``, ``diverse_subset_selection.py``, ``patch_deletion_tree.py``) as
summarised in methods.md §2.6, adapted to aligned ultra-widefield retina images and to this project's models, fills,
saliency methods and batching. Qt-free: numpy/torch in, dataclasses out.

Pipeline per image and label (:func:`sag_for_image`):

1. a patch grid (default 6 × 8 for 384 × 512, from the aspect ratio);
2. a saliency map (I-GOS by default, methods.md §2.3) averaged per patch ranks the patches;
3. beam search over revealed patch sets finds *roots*: minimal sets whose confidence stays above
   ``root_threshold`` × the full image's confidence;
4. a diverse subset of the roots (pairwise overlap ≤ ``overlap`` patches, at most ``n_show``);
5. the graph: each shown root and its children (one patch removed), expanded while the relative confidence stays
   above ``node_threshold``.

Every model evaluation of a batch of patch sets is one batched forward under :func:`torch.inference_mode`, chunked
with :func:`~napari_global_xai.batching.iterate_batches` (out-of-memory halving); identical patch sets are scored once.

Beyond the paper, :func:`sag_stack_summary` counts root sets and patches over a stack (aligned images make patch
positions comparable across images).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .batching import Cancelled, images_per_pass, iterate_batches
from .perturb.fills import FILLS, impute_linear, make_fill

__all__ = [
    "SagNode",
    "SagResult",
    "draw_sag_figure",
    "grid_for",
    "patch_masks",
    "patch_saliency",
    "SagScorer",
    "score_together",
    "run_programs",
    "beam_search_roots",
    "beam_search_program",
    "diverse_subset",
    "build_graph",
    "graph_program",
    "sag_for_image",
    "run_sag",
    "sag_stack_summary",
    "to_json",
    "draw_sag",
    "IGOS_SAG_PARAMS",
    "FIGURE_FORMATS",
]

#: File formats :func:`draw_sag` writes (picked from the file suffix).
FIGURE_FORMATS = ("png", "svg", "pdf")

#: I-GOS parameters of the official SAG code (``Integrated_Mask``: ``max_iterations=2, integ_iter=20, l1=1,
#: tv=20``, mask on the patch grid), methods.md §2.6. ``mask_size`` is set to the SAG grid and ``baseline`` to the
#: SAG fill at run time.
IGOS_SAG_PARAMS = {"iterations": 2, "ig_iter": 20, "l1": 1.0, "tv": 20.0}


@dataclass
class SagNode:
    """One node of a structured attention graph.

    Attributes
    ----------
    patches : frozenset of int
        Revealed patches, ``row * cols + col``.
    confidence : float
        Probability of the label when only these patches are shown (the rest filled).
    relative : float
        ``confidence / full_confidence``.
    children : list of int
        Indices (into :attr:`SagResult.nodes`) of the nodes with one patch fewer.
    """

    patches: frozenset
    confidence: float
    relative: float
    children: list = field(default_factory=list)


@dataclass
class SagResult:
    """SAG of one image and label.

    Attributes
    ----------
    image_index : int
    label : int
        Output index explained.
    grid : (int, int)
        ``(rows, cols)`` of the patch grid.
    full_confidence : float
        Probability of the label on the full image.
    roots : list of frozenset
        The shown roots: the diverse subset of :attr:`all_roots` (discovery order).
    nodes : list of SagNode
        The graph; the first ``len(roots)`` nodes are the roots, in the same order.
    n_forwards : int
        Images pushed through the model (forward only) for this result, including the full image; the saliency
        map's own passes are not included (see :attr:`saliency_seconds`).
    all_roots : list of frozenset
        Every minimal root found by the beam search, in discovery order.
    root_confidences : list of float
        Confidence of each of :attr:`all_roots`.
    n_batches : int
        Batched model calls made for the search and graph.
    seconds : float
        Wall time of the search and graph (without the saliency map).
    saliency_seconds : float
        Wall time of the saliency map (0 when a map was given).
    params : dict
        The parameters used.
    """

    image_index: int
    label: int
    grid: tuple
    full_confidence: float
    roots: list
    nodes: list
    n_forwards: int
    all_roots: list = field(default_factory=list)
    root_confidences: list = field(default_factory=list)
    n_batches: int = 0
    seconds: float = 0.0
    saliency_seconds: float = 0.0
    params: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------- grid


def grid_for(image_hw: tuple[int, int], grid: tuple[int, int] | None = None, n_patches: int = 49) -> tuple[int, int]:
    """The patch grid ``(rows, cols)``.

    Parameters
    ----------
    image_hw : (int, int)
    grid : (int, int), optional
        Explicit grid; returned as is (validated).
    n_patches : int
        Target number of patches when ``grid`` is None (official code: 7 × 7 = 49 on 224 × 224).

    Returns
    -------
    (int, int)
        ``cols = round(sqrt(n_patches · W / H))``, ``rows = round(cols · H / W)``: 7 × 7 for a square image,
        6 × 8 for 384 × 512.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    if grid is not None:
        rows, cols = (int(v) for v in grid)
    else:
        cols = max(1, round(math.sqrt(n_patches * w / h)))
        rows = max(1, round(cols * h / w))
    if rows < 1 or cols < 1 or rows > h or cols > w:
        raise ValueError(f"invalid patch grid {rows} × {cols} for a {h} × {w} image")
    return rows, cols


def patch_masks(image_hw: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """Boolean ``(rows·cols, H, W)`` masks; patch ``p = row · cols + col``.

    Patch edges are ``round(i · H / rows)`` (a partition of the image, "nearest" upsampling of the grid). The
    official code upsamples the 7 × 7 selection bilinearly, which softens patch borders; hard patches keep every
    pixel either the image or the fill (documented adaptation).
    """
    h, w = image_hw
    rows, cols = grid
    re = np.round(np.linspace(0, h, rows + 1)).astype(int)
    ce = np.round(np.linspace(0, w, cols + 1)).astype(int)
    masks = np.zeros((rows * cols, h, w), bool)
    for r in range(rows):
        for c in range(cols):
            masks[r * cols + c, re[r]:re[r + 1], ce[c]:ce[c + 1]] = True
    return masks


def patch_saliency(saliency: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Mean of a ``(H, W)`` saliency map over each patch: ``(rows·cols,)`` (higher = more salient)."""
    sal = np.asarray(saliency, dtype=np.float64)
    if sal.ndim == 3:
        sal = np.abs(sal).sum(axis=0)
    masks = patch_masks(sal.shape, grid)
    return np.array([sal[m].mean() for m in masks])


# --------------------------------------------------------------------------------------------------------- scorer


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
        sets = [frozenset(s) for s in sets]
        score_together([(self, sets)], self.batch_size, self.cancel)
        return [self.cache[s] for s in sets]

    def full(self) -> float:
        """Confidence on the full (unperturbed) image."""
        return self.score([frozenset(range(self.n_patches))])[0]


def score_together(requests: Sequence[tuple[SagScorer, Sequence[frozenset]]], batch_size: int,
                   cancel: Callable[[], bool] | None = None) -> None:
    """Score the uncached patch sets of several scorers (images) in shared batched forwards; fills their caches.

    A batch may mix images: each row is built by its own scorer, the rows are concatenated into one model call and
    each scorer reads its own label's probability. Every scorer's ``n_forwards`` counts its own rows and its
    ``n_batches`` the model calls it took part in. Out of memory halves the batch (finished batches are kept).
    """
    jobs = [(scorer, s) for scorer, sets in requests for s in scorer.missing(frozenset(x) for x in sets)]
    if not jobs:
        return
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


# ---------------------------------------------------------------------------------------------------- beam search


#: A search *program*: a generator that yields the patch sets it needs scored, receives their confidences (a list in
#: the same order) and finally returns its result. One program per image; :func:`run_programs` drives many images'
#: programs in lockstep so that one model call serves all of them, and :func:`_drive` runs one alone.
Program = Generator[list, list, object]


def _drive(program: Program, scorer: SagScorer):
    """Run one image's program, scoring its requests with ``scorer``; returns the program's result."""
    try:
        request = next(program)
        while True:
            request = program.send(scorer.score(request))
    except StopIteration as stop:
        return stop.value


def run_programs(programs: Sequence[Program], scorers: Sequence[SagScorer], batch_size: int,
                 cancel: Callable[[], bool] | None = None) -> list:
    """Drive several images' programs in lockstep; each round's requests of all images share batched forwards.

    Returns the programs' results in order. Results equal driving each program alone with its scorer (the same
    sets are scored; only the batch composition differs, up to float rounding).
    """
    results: list = [None] * len(programs)
    pending: dict[int, list] = {}
    for i, program in enumerate(programs):
        try:
            pending[i] = [frozenset(s) for s in next(program)]
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        score_together([(scorers[i], sets) for i, sets in pending.items()], batch_size, cancel)
        for i in list(pending):
            probs = [scorers[i].cache[s] for s in pending[i]]
            try:
                pending[i] = [frozenset(s) for s in programs[i].send(probs)]
            except StopIteration as stop:
                results[i] = stop.value
                del pending[i]
    return results


def _minimise(root: frozenset, threshold: float) -> Program:
    """Greedy redundant-patch removal (official ``remove_extra_patches``), batched; a program returning the root.

    Each round scores the one-patch-smaller sets of the *candidate* patches in one batched call and drops the patch
    whose removal keeps the highest confidence, as long as it stays above ``threshold``. Candidates of the next round
    are the other patches that were removable; when none is left, all remaining patches are checked once more, so
    on return no single patch can be dropped while staying above ``threshold`` (the official guarantee). The
    official code tries patches one at a time in index order; this order (least useful first) needs far fewer
    rounds than re-scoring every patch each round.
    """
    current = frozenset(root)
    cand = sorted(current)
    full_check = True
    while len(current) > 1 and cand:
        sets = [current - {p} for p in cand]
        probs = yield sets
        ok = sorted(((pr, p) for pr, p in zip(probs, cand) if pr > threshold), key=lambda t: (-t[0], t[1]))
        if not ok:
            if full_check:
                break
            cand, full_check = sorted(current), True
            continue
        best = ok[0][1]
        current = current - {best}
        cand, full_check = [p for _, p in ok[1:]], False
        if not cand:
            cand, full_check = sorted(current), True
    return current


def beam_search_roots(scorer: SagScorer, order: np.ndarray, full_confidence: float, **kw
                      ) -> tuple[list[frozenset], list[float]]:
    """Beam search for minimal sufficient patch sets of one image; see :func:`beam_search_program`."""
    return _drive(beam_search_program(scorer.n_patches, order, full_confidence, **kw), scorer)


def beam_search_program(n_patches: int, order: np.ndarray, full_confidence: float, *, beam_width: int = 3,
                        n_successors: int = 15, root_threshold: float = 0.9, max_roots: int = 10,
                        max_root_size: int | None = None, skip_supersets: bool = True) -> Program:
    """Beam search for minimal sufficient patch sets (official ``search.py::beamSearch_topKSuccessors_roots``).

    A program (see :data:`Program`) returning ``(roots, confidences)``.

    Parameters
    ----------
    n_patches : int
    order : numpy.ndarray of int
        Patches from most to least salient.
    full_confidence : float
    beam_width : int
        Beam states kept per round (official default 3; the official ``> beam_width`` check keeps
        ``beam_width + 1`` states, here exactly ``beam_width``).
    n_successors : int
        ``q``: each beam state is extended by each of its ``q`` most salient not-yet-selected patches.
    root_threshold : float
        A successor whose confidence exceeds ``root_threshold · full_confidence`` becomes a root.
    max_roots : int
        Stop once this many distinct roots are found.
    max_root_size : int, optional
        Stop after this many rounds (default: all patches).
    skip_supersets : bool
        Adaptation (default True): an above-threshold successor containing an already found root is dropped instead
        of being minimised again (it would mostly reproduce that root; the official code minimises it, which with a
        poor heuristic costs hundreds of forwards per duplicate). False reproduces the official behaviour.

    Returns
    -------
    roots, confidences : list of frozenset, list of float
        Minimal roots in discovery order (within a round, by decreasing successor confidence), duplicates dropped.

    Notes
    -----
    All successors of all beam states of a round are scored in one batched call; successors reached from two
    beam states are scored once and kept once (the official code may keep duplicates in its beam).
    """
    n = int(n_patches)
    threshold = root_threshold * full_confidence
    max_root_size = n if max_root_size is None else int(max_root_size)
    rank = np.empty(n, int)
    rank[np.asarray(order)] = np.arange(n)
    roots: list[frozenset] = []
    confs: list[float] = []
    empty = frozenset()
    (empty_confidence,) = yield [empty]
    if empty_confidence > threshold:  # the fill alone keeps the confidence: nothing is needed
        return [empty], [empty_confidence]
    beam = [empty]
    depth = 0
    while beam and len(roots) < max_roots and depth < max_root_size:
        depth += 1
        succ = []
        for state in beam:
            free = [int(p) for p in order if int(p) not in state][:n_successors]
            succ.extend(state | {p} for p in free)
        succ = list(dict.fromkeys(succ))
        if not succ:
            break
        probs = yield succ
        ranked = sorted(zip(probs, range(len(succ))), key=lambda t: -t[0])
        new_beam = []
        for p, i in ranked:
            s = succ[i]
            if p > threshold:
                if skip_supersets and any(r <= s for r in roots):
                    continue
                root = yield from _minimise(s, threshold)
                if root not in roots:
                    roots.append(root)
                    confs.append((yield [root])[0])
                    if len(roots) >= max_roots:
                        break
            elif len(new_beam) < beam_width:
                new_beam.append(s)
        beam = new_beam
    return roots, confs


def diverse_subset(roots: Sequence[frozenset], overlap: int = 1, n_show: int = 3) -> list[int]:
    """Indices of the largest set of roots sharing pairwise ≤ ``overlap`` patches, truncated to ``n_show``.

    Exact depth-first search (official ``diverse_subset_selection.py::maximal_overlapThresh_set``) over the
    compatibility graph; ties go to the set found first in discovery order, which favours early (more confident)
    roots. Exponential in the worst case but ``len(roots) ≤ max_roots`` (10 by default).
    """
    k = len(roots)
    ok = [[len(roots[i] & roots[j]) <= overlap for j in range(k)] for i in range(k)]
    best: list[int] = []

    def dfs(chosen: list[int], start: int):
        nonlocal best
        if len(chosen) > len(best):
            best = list(chosen)
        if len(chosen) + (k - start) <= len(best):
            return
        for j in range(start, k):
            if all(ok[i][j] for i in chosen):
                chosen.append(j)
                dfs(chosen, j + 1)
                chosen.pop()

    dfs([], 0)
    return best[:n_show]


def build_graph(scorer: SagScorer, roots: Sequence[frozenset], full_confidence: float, **kw) -> list[SagNode]:
    """The SAG of one image; see :func:`graph_program`."""
    return _drive(graph_program(roots, full_confidence, **kw), scorer)


def graph_program(roots: Sequence[frozenset], full_confidence: float, *, node_threshold: float = 0.4,
                  max_children: int = 3, max_nodes: int = 200) -> Program:
    """The SAG: roots and, recursively, children with one patch removed (official ``patch_deletion_tree.py``).

    A program (see :data:`Program`) returning the list of :class:`SagNode`.

    Parameters
    ----------
    roots : sequence of frozenset
    full_confidence : float
    node_threshold : float
        A node is expanded only if its relative confidence exceeds this (official ``node_prob_thresh=40`` %).
    max_children : int
        Children per expanded node. The official code tries the first ≤ 3 literals of the node; here all one-patch
        removals are scored in one batched call and the ``max_children`` that keep the *highest* confidence are
        kept (adaptation: deterministic and independent of patch numbering).
    max_nodes : int
        Safety cap on the graph size.

    Returns
    -------
    list of SagNode
        Roots first (same order), then nodes breadth first. A node reached from two parents appears once (a DAG).
    """
    full = max(full_confidence, 1e-12)
    nodes: list[SagNode] = []
    index: dict[frozenset, int] = {}
    roots = [frozenset(r) for r in roots]
    for r, c in zip(roots, (yield roots) if roots else []):
        if r in index:
            continue
        index[r] = len(nodes)
        nodes.append(SagNode(frozenset(r), c, c / full, []))
    frontier = [i for i in range(len(nodes))]
    while frontier and len(nodes) < max_nodes:
        expand = [i for i in frontier if nodes[i].relative > node_threshold and len(nodes[i].patches) > 1]
        cands = []
        for i in expand:
            cands.extend(nodes[i].patches - {p} for p in sorted(nodes[i].patches))
        probs = dict(zip(cands, (yield cands))) if cands else {}
        nxt = []
        for i in expand:
            kids = [nodes[i].patches - {p} for p in sorted(nodes[i].patches)]
            kids.sort(key=lambda s: -probs[s])
            for s in kids[:max_children]:
                if s not in index:
                    if len(nodes) >= max_nodes:
                        break
                    index[s] = len(nodes)
                    nodes.append(SagNode(s, probs[s], probs[s] / full, []))
                    nxt.append(index[s])
                nodes[i].children.append(index[s])
        frontier = nxt
    return nodes


# ------------------------------------------------------------------------------------------------------- drivers


def _saliency_maps(model, x: torch.Tensor, label: int, method: str, method_params: dict | None, grid,
                   fill: str) -> np.ndarray:
    """Heuristic maps ``(k, H, W)`` of a batch of normalised images ``x`` ``(k, c, H, W)`` for one label."""
    from .explain import get_method

    params = dict(method_params or {})
    if method in ("igos", "igos++"):
        params = {**IGOS_SAG_PARAMS, "mask_size": tuple(grid),
                  "baseline": fill if fill in ("zero", "black", "blur") else "blur", **params}
    m = get_method(method, model, **params)
    targets = torch.full((len(x),), int(label), device=x.device, dtype=torch.long)
    if m.needs_grad:
        a = m.attribute(x, targets)
    else:
        with torch.inference_mode():
            a = m.attribute(x, targets)
    a = a.detach().float().cpu().numpy()
    return np.abs(a).sum(axis=1) if a.shape[1] > 1 else a[:, 0]


def _image_program(n_patches: int, order: np.ndarray, search: dict, overlap: int, n_show: int, graph: dict
                   ) -> Program:
    """One image's whole SAG as a program: full confidence, beam search, diverse subset, graph."""
    (full,) = yield [frozenset(range(n_patches))]
    all_roots, confs = yield from beam_search_program(n_patches, order, full, **search)
    shown = [all_roots[i] for i in diverse_subset(all_roots, overlap=overlap, n_show=n_show)]
    nodes = yield from graph_program(shown, full, **graph)
    return full, all_roots, confs, shown, nodes


def _sag_group(model, images_raw: Sequence[np.ndarray], label_index: int, image_indices: Sequence[int],
               saliency: Sequence | None, *, method: str = "igos", method_params: dict | None = None, grid=None,
               beam_width: int = 3, n_successors: int = 15, root_threshold: float = 0.9, max_roots: int = 10,
               overlap: int = 1, n_show: int = 3, node_threshold: float = 0.4, fill: str = "zero",
               max_children: int = 3, max_nodes: int = 200, max_root_size: int | None = None,
               skip_supersets: bool = True, fill_sigma: float | None = None, batch_size: int | None = None,
               cancel=None) -> list[SagResult]:
    """SAGs of a group of same-size harmonised images, their saliency maps and model calls batched together."""
    x = model.preprocess(np.stack([np.asarray(im) for im in images_raw]))
    h, w = x.shape[-2:]
    grid = grid_for((h, w), grid)
    t_sal = 0.0
    if saliency is None:
        t0 = time.perf_counter()
        saliency = _saliency_maps(model, x, label_index, method, method_params, grid, fill)
        t_sal = (time.perf_counter() - t0) / len(x)
    maps = [np.asarray(m, dtype=np.float64) for m in saliency]
    for m in maps:
        if m.shape[-2:] != (h, w):
            raise ValueError(f"saliency map shape {m.shape} does not match the image {(h, w)}")
    t0 = time.perf_counter()
    batch_size = int(batch_size or images_per_pass(x.device))
    scorers = [SagScorer(model, x[i:i + 1], label_index, grid, fill=fill, batch_size=batch_size,
                         fill_sigma=fill_sigma, cancel=cancel) for i in range(len(x))]
    search = dict(beam_width=beam_width, n_successors=n_successors, root_threshold=root_threshold,
                  max_roots=max_roots, max_root_size=max_root_size, skip_supersets=skip_supersets)
    graph = dict(node_threshold=node_threshold, max_children=max_children, max_nodes=max_nodes)
    programs = [_image_program(grid[0] * grid[1], np.argsort(-patch_saliency(m, grid), kind="stable"), search,
                               overlap, n_show, graph) for m in maps]
    outcomes = run_programs(programs, scorers, batch_size, cancel)
    seconds = (time.perf_counter() - t0) / len(x)
    params = dict(method=method, method_params=method_params, **search, overlap=overlap, n_show=n_show, **graph, fill=fill)
    return [SagResult(image_index=int(i), label=int(label_index), grid=tuple(grid), full_confidence=float(full),
                      roots=shown, nodes=nodes, n_forwards=sc.n_forwards, all_roots=all_roots,
                      root_confidences=[float(c) for c in confs], n_batches=sc.n_batches, seconds=seconds,
                      saliency_seconds=t_sal, params=params)
            for i, sc, (full, all_roots, confs, shown, nodes) in zip(image_indices, scorers, outcomes)]


def sag_for_image(model, image_raw, label_index: int, *, saliency=None, method: str = "igos",
                  image_index: int = 0, **kw) -> SagResult:
    """Structured attention graph of one harmonised image for one label.

    Parameters
    ----------
    model : LoadedModel
    image_raw : numpy.ndarray, (H, W, C) uint8
        Raw pixels in the **harmonised** (left-eye) frame: mirror right eyes before calling.
    label_index : int
        Output explained.
    saliency : numpy.ndarray, (H, W), optional
        Heuristic map (higher = more important). When None it is computed with ``method``.
    method : str
        Registered saliency method for the heuristic (default ``"igos"``, methods.md §2.3; I-GOS returns
        ``1 − mask``, so higher is more salient as everywhere else).
    method_params : dict, optional
        Method parameters; for I-GOS they override :data:`IGOS_SAG_PARAMS` (official SAG values) and the mask grid
        (the SAG grid) and baseline (the SAG fill, blur for ``"impute"``).
    grid : (int, int), optional
        ``(rows, cols)``; default from the aspect ratio (:func:`grid_for`: 6 × 8 for 384 × 512, 7 × 7 officially).
    beam_width, n_successors, root_threshold, max_roots, max_root_size, skip_supersets
        Beam search (:func:`beam_search_program`; official 3, 15, 0.9, 10, all patches, False).
    overlap, n_show
        Diverse subset (:func:`diverse_subset`; official 1, 3).
    node_threshold, max_children, max_nodes
        Graph (:func:`graph_program`; official 0.4, 3 literals).
    fill : str
        Value of hidden pixels (:mod:`napari_global_xai.fills`): ``"zero"`` (default, 0 in normalised space = the
        training mean) — the official code uses black, available as ``"black"``.
    fill_sigma : float, optional
        Blur width for ``fill="blur"``.
    batch_size : int, optional
        Patch sets per forward (default :func:`~napari_global_xai.batching.images_per_pass`).
    image_index : int
        Stored in the result.
    cancel : callable() -> bool, optional

    Returns
    -------
    SagResult

    Notes
    -----
    Follows methods.md §2.6 (official code). Adaptations: grid from the aspect ratio instead of 7 × 7; hard
    (nearest) patch masks instead of bilinear upsampling; confidence = sigmoid probability for multi-label cards
    (softmax for multi-class, as officially); the fill is any project fill, default zero in normalised space instead
    of black; any registered saliency method or a given map may replace I-GOS; the beam keeps exactly
    ``beam_width`` states, merges duplicate successors and (``skip_supersets``) does not re-minimise successors
    containing a known root; redundant-patch removal and graph children are scored in
    batches (greedy best-first removal; children = the ``max_children`` most confident one-patch removals); all
    model calls are batched and cached per patch set. Relative confidence = confidence / full-image confidence.
    """
    maps = None if saliency is None else [saliency]
    result = _sag_group(model, [image_raw], label_index, [image_index], maps, method=method, **kw)[0]
    if saliency is not None:
        result.params["method"] = "given"
    return result


def run_sag(model, images, label_index: int, indices: Sequence[int], progress: Callable | None = None,
            cancel: Callable | None = None, *, laterality: Sequence[str] | None = None,
            saliency_maps=None, images_together: int | None = None, **kw) -> list[SagResult]:
    """SAGs of several images of a stack for one label, ``images_together`` at a time.

    The images of a group share every model call: their heuristic maps are computed in one batched call of the
    saliency method, and their searches run in lockstep (:func:`run_programs`), so each round's patch sets of all
    images go through the model together. Results equal :func:`sag_for_image` per image (up to float rounding of
    batched convolutions); ``seconds`` and ``saliency_seconds`` are the group's wall time shared evenly.

    Parameters
    ----------
    model : LoadedModel
    images : array-like, (n, H, W, C)
        Raw pixels, harmonised unless ``laterality`` is given.
    label_index : int
    indices : sequence of int
        Images to explain.
    progress : callable(done, total), optional
        Called after each group.
    cancel : callable() -> bool, optional
        Checked between groups and between batches; raises :class:`~napari_global_xai.batching.Cancelled`, whose
        ``partial`` attribute holds the results of the groups finished before.
    laterality : sequence of str, optional
        Per stack image; images with ``"R"`` are mirrored left-right (stored right eyes → left-eye frame).
    saliency_maps : mapping or sequence, optional
        ``saliency_maps[i]`` is the heuristic map of stack image ``i`` (harmonised frame).
    images_together : int, optional
        Images per group (default :func:`~napari_global_xai.batching.images_per_pass` of the model's device).
    **kw
        Passed to :func:`sag_for_image`.

    Returns
    -------
    list of SagResult
    """
    out: list[SagResult] = []
    indices = [int(i) for i in indices]
    group = max(1, int(images_together or images_per_pass(model.device)))
    for start in range(0, len(indices), group):
        chunk = indices[start:start + group]
        try:
            if cancel is not None and cancel():
                raise Cancelled(f"cancelled after {start} of {len(indices)} images")
            out.extend(_sag_chunk(model, images, label_index, chunk, laterality, saliency_maps, cancel, kw))
        except Cancelled as exc:
            exc.partial = out  # the finished groups stay usable
            raise
        if progress is not None:
            progress(len(out), len(indices))
    return out


def _sag_chunk(model, images, label_index, chunk, laterality, saliency_maps, cancel, kw) -> list[SagResult]:
    """One group of :func:`run_sag`: mirror right eyes, gather given maps, search the images together."""
    raw = []
    for i in chunk:
        img = np.asarray(images[i])
        if laterality is not None and str(laterality[i]).upper().startswith("R"):
            img = img[:, ::-1]
        raw.append(img)
    maps = None if saliency_maps is None else [saliency_maps[i] for i in chunk]
    results = _sag_group(model, raw, label_index, chunk, maps, cancel=cancel, **kw)
    if maps is not None:
        for r in results:
            r.params["method"] = "given"
    return results


# ---------------------------------------------------------------------------------------------------- read-outs


def _key(s: frozenset) -> str:
    return ",".join(str(p) for p in sorted(s))


def sag_stack_summary(results: Sequence[SagResult], which: str = "roots") -> dict:
    """How often root sets and patches occur across a stack (beyond the paper; valid because images are aligned).

    Parameters
    ----------
    results : sequence of SagResult
        One per image, same label and grid (typically images positive for the label).
    which : {"roots", "all_roots"}
        The shown (diverse) roots or every root found.

    Returns
    -------
    dict
        ``n_images``; ``grid``; ``root_sets``: list of ``{"patches": [...], "count", "frequency"}`` sorted by count
        (frequency = share of images having that exact root); ``patch_frequency``: ``(rows·cols,)`` share of images
        with the patch in any of their roots; ``heatmap``: the same as a ``(rows, cols)`` array;
        ``top_patches``: patch indices by decreasing frequency.
    """
    if not results:
        raise ValueError("no SAG results to summarise")
    grid = tuple(results[0].grid)
    if any(tuple(r.grid) != grid for r in results):
        raise ValueError("all results must share one patch grid")
    n_p = grid[0] * grid[1]
    counts: dict[frozenset, int] = {}
    patch = np.zeros(n_p)
    for r in results:
        roots = getattr(r, which)
        for s in dict.fromkeys(roots):
            counts[s] = counts.get(s, 0) + 1
        used = set().union(*roots) if roots else set()
        for p in used:
            patch[p] += 1
    n = len(results)
    freq = patch / n
    sets = sorted(counts.items(), key=lambda t: (-t[1], sorted(t[0])))
    return {
        "n_images": n,
        "grid": list(grid),
        "root_sets": [{"patches": sorted(s), "count": c, "frequency": c / n} for s, c in sets],
        "patch_frequency": freq,
        "heatmap": freq.reshape(grid),
        "top_patches": [int(p) for p in np.argsort(-freq, kind="stable")],
    }


def to_json(result: SagResult) -> dict:
    """A JSON-ready dict of a :class:`SagResult` (patch sets as sorted lists)."""
    return {
        "image_index": result.image_index,
        "label": result.label,
        "grid": list(result.grid),
        "full_confidence": result.full_confidence,
        "roots": [sorted(s) for s in result.roots],
        "all_roots": [sorted(s) for s in result.all_roots],
        "root_confidences": list(result.root_confidences),
        "nodes": [{"patches": sorted(n.patches), "confidence": n.confidence, "relative": n.relative,
                   "children": list(n.children)} for n in result.nodes],
        "n_forwards": result.n_forwards,
        "n_batches": result.n_batches,
        "seconds": result.seconds,
        "saliency_seconds": result.saliency_seconds,
        "params": {k: (v if not isinstance(v, tuple) else list(v)) for k, v in result.params.items()},
    }


def _node_levels(result: SagResult, max_levels: int) -> list[list[int]]:
    n_roots = len(result.roots)
    levels = [list(range(n_roots))]
    seen = set(levels[0])
    while len(levels) < max_levels:
        nxt = []
        for i in levels[-1]:
            for c in result.nodes[i].children:
                if c not in seen:
                    seen.add(c)
                    nxt.append(c)
        if not nxt:
            break
        levels.append(nxt)
    return levels


def draw_sag_figure(fig, result: SagResult, image_rgb, *, max_levels: int = 3, max_per_row: int = 6,
                    dim: float = 0.25) -> dict:
    """Draw the SAG into a matplotlib figure the caller owns (a file's Agg canvas, or a dock's Qt canvas).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    result, image_rgb, max_levels, max_per_row, dim
        As in :func:`draw_sag`.

    Returns
    -------
    dict
        ``{axes: node index}`` of every drawn node, so an interactive canvas can tell which node was clicked.
    """
    from matplotlib.patches import Rectangle

    img = np.asarray(image_rgb)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32)
    img = img / max(float(np.percentile(img, 99.5)), 1e-6)  # stretch: UWF pseudo-colour is dark
    h, w = img.shape[:2]
    rows, cols = result.grid
    masks = patch_masks((h, w), result.grid)
    re = np.round(np.linspace(0, h, rows + 1)).astype(int)
    ce = np.round(np.linspace(0, w, cols + 1)).astype(int)
    levels = [lv[:max_per_row] for lv in _node_levels(result, max_levels)] if result.nodes else [[]]
    ncol = max(1, max(len(lv) for lv in levels))
    ncol = max(ncol, 2)  # a lone root still gets a readable panel
    nodes = {}
    for li, lv in enumerate(levels):
        for j in range(ncol):
            ax = fig.add_subplot(len(levels), ncol, li * ncol + j + 1)
            ax.set_axis_off()
            if j >= len(lv):
                continue
            node = result.nodes[lv[j]]
            nodes[ax] = lv[j]
            keep = masks[list(node.patches)].any(axis=0) if node.patches else np.zeros((h, w), bool)
            shown = img * np.where(keep, 1.0, dim)[..., None]
            ax.imshow(np.clip(shown, 0, 1), interpolation="nearest")
            for p in node.patches:
                r, c = divmod(p, cols)
                ax.add_patch(Rectangle((ce[c] - 0.5, re[r] - 0.5), ce[c + 1] - ce[c], re[r + 1] - re[r],
                                       fill=False, edgecolor="yellow", linewidth=0.6))
            kind = "root" if li == 0 else f"−{li}"
            ax.set_title(f"{kind}: {100 * node.relative:.0f} %", fontsize=8)
    fig.suptitle(f"SAG image {result.image_index}, label {result.label}, p(full) = {result.full_confidence:.3f}; "
                 "% = confidence relative to the full image", fontsize=9, wrap=True)
    return nodes


def draw_sag(result: SagResult, image_rgb, path, *, max_levels: int = 3, max_per_row: int = 6, dim: float = 0.25,
             dpi: int = 110) -> None:
    """Draw the SAG: the root row, then rows of children (one patch fewer per row), as PNG, SVG or PDF.

    Each node shows the image with non-selected patches dimmed to ``dim`` × intensity (official: 10 %; 25 % here so
    the anatomy stays readable on dark UWF images), the
    selected patches outlined, and the relative confidence in % as title. Written atomically
    (:func:`~napari_global_xai.io_utils.atomic_path`) with matplotlib's Agg canvas (no pyplot, no GUI); the drawing
    itself is :func:`draw_sag_figure`.

    Parameters
    ----------
    result : SagResult
    image_rgb : numpy.ndarray, (H, W) or (H, W, 3)
        The image in the harmonised frame (same as given to :func:`sag_for_image`).
    path : str or os.PathLike
        Output file; its suffix picks the format (``.png``, ``.svg``, ``.pdf``).
    max_levels : int
        Rows drawn (roots + ``max_levels − 1`` child levels).
    max_per_row : int
        Nodes drawn per row.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .io_utils import atomic_path

    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"{path}: SAG figures are written as {', '.join(FIGURE_FORMATS)} (from the file suffix)")
    h, w = np.asarray(image_rgb).shape[:2]
    levels = [lv[:max_per_row] for lv in _node_levels(result, max_levels)] if result.nodes else [[]]
    ncol = max(2, max(len(lv) for lv in levels))
    fig = Figure(figsize=(3.6 * ncol, (3.6 * h / w + 0.5) * len(levels) + 0.3), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    draw_sag_figure(fig, result, image_rgb, max_levels=max_levels, max_per_row=max_per_row, dim=dim)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt)
