"""IG's completeness error reaches the explain run's results: summary JSON, per-image values, report, resume.

Everything is built here: a 2-label CNN with a smooth nonlinearity (so IG on 6 Gauss–Legendre steps leaves errors
on both sides of the 5 % threshold), 5 images of 12 × 16 in chunks of 2. The maps are stored raw (channel sum, no
normalisation, float32), so each stored map's sum is the attribution's sum, and the error is recomputed from it and
two model passes, independently of the method's own bookkeeping.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_global_xai.config import ExplainConfig
from napari_global_xai.control import RunControl
from napari_global_xai.data import AlignedStack
from napari_global_xai.explain.completeness import THRESHOLD
from napari_global_xai.explain.pipeline import run_explain
from napari_global_xai.explain.result import FILES, open_explain
from napari_global_xai.models import LoadedModel, ModelCard

H, W, N, CHUNK = 12, 16, 5, 2
LABELS = ["near", "far"]
IG = ExplainConfig(
    method="ig",
    params={"n_steps": 6, "baseline": "black"},
    subset="all",
    reduction="sum",
    normalisation="none",
    chunk_size=CHUNK,
)


class SmoothNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.conv(x)).pow(2).mean(dim=(2, 3)))


@pytest.fixture
def model(one_torch_thread):
    card = ModelCard(
        name="smooth",
        labels=LABELS,
        weights="unused.pt",
        format="torchscript",
        input_channels=[0, 1],
        input_size=[H, W],
        mean=[0.4, 0.3],
        std=[0.2, 0.15],
        harmonise_laterality=False,
    )
    torch.manual_seed(3)
    return LoadedModel(SmoothNet(), card, torch.device("cpu"))


@pytest.fixture
def stack():
    pixels = np.random.default_rng(4).integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    ids = [f"im{i}" for i in range(N)]
    return AlignedStack(pixels, ids, laterality=None, labels=None, sources=["<memory>"] * N)


def _summary(folder) -> dict:
    import json

    return json.loads((folder / FILES.summary).read_text())


def _independent_errors(model, stack, maps) -> tuple[np.ndarray, np.ndarray]:
    """``|Σ map − (f(x) − f(black))| / |f(x) − f(black)|`` per (image, label) in float64, and the float32
    rounding bound of that error: 64 ulp of the magnitudes that were summed (map, both scores), over ``|Δf|``."""
    pixels = stack.get(np.arange(N))
    with torch.no_grad():
        f_x = model.scores(model.preprocess(pixels)).double().numpy()
        f_b = model.scores(model.preprocess(np.zeros_like(pixels))).double().numpy()  # black = pixel value 0
    change = f_x - f_b
    total = maps.astype(np.float64).sum(axis=(2, 3))
    magnitude = np.abs(maps.astype(np.float64)).sum(axis=(2, 3)) + np.abs(f_x) + np.abs(f_b)
    return np.abs(total - change) / np.abs(change), 64 * np.finfo(np.float32).eps * magnitude / np.abs(change)


def test_ig_completeness_in_the_summary_equals_a_recomputation_and_survives_a_resume(model, stack, tmp_path):
    full = run_explain(stack, model, IG, out_dir=tmp_path / "full", map_dtype="float32")
    run = open_explain(tmp_path / "full")
    maps = np.asarray(run.image_maps)
    expected, atol = _independent_errors(model, stack, maps)
    assert run.computed.all()
    np.testing.assert_allclose(full.completeness, expected, rtol=0, atol=atol.max())
    assert np.array_equal(run.completeness, full.completeness)  # per image, read back from the store
    from napari_global_xai.store.reader import record_flags

    being_written = record_flags(run.store, {**run.attrs, "status": "running"})  # read from the chunk records
    assert np.array_equal(being_written["completeness"], full.completeness)
    assert 0 < (expected > THRESHOLD).sum() < expected.size  # the count above the threshold can be wrong both ways

    summary = _summary(tmp_path / "full")["completeness"]
    assert summary["threshold"] == THRESHOLD
    for j, name in enumerate(LABELS):
        stats = summary["per_label"][name]
        errors = expected[:, j]
        assert stats["maps"] == N and stats["undefined"] == 0
        assert stats["above_threshold"] == int((errors > THRESHOLD).sum())
        for key, value in (("median", np.median(errors)), ("p95", np.percentile(errors, 95)), ("max", errors.max())):
            assert stats[key] == pytest.approx(value, abs=atol.max()), key

    from napari_global_xai.explain.report import explain_section

    section, _ = explain_section(tmp_path / "full" / FILES.summary, tmp_path / "full", tmp_path)
    table = next(t for t in section.tables if t.caption.startswith("Completeness"))
    assert [row[0] for row in table.rows] == LABELS
    assert [row[5] for row in table.rows] == [str(summary["per_label"][n]["above_threshold"]) for n in LABELS]

    seen = []
    part = run_explain(
        stack,
        model,
        IG,
        out_dir=tmp_path / "part",
        map_dtype="float32",
        control=RunControl(progress=lambda done, total, stage: seen.append(done), cancel=lambda: max(seen) >= CHUNK),
    )  # cancelled once the first chunk was written
    assert part.cancelled and part.computed[:CHUNK].all() and not part.computed[CHUNK:].any()
    assert _summary(tmp_path / "part")["completeness"]["per_label"]["near"]["maps"] == CHUNK  # computed maps only
    with pytest.warns(UserWarning, match="1 of 3 chunks finished earlier are reused"):
        resumed = run_explain(stack, model, IG, out_dir=tmp_path / "part", map_dtype="float32")
    assert resumed.provenance["n_chunks_reused"] == 1
    assert np.array_equal(resumed.completeness, full.completeness)  # the first chunk's values from its record
    assert _summary(tmp_path / "part")["completeness"] == _summary(tmp_path / "full")["completeness"]
    assert np.array_equal(open_explain(tmp_path / "part").completeness, full.completeness)


def test_tiff_folder_keeps_the_per_image_errors(model, stack, tmp_path):
    result = run_explain(stack, model, IG, out_dir=tmp_path, out_format="tiff")
    np.testing.assert_allclose(open_explain(tmp_path).completeness, result.completeness, rtol=1e-8)
    assert _summary(tmp_path)["completeness"]["per_label"]["far"]["maps"] == N


def test_a_method_without_completeness_gives_null(model, stack, tmp_path):
    config = ExplainConfig(method="saliency", subset="all", chunk_size=CHUNK)
    result = run_explain(stack, model, config, out_dir=tmp_path)
    assert result.completeness is None and result.computed.all()
    assert _summary(tmp_path)["completeness"] is None
    assert open_explain(tmp_path).completeness is None
    header = (tmp_path / FILES.predictions).read_text().splitlines()[0]
    assert "completeness" not in header
