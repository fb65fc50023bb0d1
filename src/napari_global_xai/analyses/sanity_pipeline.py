"""The sanity check's pipeline: :func:`run_sanity` (a stack and a model in, a
:class:`~napari_global_xai.analyses.sanity_result.SanityResult` out), called by ``global-xai sanity`` and the *Sanity
check* dock.

Follows the run contract of :mod:`napari_global_xai.control`: takes a :class:`~napari_global_xai.control.RunControl`,
returns a result dataclass with ``.cancelled`` (what finished before a cancel stays usable and is written), checks its
output folder before any long work (:func:`~napari_global_xai.analyses.explain_inputs.check_out_dir`) and writes its
files atomically. Text for a terminal is the CLI's job.
"""

from __future__ import annotations

import numpy as np

from ..analysis_config import SanityConfig
from ..control import RunControl
from .explain_inputs import check_out_dir

__all__ = ["run_sanity"]


def run_sanity(
    stack,
    model,
    config: SanityConfig | None = None,
    *,
    out_dir=None,
    control: RunControl | None = None,
):
    """Model-parameter randomisation check of saliency methods on a sample of a stack.

    Parameters
    ----------
    stack : AlignedStack
    model : LoadedModel
    model : LoadedModel
        Any format (nn.Module, TorchScript, ``torch.export`` graph): layers are reached through the layer taps.
    config : SanityConfig, optional
        The methods to check (each an ExplainConfig with its parameters and post-processing), the images, the label
        explained, the layer grouping, both randomisation modes, the seed, the bootstrap and the field-of-view mask;
        default ``SanityConfig()``.
    out_dir : path, optional
        Writes the sanity folder (:data:`~napari_global_xai.analyses.sanity_result.FILES`: ``sanity.json``,
        ``sanity.csv``, ``sanity.png``), also after a cancel.
    control : RunControl, optional
        Progress (stage ``"sanity"``) and cancel.

    Returns
    -------
    SanityResult
        With ``cancelled=True`` and the randomisation steps finished so far after a cancel.

    Raises
    ------
    Cancelled
        Cancelled before the original maps were complete (nothing to compare with).
    """
    from ..saliency.engine import predict_probabilities
    from .sanity import run_sanity_check

    config = config or SanityConfig()
    control = control or RunControl()
    out = check_out_dir(out_dir)
    model.check_input(stack.shape)
    from ..data.conform import model_frame

    frame_stack = model_frame(stack, model.card)
    indices = config.images
    if indices is None:
        indices = np.unique(np.linspace(0, len(stack) - 1, num=min(config.n_images, len(stack))).round().astype(int))
    indices = np.asarray(indices, int)
    if len(indices) == 0 or indices.min() < 0 or indices.max() >= len(stack):
        raise ValueError(f"image indices must lie in 0..{len(stack) - 1}")
    images = frame_stack.get(indices)
    label = config.label
    if label is not None:
        if label not in model.labels:
            raise ValueError(f"unknown label {label!r}; the model's labels are {model.labels}")
        targets = np.full(len(indices), model.labels.index(label))
    else:
        targets = predict_probabilities(model, images).argmax(axis=1)
    from .regions import field_of_view

    try:
        mask = field_of_view(images.mean(axis=0))[0] if config.field_of_view_only else None
    except ValueError:  # blank images: compare every pixel
        mask = None
    result = run_sanity_check(
        model,
        images,
        list(config.methods),
        targets,
        depth=config.depth,
        independent=config.independent,
        seed=config.seed,
        mask=mask,
        n_boot=config.n_boot,
        control=control,
    )
    result.image_indices = [int(i) for i in indices]
    result.image_ids = [stack.image_ids[i] for i in indices]
    if out is not None:
        result.write(out)
    return result
