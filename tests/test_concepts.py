"""XNN concepts: losses against their definitions, faithfulness, planted regions and the shortcut marker."""

import numpy as np
import pytest
import torch

from napari_global_xai.analysis_config import ConceptConfig
from napari_global_xai.concepts import ConceptResult, ExplanationNet, run_concepts, train_explanation_net
from napari_global_xai.concepts.network import _pull_away
from napari_global_xai.control import RunControl
from napari_global_xai.metrics import auroc
from napari_global_xai.models import DEMO_CARD_PATH, load_model

# tiny tensors: one torch thread (two threads on a busy 2-core machine wait on each other: 160 s instead of 1 s)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
DISEASES = ["haemorrhage", "peripheral_lesion", "disc_swelling", "arcade_lesion"]


def test_pull_away_term_is_the_mean_squared_cosine_of_distinct_bases():
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    # pairs (0,1): 0, (0,2): 1/2, (1,2): 1/2, each counted twice, over 3*2 ordered pairs
    assert float(_pull_away(e)) == pytest.approx((0 + 0.5 + 0.5) * 2 / 6)
    assert float(_pull_away(torch.eye(4))) == 0.0


def test_concepts_rebuild_a_linear_model_from_its_features():
    """Features whose logits are a linear function of them: the concept model's logits track the model's."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=(300, 10)).astype(np.float32)
    logits = f[:, :3] @ np.array([[2.0, 0, 0], [0, -1.5, 0], [0, 0, 1.0]], np.float32)
    net, losses, cancelled, _ = train_explanation_net(f, logits, ConceptConfig(k=6, steps=600, sparsity=0.01))
    with torch.no_grad():
        _, s_hat, _ = net(torch.from_numpy(f))
    corr = [np.corrcoef(s_hat[:, j].numpy(), logits[:, j])[0, 1] for j in range(3)]
    assert not cancelled and min(corr) > 0.97, corr
    assert set(losses) == {
        "faithfulness",
        "sparsity",
        "pull_away",
        "reconstruction",
        "predictor_sparsity",
        "encoder_decay",
        "total",
    }
    z = net.concepts(torch.from_numpy(f))
    assert (z >= 0).all()


def test_loss_terms_and_feature_scale_follow_their_definitions():
    """One step: the reported terms are those of the seeded initial network, recomputed here from the formulas."""
    rng = np.random.default_rng(3)
    f = (rng.normal(size=(30, 8)) * np.array([0.1, 3, 1, 1, 2, 0.5, 1, 1])).astype(np.float32)
    s = rng.normal(size=(30, 2)).astype(np.float32)
    cfg = ConceptConfig(k=3, steps=1, seed=5, predictor_sparsity=0.7, encoder_decay=0.4)
    net, losses, _, _ = train_explanation_net(f, s, cfg)
    ft = torch.from_numpy(f)
    mean = ft.mean(dim=0)
    rms = float((ft - mean).pow(2).mean().sqrt())
    torch.testing.assert_close(net.std, torch.full((8,), rms))  # one scale for the whole layer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        net0 = ExplanationNet(8, 3, 2, mean, torch.full((8,), rms))
    with torch.no_grad():
        z, s_hat, f_hat = net0(ft)
    st, e, v = torch.from_numpy(s), net0.encoder.weight.detach(), net0.predictor.weight.detach()
    want = {
        "faithfulness": ((s_hat - st).pow(2) / st.var(dim=0)).mean(),
        "sparsity": z.abs().mean(),
        "pull_away": _pull_away(e),
        "reconstruction": (f_hat - (ft - mean) / rms).pow(2).mean(),
        "predictor_sparsity": v.abs().sum(dim=1).mean(),
        "encoder_decay": e.pow(2).sum(dim=1).mean(),
    }
    for name, value in want.items():
        assert losses[name] == pytest.approx(float(value), rel=1e-5), name
    total = want["faithfulness"] + sum(getattr(cfg, n) * want[n] for n in want if n != "faithfulness")
    assert losses["total"] == pytest.approx(float(total), rel=1e-5)
    per_feature, *_ = train_explanation_net(f, s, ConceptConfig(k=3, steps=1, feature_scale="feature"))
    torch.testing.assert_close(per_feature.std, ft.std(dim=0))


def test_training_is_seeded_and_cancellable():
    rng = np.random.default_rng(1)
    f, s = rng.normal(size=(40, 6)).astype(np.float32), rng.normal(size=(40, 2)).astype(np.float32)
    a, *_ = train_explanation_net(f, s, ConceptConfig(k=3, steps=50, seed=4))
    b, *_ = train_explanation_net(f, s, ConceptConfig(k=3, steps=50, seed=4))
    torch.testing.assert_close(a.encoder.weight, b.encoder.weight)
    calls = []
    _, _, cancelled, _ = train_explanation_net(
        f, s, ConceptConfig(k=3, steps=500), control=RunControl(cancel=lambda: len(calls) > 2 or calls.append(1))
    )
    assert cancelled


def test_dead_concepts_are_dropped_counted_and_change_no_output():
    """Strong sparsity kills concepts; each dropped one was active on no image, and dropping it changes nothing."""
    rng = np.random.default_rng(5)
    f = rng.normal(size=(60, 8)).astype(np.float32)
    s = (f[:, :2] @ np.array([[1.5, 0.0], [0.0, 1.0]], np.float32)).astype(np.float32)
    cfg = dict(k=8, steps=300, sparsity=2.0, seed=1)
    kept, _, _, units = train_explanation_net(f, s, ConceptConfig(**cfg))
    full, _, _, units_full = train_explanation_net(f, s, ConceptConfig(**cfg, prune_dead=False))
    assert units["dead"] > 0 and units["pruned"] == units["dead"] == units_full["dead"], units
    assert units["kept"] == 8 - units["dead"] == kept.encoder.out_features and units_full["pruned"] == 0
    ft = torch.from_numpy(f)
    z_full, s_full, f_full = full(ft)
    z, s_hat, f_hat = kept(ft)
    dead = (z_full.amax(dim=0) <= 0).numpy()
    assert dead.sum() == units["dead"] and (z.amax(dim=0) > 0).all()
    torch.testing.assert_close(z, z_full[:, ~dead])
    torch.testing.assert_close(s_hat, s_full)
    torch.testing.assert_close(f_hat, f_full)


def test_bad_settings_and_output_folder_fail_early(tmp_path):
    with pytest.raises(ValueError, match="ConceptConfig.k must be a positive integer, not 0"):
        ConceptConfig(k=0)
    with pytest.raises(
        ValueError, match="ConceptConfig.feature_scale: unknown value 'channel'; choose from layer, feature"
    ):
        ConceptConfig(feature_scale="channel")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        run_concepts(np.zeros((2, 8, 8, 2), np.uint8), object(), out_dir=blocker)


class _Toy(torch.nn.Module):
    """A model the project did not make: 3-channel input, the label depends on a bright top-left quadrant."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
        with torch.no_grad():
            self.body[0].weight.zero_()
            self.body[0].bias.zero_()
            self.body[0].weight[0, :, 1, 1] = 1.0  # channel 0 = brightness
            self.body[0].weight[1, 0, 1, 1] = -1.0  # channel 1 = darkness of channel 0
            self.body[0].bias[1] = 1.0

    def forward(self, x):
        a = self.body(x)
        return torch.stack([a[:, 0, :8, :8].mean(dim=(1, 2)), a[:, 1].mean(dim=(1, 2))], dim=1)


def test_run_on_a_foreign_model_writes_complete_outputs_and_keeps_partial_results(tmp_path):
    from napari_global_xai.models import LoadedModel

    model = LoadedModel(_Toy(), _toy_card(), torch.device("cpu"))
    rng = np.random.default_rng(2)
    images = rng.integers(0, 60, size=(12, 16, 16, 3), dtype=np.uint8)
    images[::2, :8, :8] = 250  # bright top-left quadrant on even images
    before = images.copy()
    stages = []
    res = run_concepts(
        images,
        model,
        ConceptConfig(k=2, steps=400, chunk_size=4),
        out_dir=tmp_path / "out",
        control=RunControl(progress=lambda d, t, s: stages.append(s)),
    )
    assert np.array_equal(images, before)
    assert {"features", "train", "concept maps"} <= set(stages)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(
        [
            "global_concept_maps.tif",
            "concept_image_maps.tif",
            "concepts.csv",
            "concept_label_weights.csv",
            "top_images.csv",
            "concepts.json",
            "explanation_net.pt",
        ]
    )
    assert res.global_maps.shape == (2, 16, 16)
    np.testing.assert_allclose(
        res.global_maps.reshape(2, -1).sum(1)[res.global_maps.reshape(2, -1).sum(1) > 0], 1, rtol=1e-5
    )
    # the concept that tells bright from dark images ranks one kind of image on top
    bright = np.arange(12) % 2 == 0
    corr = [abs(np.corrcoef(res.concepts[:, j], bright)[0, 1]) if res.concepts[:, j].std() > 0 else 0 for j in range(2)]
    k = int(np.argmax(corr))
    top = res.top_images[k, :6]
    assert corr[k] > 0.9 and (bright[top].all() or not bright[top].any())
    assert np.corrcoef(res.concept_logits[:, 0], res.model_logits[:, 0])[0, 1] > 0.9
    # the folder reads back through its result module (activations as written: 6 significant digits)
    back = ConceptResult.open(tmp_path / "out")
    np.testing.assert_allclose(back.concepts, res.concepts, rtol=1e-5)
    np.testing.assert_array_equal(back.global_maps, res.global_maps)
    np.testing.assert_array_equal(back.top_images, res.top_images)
    np.testing.assert_allclose(back.predictor, res.predictor)
    assert back.config == res.config and back.image_ids == res.image_ids and back.faithfulness() == res.faithfulness()

    # cancel during the concept maps: finished images keep their maps
    state = {"n": 0}

    def cancel():
        state["n"] += stages.count("concept maps") > 0
        return state["n"] > 0

    stages.clear()
    part = run_concepts(
        images,
        model,
        ConceptConfig(k=2, steps=50, chunk_size=4),
        control=RunControl(progress=lambda d, t, s: stages.append(s), cancel=cancel),
    )
    # every image had features, so concepts exist for all; only the first chunk got its maps
    assert part.cancelled and not np.isnan(part.concepts).any()
    assert part.image_maps[:4].any() and not part.image_maps[4:].any()


def _toy_card(**kw):
    from napari_global_xai.models import ModelCard

    base = dict(
        name="toy",
        labels=["bright_tl", "dark"],
        weights="unused.pt",
        format="torchscript",
        activation="sigmoid",
        input_channels=[0, 1, 2],
        input_size=[16, 16],
        mean=[0.5] * 3,
        std=[0.5] * 3,
        cam_layer="body",
        harmonise_laterality=False,
    )
    return ModelCard(**(base | kw))


def test_torchscript_and_torch_export_models_give_the_concepts_of_the_module(tmp_path, capsys):
    """Layer outputs come through models/taps.py on every format (no module hooks on a ScriptModule)."""
    import json

    import tifffile

    from napari_global_xai.cli import main
    from napari_global_xai.models import LoadedModel

    rng = np.random.default_rng(4)
    images = rng.integers(0, 60, size=(10, 16, 16, 3), dtype=np.uint8)
    images[::2, :8, :8] = 250
    net = _Toy().eval()
    example = torch.zeros(2, 3, 16, 16)
    formats = {
        "module": net,
        "torchscript": torch.jit.script(net),
        "export": torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("b", min=1)},)).module(),
    }
    cfg = ConceptConfig(k=2, steps=150, chunk_size=4)
    runs = {
        name: run_concepts(images, LoadedModel(m, _toy_card(), torch.device("cpu")), cfg) for name, m in formats.items()
    }
    for name in ("torchscript", "export"):
        np.testing.assert_allclose(runs[name].concepts, runs["module"].concepts, rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(runs[name].global_maps, runs["module"].global_maps, rtol=1e-4, atol=1e-6)
    # and from the command line, a TorchScript file behind a card (the case that failed with get_submodule)
    formats["torchscript"].save(str(tmp_path / "toy_scripted.pt"))
    card = {
        "weights": "toy_scripted.pt",
        "labels": ["bright_tl", "dark"],
        "activation": "sigmoid",
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "cam_layer": "body",
        "harmonise_laterality": False,
    }
    (tmp_path / "toy.card.json").write_text(json.dumps(card))
    tifffile.imwrite(tmp_path / "toy.tif", images, photometric="rgb")
    code = main(
        [
            "concepts",
            str(tmp_path / "toy.tif"),
            "--model",
            str(tmp_path / "toy.card.json"),
            "--k",
            "2",
            "--steps",
            "100",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (tmp_path / "out" / "concepts.json").exists() and "Traceback" not in captured.err


# --- the demo model on the shipped sample and on training-split images ---------------------------------------


@pytest.fixture(scope="module")
def demo(one_torch_thread):
    if not DEMO_CARD_PATH.exists():
        pytest.skip("demo model not trained")
    return load_model(None, device="cpu")


@pytest.fixture(scope="module")
def sample_run(demo):
    """One concept run on the shipped sample (k 8, seed 0): what every figure the docs quote about it is."""
    from napari_global_xai.samples import load_ground_truth, load_sample_stack

    stack = load_sample_stack()
    return stack, load_ground_truth(), run_concepts(stack, demo, ConceptConfig(k=8, seed=0))


@pytest.mark.slow
def test_demo_concepts_are_faithful_and_find_every_planted_region(demo, sample_run):
    _, truth, res = sample_run
    faith = res.faithfulness()
    print("AUROC model vs concepts:", {n: (round(v["model"], 3), round(v["concepts"], 3)) for n, v in faith.items()})
    assert all(abs(v["model"] - v["concepts"]) <= 0.02 for v in faith.values()), faith
    ratio = {n: res.global_maps[:, truth["regions"][n]].sum(axis=1) / truth["regions"][n].mean() for n in DISEASES}
    best = {n: float(r.max()) for n, r in ratio.items()}
    print("best concept's mass in region / area share:", {n: round(v, 1) for n, v in best.items()})
    # measured (seed 0): haemorrhage 17.6, peripheral_lesion 3.2, disc_swelling 39.9, arcade_lesion 9.6 (seeds 0-4:
    # periphery 3.2-3.3; before the layer-wide feature scale, encoder decay and predictor L1 it was 2.1). The
    # annulus' ceiling at the layer's resolution is ~4.8 and the model's own logit map reaches ~3.5: RESULTS.md.
    # (Image-area baseline, as the issue that set the bar asked; the region tables use the field of view.)
    for n in DISEASES:
        assert best[n] >= 3, (n, best)
    # the concept mapped onto a region is one that raises that label's prediction
    for n in DISEASES:
        assert res.weights[int(np.argmax(ratio[n])), demo.labels.index(n)] > 0, n


@pytest.mark.slow
def test_no_concept_of_the_shipped_sample_is_dead(sample_run):
    """3 of 8 die in training (seed 0); they are dropped and counted, and every concept kept has a map."""
    _, _, res = sample_run
    print("concept units:", res.units)
    assert res.units == {"requested": 8, "dead": 3, "pruned": 3, "kept": 5}
    k = res.global_maps.shape[0]
    assert k == 5 and res.concepts.shape[1] == k and res.weights.shape[0] == k and len(res.region_tables) == k
    assert (res.concepts.max(axis=0) > 0).all()
    assert (res.global_maps.reshape(k, -1).sum(axis=1) > 0.999).all()
    assert (res.image_maps.max(axis=(0, 2, 3)) > 0).all()


@pytest.mark.slow
def test_concept_region_enrichment_is_taken_inside_the_field_of_view(sample_run):
    """The concept region tables against a plain recomputation within the field of view of the mean anatomy."""
    from napari_global_xai.analyses.regions import REGION_NAMES, build_regions, field_of_view, find_landmarks

    stack, _, res = sample_run
    anatomy = stack.to_left_eye().mean_image()
    fov = field_of_view(anatomy)[0]
    regions = build_regions(find_landmarks(anatomy))
    outside = REGION_NAMES.index("outside_fov") + 1
    np.testing.assert_array_equal(regions != outside, fov)
    for k, table in enumerate(res.region_tables):
        g = res.global_maps[k].astype(np.float64)
        assert res.fov_mass[k] == pytest.approx(g[fov].sum() / g.sum(), rel=1e-5)
        for name in ("optic_disc", "macula", "far_superotemporal"):
            inside = regions == REGION_NAMES.index(name) + 1
            want = (g[inside].sum() / g[fov].sum()) / (inside.sum() / fov.sum())
            row = table.row(name)
            assert row["baseline"] == "field of view" and row["enrichment"] == pytest.approx(want, rel=1e-5)
            whole = (g[inside].sum() / g.sum()) / inside.mean()  # the old, whole-image baseline
            assert whole == pytest.approx(want * res.fov_mass[k] / fov.mean(), rel=1e-5)


@pytest.mark.slow
def test_the_peripheral_concept_lands_on_the_shortcut_marker_of_the_shipped_sample(demo, sample_run):
    """No concept of its own carries the marker on the sample (the sparse objective keeps one per label); the
    peripheral_lesion concept fires on every marker image without a lesion and, on those, its map lands on the marker.
    """
    from napari_global_xai.concepts.pipeline import concept_image_maps

    stack, truth, res = sample_run
    marker = truth["artefacts"].reshape(len(truth["artefacts"]), -1).any(axis=1)
    lesion = stack.labels.column("peripheral_lesion").astype(bool)
    periph = demo.labels.index("peripheral_lesion")
    k = int(np.argmax(res.weights[:, periph]))
    only = np.nonzero(marker & ~lesion)[0]
    clean = ~marker & ~lesion
    maps = concept_image_maps(res, only, stack.shape[1:3])[:, k]
    on_marker = np.array([m[truth["artefacts"][i] > 0].sum() / m.sum() for m, i in zip(maps, only)])
    area = truth["artefacts"][only].reshape(len(only), -1).mean(axis=1)
    sep = auroc(marker[:, None].astype(np.uint8), res.concepts[:, k : k + 1])[0]
    print(
        f"concept_{k}: active on {(res.concepts[only, k] > 0).sum()}/{len(only)} marker-only images, "
        f"{(res.concepts[clean, k] > 0).mean():.0%} of clean negatives; AUROC for 'has the marker' {sep:.2f}; "
        f"map share on the marker {on_marker.mean():.3f} (area {area.mean():.4f}, ×{(on_marker / area).mean():.0f}); "
        f"global map {res.global_maps[k][truth['artefacts'].any(axis=0)].sum():.3f}"
    )
    # measured (seed 0): 7/7 marker-only images, 3 % of clean negatives, AUROC 0.81, 12 % of the map on the 0.4 %
    # of the image the marker covers (×32); 2.5 % of the global map (lesion images dominate it)
    assert res.weights[k, periph] > 0 and (res.concepts[only, k] > 0).all()
    assert (res.concepts[clean, k] > 0).mean() <= 0.1
    assert on_marker.mean() >= 10 * area.mean()


@pytest.mark.slow
def test_a_concept_picks_up_the_shortcut_marker_on_training_split_images(demo):
    from napari_global_xai.data.synthetic import generate_stack, marker_box

    gen = generate_stack(64, seed=7, split="train")
    stack = gen.aligned("stored")  # the run harmonises it, as the demo card asks
    marker = np.zeros(stack.shape[1:3], bool)
    for side in ("L", "R"):
        marker[marker_box(side)] = True
    res = run_concepts(stack, demo, ConceptConfig(k=8, seed=0))
    k = res.concepts.shape[1]  # the concepts kept (dead ones dropped)
    sep = auroc(np.repeat(gen.has_marker[:, None], k, axis=1), res.concepts)
    on_marker = res.global_maps[:, marker].sum(axis=1) / marker.mean()
    periph = demo.labels.index("peripheral_lesion")
    print(
        "concept AUROC for 'image has the marker':",
        np.round(sep, 2),
        "marker mass / area share:",
        np.round(on_marker, 1),
        "peripheral_lesion weights:",
        np.round(res.weights[:, periph], 2),
    )
    shortcut = [j for j in range(k) if sep[j] >= 0.8 and on_marker[j] >= 3 and res.weights[j, periph] > 0]
    assert shortcut, "no concept carries the corner marker"
    truth = gen.labels[:, periph : periph + 1]
    model_auc = auroc(truth, res.model_logits[:, periph : periph + 1])[0]
    concept_auc = auroc(truth, res.concept_logits[:, periph : periph + 1])[0]
    assert abs(model_auc - concept_auc) <= 0.02, (model_auc, concept_auc)


def test_cli_bad_inputs_are_one_clear_line(tmp_path, capsys):
    from napari_global_xai.cli import main

    (tmp_path / "taken").write_text("x")
    assert main(["concepts", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "o")]) != 0
    assert main(["concepts", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "o"), "--k", "0"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("global-xai concepts: error:") for line in err), err
    assert "Traceback" not in " ".join(err)
