"""Model-parameter randomisation: model-dependent maps are destroyed, a model-independent 'method' is flagged."""

import numpy as np
import pytest
import torch

from napari_global_xai.analyses.sanity import (
    parameterised_layers,
    randomise_layers,
    run_sanity_check,
    spearman,
    ssim,
)
from napari_global_xai.analysis_config import SanityConfig
from napari_global_xai.config import ExplainConfig
from napari_global_xai.control import RunControl
from napari_global_xai.saliency.base import METHODS, SaliencyMethod, register_method


class EdgeFilter(SaliencyMethod):
    """Gradient magnitude of the *image*: ignores the model entirely (defined for this test only)."""

    name = "edge_filter_test"
    needs_grad = False

    def attribute(self, x, targets):
        gy = torch.zeros_like(x)
        gx = torch.zeros_like(x)
        gy[..., 1:, :] = x[..., 1:, :] - x[..., :-1, :]
        gx[..., :, 1:] = x[..., :, 1:] - x[..., :, :-1]
        return torch.sqrt(gx**2 + gy**2)


@pytest.fixture
def edge_method():
    register_method(EdgeFilter)
    yield EdgeFilter.name
    METHODS.pop(EdgeFilter.name, None)


def test_randomising_the_demo_model_destroys_ig_and_gradcam_but_not_an_edge_filter(
    edge_method, one_torch_thread, tmp_path
):
    from napari_global_xai.analyses.sanity_pipeline import run_sanity
    from napari_global_xai.models import load_model
    from napari_global_xai.samples import load_sample_stack

    stack = load_sample_stack()
    model = load_model(None, device="cpu")
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    configs = [
        ExplainConfig(method="ig", params={"n_steps": 4, "baseline": "blur"}, reduction="pos_sum"),
        ExplainConfig(method="gradcam"),
        ExplainConfig(method=edge_method),
    ]
    seen = []
    result = run_sanity(
        stack,
        model,
        SanityConfig(methods=configs, n_images=6, depth=1),
        out_dir=tmp_path,
        control=RunControl(progress=lambda d, t, s: seen.append((d, t))),
    )
    assert result.layers == ["head", "stage3", "stage2", "stage1", "stem"]  # top layer first
    assert result.steps == ["original"] + result.layers
    assert result.final_spearman("ig") < 0.2
    assert result.final_spearman("gradcam") < 0.2
    assert result.final_spearman(edge_method) > 0.9
    assert "passes" in result.verdicts["ig"] and "passes" in result.verdicts["gradcam"]
    assert result.verdicts[edge_method].startswith(f"{edge_method}: FAILS")
    for m in result.methods:  # step 0 compares the original maps with themselves
        np.testing.assert_allclose(result.spearman[m][0], 1.0)
        np.testing.assert_allclose(result.ssim[m][0], 1.0)
    assert seen[-1] == (18, 18)
    for k, v in model.module.state_dict().items():  # the caller's model is untouched
        assert torch.equal(v, before[k]), k
    assert {p.name for p in tmp_path.iterdir()} == {"sanity.csv", "sanity.json", "sanity.png"}


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1)
        )
        self.scale = torch.nn.Parameter(torch.full((4,), 2.0))  # owned by the root, no reset_parameters
        self.out = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.out(self.body(x).mean((2, 3)) * self.scale)


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


def test_independent_mode_on_a_tiny_model(edge_method):
    from napari_global_xai.models.card import LoadedModel, ModelCard

    torch.manual_seed(0)
    net = _Tiny()
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
        cam_layer="body.2",
    )
    model = LoadedModel(net, card, torch.device("cpu"))
    images = np.random.default_rng(1).random((3, 10, 12, 1)).astype(np.float32)
    r = run_sanity_check(
        model,
        images,
        [ExplainConfig(method="saliency"), ExplainConfig(method=edge_method)],
        np.array([0, 1, 2]),
        independent=True,
    )
    assert r.independent_spearman["saliency"].shape == (4, 3)
    np.testing.assert_allclose(r.independent_spearman[edge_method], 1.0)
    # randomising only the last layer is cascading step 1
    np.testing.assert_allclose(r.independent_spearman["saliency"][0], r.spearman["saliency"][1])


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
    from napari_global_xai.models.card import LoadedModel, ModelCard

    torch.manual_seed(1)
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
        cam_layer="body.2",
    )
    model = LoadedModel(_Tiny(), card, torch.device("cpu"))
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
    assert "cancelled" in r.verdicts["saliency"]
