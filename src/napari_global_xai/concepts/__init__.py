"""XNN concept explanations (Qi, Khorram, Li; arXiv 1709.05360) with global concept maps over aligned anatomy.

An *explanation network* embeds the features of one layer (the card's CAM layer) into ``K`` non-negative concepts
from which the model's predictions are rebuilt (faithfulness), trained as a sparse reconstruction autoencoder with a
pull-away term. Each concept then gets image-wise maps (Grad-CAM of the concept activation on the layer), a global
map over the mean anatomy (aligned images make the image-wise maps comparable pixel by pixel), its weight in each
label's prediction and the images that activate it most.

Pipeline (:func:`run_concepts`): features (one forward per image) → training (features only, cheap) → concept maps
(one more forward per image; the gradients stop at the layer, so no backward through the model) → outputs.

The package: :mod:`.network` (the explanation network and its training; its settings are
:class:`~napari_global_xai.analysis_config.ConceptConfig`), :mod:`.pipeline` (features, concept maps,
:func:`run_concepts`), :mod:`.anatomy` (the concept maps against the mean anatomy), :mod:`.result`
(:class:`ConceptResult` and its folder: the file names, ``write``, ``open``) and :mod:`.report` (its report
section); the public names are re-exported here.

Notes
-----
Only the paper's abstract and the official repository's README could be read (methods.md §2.2), so every detail
below is a documented choice:

* **Features**: the layer's output pooled per channel by spatial mean *and* spatial max, ``f = [mean A, max A]``
  (``2C`` values), centred over the stack and divided by **one layer-wide scale** (the RMS of the centred features),
  ``f̃ = (f − μ) / s``. The mean carries extent, the max small focal evidence (the demo head uses both); the paper
  embeds a fully connected layer, which a generic conv model does not name. Why one scale rather than standardising
  each feature (``feature_scale="feature"``, the first version): the regularisers below are not scale-invariant, and
  per-feature standardisation blew the near-constant spatial-mean channels (demo model: median std 0.12 against 1.9
  for the spatial max) up to the max channels' footing, so concepts were built from spatial means, whose maps are
  diffuse by construction (a spatially uniform gradient times every deviation in the image). One scale keeps the
  layer's own units, those the model's head reads: the demo model's peripheral_lesion logit draws 10.8 of its
  positives' logit change from the max half and 0.15 from the mean half; the first version's best peripheral
  concept drew +1.3 from the mean half.
* **Embedding**: ``z = relu(E f̃ + b)`` (one linear layer, ``K`` concepts). One layer keeps every concept a
  direction in feature space, so its image-wise map is CAM-style; ReLU keeps concepts non-negative (present/absent).
* **Prediction layer** (faithfulness): ``ŝ = V z + c`` rebuilds the model's logits; loss = mean squared error per
  label divided by that label's logit variance (labels weigh equally).
* **Sparsity**: ``λ_s · mean |z|``; **pull-away**: ``λ_p · mean_{k≠l} cos²(E_k, E_l)`` over the concept directions
  (rows of ``E``), as in EBGAN's pull-away term applied to the explanation bases; **feature reconstruction**: a
  linear decoder ``f̃ ≈ D z + d``, ``λ_r · MSE``. Defaults ``λ_s = 0.2, λ_p = 0.1, λ_r = 0.5`` (the paper's
  weights were not found); Adam, full batch, ``steps`` iterations, seeded initialisation.
* **Predictor sparsity** ``λ_v · mean_l Σ_k |V_lk|`` (default 0.05): the abstract's "predictions can be constructed
  from the *few* concepts" read as each label's logit being rebuilt from few concepts. Without it, the prediction
  layer is free to spread a label over several concepts and the concepts over several labels (a rotation of ``z``
  that ``V`` undoes fits equally well): on the demo sample the best peripheral concept also tracked the absence of
  disc swelling (AUROC 0.89 for peripheral_lesion, 0.30 for disc_swelling) and half its map's mass lay inside
  the annulus' inner edge (0.38 in the annulus).
  With it, each disease gets its own concept on every seed tried; 0.1 began to cost faithfulness on one seed of five.
* **Encoder decay** ``λ_e · mean_k ‖E_k‖²`` (default 0.03): ridge on the concept directions. A stack has fewer images
  than pooled features (the sample: 64 images, rank 63, 192 features), so directions of ``E`` outside the features'
  span leave every activation unchanged and are fixed only by the random initialisation, yet a concept map is the
  gradient along ``E``: the ridge term picks the minimum-norm encoder, whose maps follow what the stack varies in.
* **Image-wise concept map**: ``relu(Σ_c ∂z_k/∂A_c ⊙ (A_c − Ā_c))``, the gradient of the concept activation times
  the layer's deviation from its stack-mean map ``Ā`` (HiResCAM-style, element-wise, at feature resolution, then
  upsampled bilinearly like Grad-CAM). Both halves of the choice were measured on the demo model and sample: with
  Grad-CAM's spatially averaged gradient, or without subtracting ``Ā``, the maps of the concepts that carry a label
  put most of their mass on anatomy shared by every image (field-of-view rim, vessels; measured with per-feature
  standardisation); the deviation from the mean anatomy is what is specific to an image, which aligned images make
  well defined. Also measured and not taken: ``Σ relu(∂z/∂A)·relu(A − Ā)`` (excitatory evidence only) and rectifying
  only after summing the signed maps over the stack moved the periphery by −0.3 and +0.1–0.4 (area-share ratio),
  while the choices above moved it from 2.1 to 3.2 (``benchmarks/RESULTS.md``).
* **Global concept map**: the mean of the mass-normalised image-wise maps, each image weighted by its concept
  activation ``z_k`` (images without the concept do not dilute it).
* **Concept × label weight**: ``V_lk · mean_i z_ik``, the concept's mean contribution to the label's logit; the raw
  ``V`` is kept too.
* **Faithfulness**: per-label AUROC of ``ŝ`` against the labels, next to the model's own AUROC.
* **Dead concepts**: a concept active on no image after training (all-zero map) is dropped and counted
  (``ConceptResult.units``; ``ConceptConfig(prune_dead=False)`` keeps it); why not re-initialised:
  :func:`~.network.train_explanation_net`.
* **Where a concept lies** (:mod:`.anatomy`): the share of each global map's mass inside the field of view of the
  mean anatomy, and its region table (the regions of ``global-xai regions``, shares and enrichment inside the field
  of view) when the disc and fovea found on the mean anatomy are plausible.
* **Layer outputs** come through :class:`~napari_global_xai.models.taps.LayerTap`, so TorchScript and
  ``torch.export`` models work like ``nn.Module`` ones.
"""

from __future__ import annotations

from .network import ExplanationNet, train_explanation_net
from .pipeline import concept_image_maps, extract_features, run_concepts
from .result import ConceptResult

__all__ = [
    "ConceptResult",
    "ExplanationNet",
    "concept_image_maps",
    "extract_features",
    "run_concepts",
    "train_explanation_net",
]
