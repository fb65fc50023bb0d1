"""Model-parameter randomisation: verdicts against the unrelated-pair reference with intervals, image-wise and global;
model-dependent maps pass, model-free and half-model-free maps fail, anti-correlation is no pass, the global verdict
catches kept anatomy, and the check runs on TorchScript and torch.export models."""

import dataclasses

import numpy as np
import pytest
import torch

from napari_global_xai.analyses import sanity_stats as stats
from napari_global_xai.analyses.sanity import (
    parameterised_layers,
    randomise_layers,
    run_sanity_check,
    spearman,
    ssim,
)
from napari_global_xai.analyses.sanity_result import FILES, Interval, SanityResult
from napari_global_xai.analysis_config import SanityConfig
from napari_global_xai.config import ExplainConfig
from napari_global_xai.control import RunControl
from napari_global_xai.saliency.base import METHODS, SaliencyMethod, register_method


def _edges(x):
    gy, gx = torch.zeros_like(x), torch.zeros_like(x)
    gy[..., 1:, :] = x[..., 1:, :] - x[..., :-1, :]
    gx[..., :, 1:] = x[..., :, 1:] - x[..., :, :-1]
    return torch.sqrt(gx**2 + gy**2)


def _unit(a):
    """Each map divided by its mean (so two parts mixed 1:1 carry equal mass)."""
    return a / a.flatten(1).mean(1).clamp_min(1e-12).reshape(-1, *[1] * (a.ndim - 1))


class EdgeFilter(SaliencyMethod):
    """Gradient magnitude of the *image*: ignores the model entirely (defined for this test only)."""

    name = "edge_filter_test"
    needs_grad = False

    def attribute(self, x, targets):
        return _edges(x)


class HalfEdge(SaliencyMethod):
    """Half the image's edge magnitude, half the model's gradient magnitude (equal mass; test only)."""

    name = "half_edge_test"

    def attribute(self, x, targets):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.forward_module(x).gather(1, targets[:, None]).sum(), x)
        return (0.5 * _unit(_edges(x.detach()).mean(1)) + 0.5 * _unit(grad.abs().sum(1))).detach()[:, None]


@pytest.fixture(scope="module")
def test_methods():
    for cls in (EdgeFilter, HalfEdge):
        register_method(cls)
    yield EdgeFilter.name, HalfEdge.name
    for cls in (EdgeFilter, HalfEdge):
        METHODS.pop(cls.name, None)


@pytest.fixture(scope="module")
def demo_run(test_methods, one_torch_thread, tmp_path_factory):
    """One check of the demo net on 10 sample images at half size (every second pixel; the net is convolutional)."""
    from napari_global_xai.analyses.sanity_pipeline import run_sanity
    from napari_global_xai.data.stack import AlignedStack
    from napari_global_xai.models import load_model
    from napari_global_xai.models.card import LoadedModel
    from napari_global_xai.samples import load_sample_stack

    full = load_sample_stack()
    idx = np.linspace(0, full.n - 1, 10).round().astype(int)
    small = AlignedStack(
        np.asarray(full.pixels)[idx][:, ::2, ::2],
        [full.image_ids[i] for i in idx],
        None if full.laterality is None else np.asarray(full.laterality)[idx],
    )
    demo = load_model(None, device="cpu")
    model = LoadedModel(demo.module, dataclasses.replace(demo.card, input_size=None), demo.device)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    edge, half = test_methods
    configs = [
        ExplainConfig(method="ig", params={"n_steps": 4, "baseline": "blur"}, reduction="pos_sum"),
        ExplainConfig(method="gradcam"),
        ExplainConfig(method=edge),
        ExplainConfig(method=half),
    ]
    seen = []
    out = tmp_path_factory.mktemp("sanity")
    result = run_sanity(
        small,
        model,
        SanityConfig(methods=configs, n_images=10, independent=False, n_boot=500),
        out_dir=out,
        control=RunControl(progress=lambda d, t, s: seen.append((d, t))),
    )
    return result, model, before, seen, out


def test_ig_and_gradcam_pass_and_model_free_maps_fail(demo_run, test_methods):
    result, model, before, seen, out = demo_run
    edge, half = test_methods
    assert result.layers == ["head", "stage3", "stage2", "stage1", "stem"]  # top layer first
    assert result.steps == ["original"] + result.layers
    verdict = {m: result.judgements[m]["image"] for m in result.methods}
    assert verdict["ig"].passes and verdict["gradcam"].passes
    assert verdict["ig"].randomised.high < verdict["ig"].unrelated.low  # the rule, stated in the numbers
    assert verdict[edge].passes is False and verdict[edge].randomised.mean == pytest.approx(1.0)
    assert verdict[half].passes is False and "above the unrelated-pair level" in verdict[half].line
    assert "follow image structure" in verdict[half].note  # the model-free reference sees it too
    assert result.judgements[edge]["global"].passes is False
    for m in result.methods:  # step 0 compares the original maps with themselves
        np.testing.assert_array_equal(result.spearman[m][0], 1.0)
        np.testing.assert_allclose(result.ssim[m][0], 1.0)
        for v in result.judgements[m].values():  # every verdict states its numbers with intervals
            assert str(v.randomised) in v.line and str(v.unrelated) in v.line and str(v.model_free) in v.line
            assert v.randomised.low <= v.randomised.mean <= v.randomised.high
    assert seen[-1] == (24, 24)
    for k, v in model.module.state_dict().items():  # the caller's model is untouched
        assert torch.equal(v, before[k]), k


def test_global_verdict_catches_igs_kept_anatomy(demo_run):
    """IG (blur baseline) passes image by image, but its global map survives randomisation (the issue's 0.50)."""
    result = demo_run[0]
    ig, cam = result.judgements["ig"], result.judgements["gradcam"]
    assert ig["image"].passes and ig["global"].passes is False
    assert ig["global"].randomised.low > ig["image"].unrelated.high
    assert cam["global"].randomised.mean < ig["global"].randomised.mean


def test_the_folder_round_trips_and_the_report_shows_both_verdicts(demo_run):
    from napari_global_xai.report import build_sections

    result, _, _, _, out = demo_run
    assert {p.name for p in out.iterdir()} == {FILES.summary, FILES.table, FILES.figure}
    back = SanityResult.open(out)
    assert back.verdicts == result.verdicts and back.layers == result.layers
    for m in result.methods:
        np.testing.assert_allclose(back.spearman[m], result.spearman[m])
        assert back.judgements[m]["global"] == result.judgements[m]["global"]
    (section,) = [s for s in build_sections(out) if s.title.startswith("Sanity check")]
    rows = section.tables[0].rows
    assert [r[:2] for r in rows[:2]] == [["ig", "image"], ["ig", "global"]]
    assert rows[0][2] == str(result.judgements["ig"]["image"].randomised) and rows[0][-1] == "passes"
    assert any("ig · global: FAILS" in t for t in section.text) and section.figures


def _field(rng, shape, sigma):
    from scipy import ndimage

    f = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (f - f.mean()) / f.std()


def test_global_verdict_catches_a_map_that_keeps_the_anatomy():
    """Maps = anatomy T (model-free, in every map) + the model's shared pattern M + per-image noise. Randomising
    the model removes M: image by image the maps share less than unrelated ones do (pass), but the global maps keep
    T (fail)."""
    rng = np.random.default_rng(0)
    k, shape = 24, (40, 48)
    anatomy, model_part = _field(rng, shape, 3), _field(rng, shape, 3)
    original = anatomy + model_part + rng.normal(0, 2.5, (k, *shape))
    randomised = anatomy + rng.normal(0, 2.5, (k, *shape))
    edges = np.abs(rng.normal(size=(k, *shape)))
    ranks, const = stats.rank_rows(original)
    rho = stats.row_rho(ranks, stats.rank_rows(randomised)[0])
    free = np.abs(stats.row_rho(ranks, stats.rank_rows(edges)[0]))
    image = stats.judge_images(
        "m", rho, np.zeros(k), stats.unrelated_pairs(ranks, const), free, n_boot=500, seed=0, where="", decided=True
    )
    glob = stats.judge_global(
        "m", original, randomised, edges, image.unrelated, None, n_boot=500, seed=0, where="", decided=True,
        signed=0.0, ssim_value=0.0,
    )  # fmt: skip
    assert image.passes and glob.passes is False
    assert glob.randomised.low > image.unrelated.high and "global: FAILS" in glob.line


def test_an_anti_correlated_map_is_not_a_pass():
    rng = np.random.default_rng(1)
    rho = -0.8 + rng.normal(0, 0.02, 12)  # the randomised maps are the originals inverted
    kwargs = dict(n_boot=500, seed=0, where="", decided=True)
    v = stats.judge_images("m", rho, np.zeros(12), np.full(12, 0.3), np.full(12, 0.05), **kwargs)
    assert v.passes is False and v.randomised.mean == pytest.approx(0.8, abs=0.02)
    assert "anti-correlated (signed ρ -0.80)" in v.line
    fine = stats.judge_images("m", rho / 20, np.zeros(12), np.full(12, 0.3), np.full(12, 0.05), **kwargs)
    assert fine.passes and fine.signed < 0  # a weak negative ρ is no structure kept


def test_references_and_intervals():
    rng = np.random.default_rng(3)
    maps = rng.random((5, 9, 11))
    mask = np.ones((9, 11), bool)
    mask[:2] = False
    ranks, const = stats.rank_rows(maps, mask)
    for i in range(5):
        for j in range(5):
            assert ranks[i] @ ranks[j] == pytest.approx(spearman(maps[i], maps[j], mask), abs=1e-12)
    u = stats.unrelated_pairs(ranks, const)
    assert u[0] == pytest.approx(np.mean([abs(spearman(maps[0], maps[j], mask)) for j in range(1, 5)]))
    iv = stats.bootstrap_mean([0.1, 0.2, 0.3, 0.4], 1000, seed=0)
    assert iv.low < iv.mean < iv.high and iv.mean == pytest.approx(0.25)
    assert iv == stats.bootstrap_mean([0.1, 0.2, 0.3, 0.4], 1000)  # seeded
    assert np.isnan(stats.bootstrap_mean([0.5], 100).low)  # one image: no interval, the verdict is undecided
    one = stats.judge_images("m", [0.1], [1.0], [np.nan], [0.1], n_boot=100, seed=0, where="1 image", decided=True)
    assert one.passes is None and "too few images" in one.line
    g = stats.global_interval(maps, maps[::-1] + rng.normal(0, 0.1, maps.shape), mask, n_boot=200)
    assert g.low <= g.mean <= g.high
    assert str(Interval(0.123, 0.1, 0.15)) == "0.12 [0.10, 0.15]"


class _Tiny(torch.nn.Module):
    def __init__(self, norm=False):
        super().__init__()
        layers = [torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1)]
        if norm:
            layers.insert(1, torch.nn.BatchNorm2d(4))
        self.body = torch.nn.Sequential(*layers)
        self.scale = torch.nn.Parameter(torch.full((4,), 2.0))  # owned by the root, no reset_parameters
        self.out = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.out(self.body(x).mean((2, 3)) * self.scale)


def _tiny_model(net, cam_layer="body.2"):
    from napari_global_xai.models.card import LoadedModel, ModelCard

    card = ModelCard(
        name="tiny",
        weights="unused.pt",
        format="pickle",
        labels=["a", "b", "c"],
        input_channels=[0],
        mean=[0.5],
        std=[0.25],
        pixel_scale=1.0,
        input_size=None,
        cam_layer=cam_layer,
    )
    return LoadedModel(net, card, torch.device("cpu"))


def test_layers_in_forward_order_and_seeded_reinitialisation():
    net = _Tiny()
    layers = parameterised_layers(net, torch.zeros(1, 1, 10, 12))
    assert [name for name, _ in layers] == ["body.0", "body.2", "out", "(root)"]  # root module runs last
    assert [name for name, _ in parameterised_layers(net, torch.zeros(1, 1, 10, 12), depth=1)] == [
        "body",
        "out",
        "(root)",
    ]
    a, b, orig = _Tiny(), _Tiny(), _Tiny()
    b.load_state_dict(a.state_dict())
    orig.load_state_dict(a.state_dict())
    randomise_layers(a, ["body.2", ""], seed=4)
    randomise_layers(b, ["body.2", ""], seed=4)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.scale, torch.full((4,), 2.0))
    assert torch.equal(a.body[0].weight, orig.body[0].weight)  # layers not named stay as they were
    assert not torch.equal(a.body[2].weight, orig.body[2].weight)
    bound = 1 / np.sqrt(4 * 3 * 3)  # PyTorch's default initialisation range of that convolution
    assert float(a.body[2].weight.detach().abs().max()) <= bound and float(a.body[2].bias.detach().abs().max()) <= bound
    norm = _Tiny(norm=True)
    with torch.no_grad():
        norm.body[1].weight.fill_(3.0)
        norm.body[1].running_var.fill_(7.0)
    randomise_layers(norm, ["body.1"], seed=0)
    assert torch.equal(norm.body[1].weight, torch.ones(4)) and torch.equal(norm.body[1].running_var, torch.ones(4))


def test_sanity_runs_on_torchscript_and_torch_export_with_the_modules_numbers(test_methods):
    """The layers are found, ordered and re-initialised through the layer taps: a TorchScript (traced) and a
    torch.export copy of a model give the nn.Module's layers and maps (regression: get_submodule is not supported
    on ScriptModules)."""
    from napari_global_xai.analyses.sanity_pipeline import run_sanity
    from napari_global_xai.data.stack import AlignedStack

    torch.manual_seed(0)
    net = _Tiny(norm=True).eval()
    example = torch.randn(2, 1, 10, 12)
    formats = {
        "module": net,
        "torchscript": torch.jit.trace(net, example),
        "export": torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("b", min=1)},)).module(),
    }
    stack = AlignedStack((np.random.default_rng(1).random((5, 10, 12, 1)) * 255).astype(np.uint8), list("vwxyz"))
    config = SanityConfig(methods=["saliency", "gradcam"], n_images=5, n_boot=200, field_of_view_only=False)
    results = {kind: run_sanity(stack, _tiny_model(module, "body.3"), config) for kind, module in formats.items()}
    expected = results["module"]
    assert expected.layers == ["(root)", "out", "body"]
    for kind in ("torchscript", "export"):
        r = results[kind]
        assert r.layers == expected.layers and r.steps == expected.steps, kind
        for m in r.methods:
            np.testing.assert_allclose(r.spearman[m], expected.spearman[m], atol=1e-5, err_msg=f"{kind} {m}")
        assert r.judgements["gradcam"]["image"].passes == expected.judgements["gradcam"]["image"].passes
    # the method's own refusal comes before any layer search, in one line
    from napari_global_xai.saliency.base import MethodParameterError

    with pytest.raises(MethodParameterError, match="unknown parameter"):
        bad = SanityConfig(methods=[ExplainConfig("ig", {"nope": 1})])
        run_sanity(stack, _tiny_model(formats["torchscript"], "body.3"), bad)


def test_independent_mode_on_a_tiny_model(test_methods):
    edge, _ = test_methods
    torch.manual_seed(0)
    model = _tiny_model(_Tiny())
    images = np.random.default_rng(1).random((3, 10, 12, 1)).astype(np.float32)
    r = run_sanity_check(
        model,
        images,
        [ExplainConfig(method="saliency"), ExplainConfig(method=edge)],
        np.array([0, 1, 2]),
        independent=True,
        n_boot=100,
    )
    assert r.independent_spearman["saliency"].shape == (4, 3) and len(r.independent_intervals["saliency"]) == 4
    np.testing.assert_allclose(r.independent_spearman[edge], 1.0)
    # randomising only the last layer is cascading step 1
    np.testing.assert_allclose(r.independent_spearman["saliency"][0], r.spearman["saliency"][1])
    assert {row["mode"] for row in r.to_rows()} == {"cascading", "independent"}


def test_similarity_measures_against_references():
    rng = np.random.default_rng(2)
    a = rng.random((23, 31))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    skimage_metrics = pytest.importorskip("skimage.metrics")
    ref = skimage_metrics.structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(a, b) == pytest.approx(ref, abs=1e-10)
    assert ssim(a, a) == pytest.approx(1.0)
    from scipy.stats import spearmanr

    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel())[0])
    assert spearman(a, np.zeros_like(a)) == 0.0 and np.isnan(spearman(np.ones_like(a), a))
    mask = np.zeros(a.shape, bool)
    mask[3:9, 4:20] = True
    assert spearman(a, b, mask) == pytest.approx(spearmanr(a[mask], b[mask])[0])
    # the masked SSIM: the mean of the SSIM map written out here (Gaussian σ 1.5, population moments) over the
    # pixels of the mask at least half a window (5 px) from the border
    from scipy import ndimage

    def blur(img):
        return ndimage.gaussian_filter(img, 1.5, truncate=3.5, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    cov, var_a, var_b = blur(a * b) - mu_a * mu_b, blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    c1, c2 = 0.01**2, 0.03**2
    s_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    inner = np.zeros(a.shape, bool)
    inner[5:-5, 5:-5] = True
    assert ssim(a, b, mask=mask) == pytest.approx(s_map[inner & mask].mean(), abs=1e-10)
    assert ssim(a, b, mask=mask) != pytest.approx(ssim(a, b), abs=1e-3)  # the mask changes the mean


def test_cancel_returns_the_finished_steps():
    torch.manual_seed(1)
    model = _tiny_model(_Tiny())
    images = np.random.default_rng(2).random((2, 9, 11, 1)).astype(np.float32)
    polls = {"n": 0}

    def cancel():
        polls["n"] += 1
        return polls["n"] > 6

    r = run_sanity_check(
        model, images, [ExplainConfig(method="saliency")], np.array([0, 2]), control=RunControl(cancel=cancel)
    )
    assert r.cancelled and 1 <= len(r.steps) - 1 < len(r.layers)
    assert r.spearman["saliency"].shape == (len(r.steps), 2)
    assert "cancelled" in r.verdicts["saliency"] and r.judgements["saliency"]["image"].passes is None
