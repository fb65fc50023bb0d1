"""XNN concepts on the demo model and sample: planted-region concentration per training choice (issue #13).

Run:  cd benchmarks && PYTHONPATH=../src ../.venv/bin/python bench_concepts.py [--seeds 0 1 2 3 4] [--threads 1]

Prints, for each variant of the explanation network's training (the module Notes of
``napari_global_xai.concepts`` name the choices) and each seed: the best concept's global-map mass in each planted
region divided by the region's share of the image (the issue's criterion), and the largest per-label gap between the
model's AUROC and the concept model's. Then, for reference, two bounds on the peripheral annulus:

* ``lesion masks``: the ground-truth lesion masks of the positive images taken as image maps, average-pooled to the
  layer's grid (stride 16) and upsampled like a concept map: what a perfect map loses to the layer's resolution;
* ``model's own logit``: the model's peripheral_lesion logit mapped with the concept-map rule (demo head only).

And the default's ratios measured within the field of view (mass inside the field of view, area share of it).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

DISEASES = ["haemorrhage", "peripheral_lesion", "disc_swelling", "arcade_lesion"]
VARIANTS = {
    "before (per-feature scale, no penalties)": dict(
        feature_scale="feature", encoder_decay=0.0, predictor_sparsity=0.0
    ),
    "layer scale": dict(encoder_decay=0.0, predictor_sparsity=0.0),
    "layer scale + encoder decay": dict(predictor_sparsity=0.0),
    "layer scale + predictor L1": dict(encoder_decay=0.0),
    "per-feature scale + both penalties": dict(feature_scale="feature"),
    "default (layer scale + both penalties)": dict(),
}


def ratios(global_maps, regions, within=None):
    """Best concept's mass in each region / the region's area share (optionally both within a mask)."""
    out = {}
    for n in DISEASES:
        r = regions[n]
        if within is None:
            share, mass = r.mean(), global_maps[:, r].sum(axis=1)
        else:
            share = r[within].mean()
            mass = global_maps[:, r & within].sum(axis=1) / np.maximum(global_maps[:, within].sum(axis=1), 1e-30)
        out[n] = float((mass / share).max())
    return out


def lesion_ceiling(truth, stride=16):
    regions, out = truth["regions"], {}
    for code, n in enumerate(DISEASES, start=1):
        m = torch.from_numpy((truth["lesions"] == code).astype(np.float32))
        m = m[m.flatten(1).sum(1) > 0][:, None]
        up = F.interpolate(F.avg_pool2d(m, stride), size=m.shape[-2:], mode="bilinear", align_corners=False)
        up = (up / up.sum(dim=(2, 3), keepdim=True)).mean(dim=0)[0].numpy()
        out[n] = float(up[regions[n]].sum() / regions[n].mean())
    return out


def model_logit_map(model, stack, truth, label="peripheral_lesion"):
    """The model's own logit through the concept-map rule, averaged over the label's positives (demo head)."""
    from napari_global_xai.concepts.pipeline import _chunks, _concept_cams, _frame, forward_with_layer, layer_tap

    images = _frame(stack, model)
    j = model.labels.index(label)

    class Head:
        def concepts(self, f):
            return model.module.head(f)[:, j : j + 1]

    acts, tap = [], None
    for _, px in _chunks(images, 16):
        x = model.preprocess(px)
        tap = tap or layer_tap(model, None, x[:1])
        with torch.no_grad():
            acts.append(forward_with_layer(tap, x)[0].float())
    acts = torch.cat(acts)
    cams, _ = _concept_cams(acts, Head(), acts.mean(dim=0))
    pos = stack.labels.column(label).astype(bool)
    up = F.interpolate(cams[torch.from_numpy(pos)], size=stack.shape[1:3], mode="bilinear", align_corners=False)
    up = up.clamp_min(0) / up.clamp_min(0).sum(dim=(2, 3), keepdim=True).clamp_min(1e-30)
    g = up.mean(dim=0)[0].numpy()
    r = truth["regions"][label]
    return float(g[r].sum() / r.mean())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from napari_global_xai.analysis_config import ConceptConfig
    from napari_global_xai.concepts import run_concepts
    from napari_global_xai.data.synthetic import field_of_view_mask
    from napari_global_xai.models import load_model
    from napari_global_xai.samples import load_ground_truth, load_sample_stack

    model, stack, truth = load_model(None, device="cpu"), load_sample_stack(), load_ground_truth()
    fov = field_of_view_mask()
    print(
        f"torch threads {torch.get_num_threads()}; area share of the image: "
        + ", ".join(f"{n} {truth['regions'][n].mean():.3f}" for n in DISEASES),
        flush=True,
    )
    for name, kwargs in VARIANTS.items():
        for seed in args.seeds:
            t = time.perf_counter()
            res = run_concepts(stack, model, ConceptConfig(k=8, seed=seed, **kwargs))
            faith = res.faithfulness()
            gap = max(abs(v["model"] - v["concepts"]) for v in faith.values())
            best = ratios(res.global_maps, truth["regions"])
            line = f"{name:<42} seed {seed}: " + ", ".join(f"{n} {v:.1f}" for n, v in best.items())
            line += f"; max AUROC gap {gap:.3f} ({time.perf_counter() - t:.0f} s)"
            if not kwargs:
                in_fov = ratios(res.global_maps, truth["regions"], within=fov)
                line += "; within the field of view: " + ", ".join(f"{n} {v:.1f}" for n, v in in_fov.items())
            print(line, flush=True)
    print(
        "ceiling, lesion masks at the layer's resolution:",
        ", ".join(f"{n} {v:.2f}" for n, v in lesion_ceiling(truth).items()),
        "(exact masks: " + ", ".join(f"{n} {1 / truth['regions'][n].mean():.2f}" for n in DISEASES) + ")",
    )
    own = model_logit_map(model, stack, truth)
    print(f"model's own peripheral_lesion logit, concept-map rule, positives: {own:.2f}")


if __name__ == "__main__":
    main()
