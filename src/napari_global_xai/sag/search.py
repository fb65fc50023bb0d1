"""SAG search: beam search for minimal sufficient patch sets, their diverse subset, and the graph below them.

Each step is a *program* (a generator that yields the patch sets it needs scored and receives their confidences),
so the search never calls the model itself: :func:`run_programs` drives many images' programs in lockstep, each
round's patch sets of all images scored together by :func:`~napari_global_xai.sag.scorer.score_together`.
Follows the official code (repo viv92/structured-attention-graphs: ``search.py``,
``diverse_subset_selection.py``, ``patch_deletion_tree.py``), methods.md §2.6; adaptations are named per function.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np

from .result import SagNode

__all__ = [
    "Program",
    "run_programs",
    "minimise",
    "beam_search_roots",
    "beam_search_program",
    "diverse_subset",
    "build_graph",
    "graph_program",
    "image_program",
]

#: A search *program*: a generator that yields the patch sets it needs scored, receives their confidences (a list in
#: the same order) and finally returns its result. One program per image; :func:`run_programs` drives many images'
#: programs in lockstep so that one model call serves all of them, and :func:`_drive` runs one alone.
Program = Generator[list, list, object]


def _drive(program: Program, scorer):
    """Run one image's program, scoring its requests with ``scorer``; returns the program's result."""
    try:
        request = next(program)
        while True:
            request = program.send(scorer.score(request))
    except StopIteration as stop:
        return stop.value


def run_programs(programs: Sequence[Program], scorers: Sequence) -> list:
    """Drive several images' programs in lockstep; each round's requests of all images share batched forwards.

    Parameters
    ----------
    programs : sequence of Program
        One per image.
    scorers : sequence of SagScorer
        One per program (those of one :meth:`~napari_global_xai.sag.scorer.SagScorer.group` share forwards, batch
        size and cancel).

    Returns
    -------
    list
        The programs' results in order. They equal driving each program alone with its scorer (the same sets are
        scored; only the batch composition differs, up to float rounding).
    """
    from .scorer import score_together  # torch: imported only when a model is called

    results: list = [None] * len(programs)
    pending: dict[int, list] = {}
    for i, program in enumerate(programs):
        try:
            pending[i] = [frozenset(s) for s in next(program)]
        except StopIteration as stop:
            results[i] = stop.value
    while pending:
        scored = score_together([(scorers[i], sets) for i, sets in pending.items()])
        for i, probs in zip(list(pending), scored):
            try:
                pending[i] = [frozenset(s) for s in programs[i].send(probs)]
            except StopIteration as stop:
                results[i] = stop.value
                del pending[i]
    return results


def minimise(root: frozenset, threshold: float) -> Program:
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


def beam_search_roots(scorer, order: np.ndarray, full_confidence: float, **kw) -> tuple[list[frozenset], list[float]]:
    """Beam search for minimal sufficient patch sets of one image; see :func:`beam_search_program`."""
    return _drive(beam_search_program(scorer.n_patches, order, full_confidence, **kw), scorer)


def beam_search_program(
    n_patches: int,
    order: np.ndarray,
    full_confidence: float,
    *,
    beam_width: int = 3,
    n_successors: int = 15,
    root_threshold: float = 0.9,
    max_roots: int = 10,
    max_root_size: int | None = None,
    skip_supersets: bool = True,
) -> Program:
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
                root = yield from minimise(s, threshold)
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


def build_graph(scorer, roots: Sequence[frozenset], full_confidence: float, **kw) -> list[SagNode]:
    """The SAG of one image; see :func:`graph_program`."""
    return _drive(graph_program(roots, full_confidence, **kw), scorer)


def graph_program(
    roots: Sequence[frozenset],
    full_confidence: float,
    *,
    node_threshold: float = 0.4,
    max_children: int = 3,
    max_nodes: int = 200,
) -> Program:
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


def image_program(n_patches: int, order: np.ndarray, search: dict, overlap: int, n_show: int, graph: dict) -> Program:
    """One image's whole SAG as a program: full confidence, beam search, diverse subset, graph."""
    (full,) = yield [frozenset(range(n_patches))]
    all_roots, confs = yield from beam_search_program(n_patches, order, full, **search)
    shown = [all_roots[i] for i in diverse_subset(all_roots, overlap=overlap, n_show=n_show)]
    nodes = yield from graph_program(shown, full, **graph)
    return full, all_roots, confs, shown, nodes
