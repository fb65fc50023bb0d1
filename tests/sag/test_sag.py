"""Structured Attention Graphs on the demo model and planted synthetic truth (arcade_lesion: two sufficient regions)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from napari_global_xai.batching import Cancelled
from napari_global_xai.config import SagConfig
from napari_global_xai.control import RunControl
from napari_global_xai.models.card import DEMO_CARD_PATH

from _tolerance import float32_atol, forward_terms

SEED = 0
BOTH = [0, 36, 40]  # seed-0 eval images with arcade lesions in both arcades (checked again below)
SINGLE = [1, 12]  # seed-0 eval images with one arcade lesion (inferior, superior)
CONFIG = SagConfig(method="gradcam", fill="blur", max_root_size=4)  # cheap heuristic, blur fill; roots <= 4 patches


def _confidence_atol(model, images):
    """Tolerance between two float32 computations of the demo model's sigmoid confidences on blur-filled copies of
    ``images`` (tests/_tolerance.py): its forward pass (forward_terms) at the scale of its logits on the images
    (a blend of an image and its blur is assumed no larger), after the blend (2) and the blur's two separable passes
    (2 × (2·ceil(3σ) + 1)); a sigmoid moves by at most a quarter of its logit's change."""
    from napari_global_xai.perturb.fills import default_sigma

    x = model.preprocess(images)
    with torch.no_grad():
        logits = model.module(x)
    blur = 2 * (2 * int(np.ceil(3 * default_sigma(x.shape[-2:]))) + 1)
    return float32_atol(float(logits.abs().max()) / 4, forward_terms(model.module) + 2 + blur)


@pytest.fixture(scope="module")
def setup():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    from napari_global_xai.data.synthetic import generate_stack, region_masks
    from napari_global_xai.models.loading import load_model
    from napari_global_xai.sag import sag_for_image

    model = load_model(DEMO_CARD_PATH, device="cpu")
    label = model.labels.index("arcade_lesion")
    rm = region_masks()
    cases = []
    for i in BOTH + SINGLE:
        st = generate_stack(1, seed=SEED, split="eval", start=i)
        if not st.labels[0, label]:
            continue
        les = st.lesion_masks[0] == label + 1
        sup, inf = bool((les & rm["superior_arcade"]).any()), bool((les & rm["inferior_arcade"]).any())
        img = np.ascontiguousarray(st.aligned("left").get(np.arange(1))[0])
        res = sag_for_image(model, img, label, CONFIG, image_index=i)
        cases.append(dict(index=i, sup=sup, inf=inf, image=img, result=res))
    yield model, label, rm, cases
    torch.set_num_threads(before)


def _edges(n, size):
    return np.round(np.linspace(0, size, n + 1)).astype(int)


def _keep(patches, grid, hw):
    re, ce = _edges(grid[0], hw[0]), _edges(grid[1], hw[1])
    keep = np.zeros(hw, bool)
    for p in patches:
        r, c = divmod(p, grid[1])
        keep[re[r] : re[r + 1], ce[c] : ce[c + 1]] = True
    return keep


def _regions_hit(root, grid, rm):
    keep = _keep(root, grid, rm["superior_arcade"].shape)
    return {name for name in ("superior_arcade", "inferior_arcade") if (keep & rm[name]).any()}


def test_grid_from_aspect_ratio():
    from napari_global_xai.sag import grid_for, patch_masks

    assert grid_for((384, 512)) == (6, 8)
    assert grid_for((224, 224)) == (7, 7)
    assert grid_for((384, 512), (4, 4)) == (4, 4)
    m = patch_masks((384, 512), (6, 8))
    assert m.shape == (48, 384, 512) and (m.sum(0) == 1).all()


def test_diverse_subset_is_largest_low_overlap_set():
    from napari_global_xai.sag import diverse_subset

    roots = [frozenset({1, 2, 3}), frozenset({2, 3, 4}), frozenset({3, 5}), frozenset({6}), frozenset({1, 7})]
    # {1,2,3}&{2,3,4} share 2 -> incompatible; best: {1,2,3},{3,5},{6} or with {1,7}: size 4 possible?
    idx = diverse_subset(roots, overlap=1, n_show=10)
    assert len(idx) == 4 and all(len(roots[a] & roots[b]) <= 1 for a in idx for b in idx if a < b)
    assert len(diverse_subset(roots, overlap=1, n_show=3)) == 3
    assert diverse_subset([], 1, 3) == []


def test_roots_lie_in_the_lesion_arcades(setup):
    _model, _label, rm, cases = setup
    both = [c for c in cases if c["sup"] and c["inf"]]
    single = [c for c in cases if c["sup"] != c["inf"]]
    assert len(both) >= 2 and len(single) >= 1
    for c in both:
        res = c["result"]
        hits = [_regions_hit(r, res.grid, rm) for r in res.roots]
        assert len(res.roots) >= 2, (c["index"], res.roots)
        # two roots in different arcades: one touching only the superior, another touching the inferior one
        assert any("superior_arcade" in h for h in hits) and any("inferior_arcade" in h for h in hits), hits
        assert any(h == {"superior_arcade"} for h in hits) or any(h == {"inferior_arcade"} for h in hits)
    for c in single:
        region = "superior_arcade" if c["sup"] else "inferior_arcade"
        res = c["result"]
        assert res.roots
        for r in res.roots:
            assert region in _regions_hit(r, res.grid, rm), (c["index"], region, sorted(r))


def test_roots_are_sufficient_and_minimal_independent_forward(setup):
    from napari_global_xai.perturb.fills import make_fill

    model, label, _rm, cases = setup
    for c in cases[:3]:
        res = c["result"]
        img = c["image"][..., model.card.input_channels].astype(np.float32) / model.card.pixel_scale
        x = torch.from_numpy(img).permute(2, 0, 1)[None]
        x = (x - torch.tensor(model.card.mean).view(1, -1, 1, 1)) / torch.tensor(model.card.std).view(1, -1, 1, 1)
        fill = make_fill("blur", x)  # same fill as CONFIG (default sigma)
        sets = [frozenset(range(48))]
        for r in res.roots:
            sets.append(r)
            sets.extend(r - {p} for p in r)
        keep = torch.from_numpy(np.stack([_keep(s, res.grid, x.shape[-2:]) for s in sets])[:, None].astype(np.float32))
        with torch.no_grad():
            probs = torch.sigmoid(model.module(x * keep + fill * (1 - keep)))[:, label].numpy()
        full = probs[0]
        # an independent forward against SAG's batches: float32 rounding, derived (was < 1e-4)
        assert abs(full - res.full_confidence) <= _confidence_atol(model, c["image"][None])
        thr = 0.9 * full
        k = 1
        for r in res.roots:
            assert probs[k] > thr - 1e-4, (sorted(r), probs[k], thr)
            for j in range(len(r)):
                if len(r) > 1:
                    assert probs[k + 1 + j] <= thr + 1e-4, "a root keeps a redundant patch"
            k += 1 + len(r)
        node = res.nodes[0]
        assert node.patches == res.roots[0] and abs(node.relative - node.confidence / full) < 1e-4


def test_graph_batched_forwards_and_json(setup, tmp_path):
    from napari_global_xai.sag import draw_sag, to_json

    _model, _label, _rm, cases = setup
    res = cases[0]["result"]
    assert res.n_forwards > 0 and res.n_batches < res.n_forwards  # several patch sets per model call
    for node in res.nodes:
        for ch in node.children:
            child = res.nodes[ch]
            assert len(child.patches) == len(node.patches) - 1 and child.patches < node.patches
        if node.children:
            assert node.relative > res.params["node_threshold"]
    d = json.loads(json.dumps(to_json(res)))
    assert d["grid"] == [6, 8] and len(d["roots"]) == len(res.roots)
    out = tmp_path / "sag.png"
    draw_sag(res, cases[0]["image"], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stack_summary_peaks_in_the_arcades(setup):
    from napari_global_xai.sag import sag_stack_summary

    _model, _label, rm, cases = setup
    summary = sag_stack_summary([c["result"] for c in cases])
    assert summary["heatmap"].shape == (6, 8) and summary["n_images"] == len(cases)
    freq = summary["patch_frequency"]
    used = [p for p in summary["top_patches"] if freq[p] > 0]
    top = used[:4]
    hits = [_regions_hit({p}, (6, 8), rm) for p in top]
    assert all(hits), (top, hits, freq[top])  # the most frequent root patches all lie on an arcade
    assert {"superior_arcade", "inferior_arcade"} <= set().union(*hits), (top, hits)
    # each arcade has a patch used by at least 40 % of the positives (the two alternative explanations)
    for region in ("superior_arcade", "inferior_arcade"):
        assert max(freq[p] for p in range(48) if region in _regions_hit({p}, (6, 8), rm)) >= 0.4
    assert summary["root_sets"][0]["count"] >= summary["root_sets"][-1]["count"]


def test_run_sag_mirrors_and_cancels(setup):
    from napari_global_xai.sag import run_sag

    model, label, _rm, cases = setup
    c = cases[0]
    images = np.stack([c["image"][:, ::-1], c["image"]])
    sal = [np.ones(c["image"].shape[:2])] * 2
    done = []
    res = run_sag(
        model,
        images,
        label,
        [0],
        SagConfig(fill="blur", max_root_size=3, max_roots=2),
        control=RunControl(progress=lambda a, b, _stage: done.append((a, b))),
        laterality=["R", "L"],
        saliency_maps=sal,
    )
    assert (
        done == [(1, 1)]
        and res[0].image_index == 0
        and res[0].full_confidence == pytest.approx(c["result"].full_confidence, abs=_confidence_atol(model, images))
    )
    with pytest.raises(Cancelled):
        run_sag(model, images, label, [0, 1], control=RunControl(cancel=lambda: True), saliency_maps=sal)


def test_images_searched_together_match_each_image_alone(setup):
    """Lockstep search over several images (shared model calls) gives each image's own result, in fewer calls."""
    from napari_global_xai.sag import grid_for, run_sag, sag_for_image
    from napari_global_xai.sag.pipeline import _saliency_maps

    model, label, _rm, cases = setup
    images = np.stack([c["image"] for c in cases[:3]])  # three images: a lockstep of unequal searches, at 3/5 the cost
    x = model.preprocess(images)
    maps = _saliency_maps(model, x, label, "gradcam", None, grid_for(x.shape[-2:]), "blur")
    config = SagConfig(fill="blur", max_root_size=4)
    together_config = dataclasses.replace(config, images_together=len(images))
    together = run_sag(model, images, label, range(len(images)), together_config, saliency_maps=maps)
    alone = [
        sag_for_image(model, im, label, config, saliency=m, image_index=i)
        for i, (im, m) in enumerate(zip(images, maps))
    ]
    for t, a in zip(together, alone):
        assert t.image_index == a.image_index and t.params["method"] == "given"
        assert t.all_roots == a.all_roots and t.roots == a.roots
        assert [n.patches for n in t.nodes] == [n.patches for n in a.nodes]
        assert t.n_forwards == a.n_forwards  # the same patch sets were scored
        # shared calls against one image's own: float32 rounding, derived (was atol=1e-5)
        np.testing.assert_allclose(
            [n.confidence for n in t.nodes],
            [n.confidence for n in a.nodes],
            rtol=0,
            atol=_confidence_atol(model, images),
        )
    # every call serves all images still searching (measured: 26 calls together against 3 x 22 alone)
    calls_together = max(t.n_batches for t in together)
    assert calls_together < sum(a.n_batches for a in alone) / 2


def test_cancel_keeps_the_finished_groups(setup):
    from napari_global_xai.sag import run_sag

    model, label, _rm, cases = setup
    images = np.stack([c["image"] for c in cases[:3]])
    sal = [np.ones(images.shape[1:3])] * 3
    done = []
    with pytest.raises(Cancelled) as info:
        run_sag(
            model,
            images,
            label,
            [0, 1, 2],
            SagConfig(images_together=1, fill="blur", max_root_size=2, max_roots=1),
            control=RunControl(progress=lambda a, b, _stage: done.append(a), cancel=lambda: bool(done)),
            saliency_maps=sal,
        )
    assert [r.image_index for r in info.value.partial] == [0]  # the first group finished before the cancel
