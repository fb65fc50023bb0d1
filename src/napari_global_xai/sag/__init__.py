"""Structured Attention Graphs (SAG): several minimal patch sets that each keep the model confident.

Shitole, Li, Kahng, Tadepalli, Fern (NeurIPS 2021), following the official code (repo
viv92/structured-attention-graphs, ``search.py``, ``diverse_subset_selection.py``, ``patch_deletion_tree.py``) as
summarised in methods.md §2.6, adapted to aligned ultra-widefield retina images and to this project's models, fills,
saliency methods and batching. Qt-free: numpy/torch in, dataclasses out.

Per image and label (:func:`sag_for_image`; settings in :class:`~napari_global_xai.config.SagConfig`):

1. a patch grid (default 6 × 8 for 384 × 512, from the aspect ratio) — :mod:`.grid`;
2. a saliency map (I-GOS by default, methods.md §2.3) averaged per patch ranks the patches — :mod:`.pipeline`;
3. beam search over revealed patch sets finds *roots*: minimal sets whose confidence stays above
   ``root_threshold`` × the full image's confidence — :mod:`.search`;
4. a diverse subset of the roots (pairwise overlap ≤ ``overlap`` patches, at most ``n_show``) — :mod:`.search`;
5. the graph: each shown root and its children (one patch removed), expanded while the relative confidence stays
   above ``node_threshold`` — :mod:`.search`.

Patch sets are scored by :mod:`.scorer` (batched model calls, each distinct set once, images of a group in
lockstep). Beyond the paper, :func:`sag_stack_summary` (:mod:`.summary`) counts root sets and patches over a stack
(aligned images make patch positions comparable across images); :mod:`.drawing` draws a graph into a matplotlib
figure or a file; :func:`run_sag_pipeline` runs a stack and writes the outputs.
"""

from ..config import FIGURE_FORMATS
from .drawing import draw_sag, draw_sag_figure
from .grid import grid_for, patch_edges, patch_masks, patch_saliency
from .pipeline import IGOS_SAG_PARAMS, run_sag, run_sag_pipeline, sag_for_image
from .result import SagNode, SagResult, SagRunResult
from .scorer import SagScorer, score_together
from .search import beam_search_program, beam_search_roots, build_graph, diverse_subset, graph_program, run_programs
from .summary import sag_stack_summary, to_json

__all__ = [
    "SagNode",
    "SagResult",
    "SagRunResult",
    "draw_sag_figure",
    "grid_for",
    "patch_edges",
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
    "run_sag_pipeline",
    "sag_stack_summary",
    "to_json",
    "draw_sag",
    "IGOS_SAG_PARAMS",
    "FIGURE_FORMATS",
]
