"""Anatomical regions: landmarks on the shipped sample and on a hand-drawn retina, region table vs. its definition."""

import numpy as np
import pytest

from napari_global_xai.analyses.regions import (
    FOV,
    IMAGE,
    REGION_NAMES,
    Landmarks,
    build_regions,
    find_landmarks,
    read_region_mask,
    region_table,
    write_region_mask,
)
from napari_global_xai.analyses.regions_pipeline import run_regions
from napari_global_xai.analysis_config import RegionsConfig
from napari_global_xai.data.synthetic import GEOMETRY

# each label's planted region (data/synthetic.py) in terms of the regions built here
OWN_REGIONS = {
    "haemorrhage": {"macula"},
    "disc_swelling": {"optic_disc"},
    "arcade_lesion": {"superior_arcade", "inferior_arcade"},
    "peripheral_lesion": {n for n in REGION_NAMES if n.startswith("far_")},
}


@pytest.fixture(scope="module")
def sample_explained(one_torch_thread):
    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.explain.pipeline import run_explain
    from napari_global_xai.models import load_model
    from napari_global_xai.samples import load_sample_stack

    stack = load_sample_stack()
    model = load_model(None, device="cpu")
    result = run_explain(stack, model, ExplainConfig(method="gradcam", targets=list(OWN_REGIONS)))
    maps = {lab: np.asarray(result.image_maps[result.computed[:, j], j]) for j, lab in enumerate(result.target_labels)}
    return stack.to_left_eye().mean_image(), maps


def test_sample_landmarks_and_each_labels_region_is_most_enriched(sample_explained, tmp_path):
    anatomy, maps = sample_explained
    run = run_regions(maps, RegionsConfig(n_boot=200), anatomy=anatomy, out_dir=tmp_path)
    regions, landmarks, tables = run.regions, run.landmarks, run.tables
    assert not run.cancelled and len(tables) == len(maps)
    assert np.hypot(*np.subtract(landmarks.disc, GEOMETRY.disc)) <= 10
    assert np.hypot(*np.subtract(landmarks.fovea, GEOMETRY.fovea)) <= 10
    for table in tables:
        assert table.best("region") in OWN_REGIONS[table.label], (table.label, table.best("region"))
        own = [table.names.index(n) for n in OWN_REGIONS[table.label]]
        assert table.enrichment[own].max() > 2.0
        # the regions inside the field of view share its mass and area; outside_fov is over the whole image
        part = [i for i, k in enumerate(table.kinds) if k == "region" and table.baseline[i] == FOV]
        assert len(part) == len(REGION_NAMES) - 1 and table.row("outside_fov")["baseline"] == IMAGE
        assert table.mass_share[part].sum() == pytest.approx(1.0)
        assert table.area_share[part].sum() == pytest.approx(1.0)
        assert table.row("outside_fov")["mass_share"] == pytest.approx(1 - table.mass_in_fov)
        lo, hi = table.enrichment_ci[own].T
        assert np.all(lo <= table.enrichment[own]) and np.all(table.enrichment[own] <= hi)
    assert {p.name for p in tmp_path.iterdir()} >= {
        "regions.tif",
        "region_table.csv",
        "regions_summary.json",
        "regions_haemorrhage.png",
    }
    back, back_names = read_region_mask(tmp_path / "regions.tif", shape=regions.shape)
    np.testing.assert_array_equal(back, regions)
    assert back_names[1] == "optic_disc" and back_names[14] == "outside_fov"


def _drawn_retina(h=230, w=300, disc=(120.0, 95.0), fovea=(128.0, 160.0)):
    """A retina nobody on the project drew: tilted disc-fovea axis, another size, noise and a bright label box."""
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    rho = np.hypot((yy - 115) / 105, (xx - 150) / 140)
    img = np.where(rho <= 1, 120 - 30 * rho**2, 0.0)
    img += 90 * np.exp(-((yy - disc[0]) ** 2 + (xx - disc[1]) ** 2) / (2 * 6.0**2))
    img -= 35 * np.exp(-((yy - fovea[0]) ** 2 + (xx - fovea[1]) ** 2) / (2 * 14.0**2)) * (rho <= 1)
    img[210:225, 260:295] = 230  # burnt-in text box outside the field of view
    img += np.random.default_rng(0).normal(0, 2, img.shape)
    return np.stack([img, 0.6 * img], axis=-1)


def test_landmarks_on_a_hand_drawn_retina():
    lm = find_landmarks(_drawn_retina())
    assert np.hypot(lm.disc[0] - 120, lm.disc[1] - 95) <= 4
    assert np.hypot(lm.fovea[0] - 128, lm.fovea[1] - 160) <= 5
    regions = build_regions(lm)
    ids = {n: i + 1 for i, n in enumerate(REGION_NAMES)}
    assert regions[120, 95] == ids["optic_disc"] and regions[128, 160] == ids["macula"]
    assert regions[215, 270] == ids["outside_fov"]
    # superior = up: a point above the fovea in the periphery is superior; temporal = away from the disc
    assert REGION_NAMES[regions[30, 200] - 1].endswith("superotemporal")
    assert REGION_NAMES[regions[185, 70] - 1].endswith("inferonasal")
    # given points replace the detection
    given = find_landmarks(_drawn_retina(), disc=(100, 80), fovea=(110, 150))
    assert given.disc == (100.0, 80.0) and given.source == "given"
    with pytest.raises(ValueError, match="outside"):
        find_landmarks(_drawn_retina(), disc=(400, 10))


def test_region_table_matches_its_definition():
    rng = np.random.default_rng(3)
    regions = np.zeros((9, 14), np.int64)
    regions[:, 5:] = 3
    regions[2:5, 2:4] = 7
    maps = rng.gamma(1.0, 1.0, size=(6, 9, 14))
    t = region_table(maps, regions, names={3: "right", 7: "box"}, n_boot=300, seed=1, label="x")
    g = maps.mean(0)
    for rid, name in ((0, "unassigned"), (3, "right"), (7, "box")):
        r = t.row(name)
        assert r["mass_share"] == pytest.approx(g[regions == rid].sum() / g.sum())
        assert r["area_share"] == pytest.approx((regions == rid).mean())
        assert r["enrichment"] == pytest.approx(r["mass_share"] / r["area_share"])
        assert r["mass_lo"] <= r["mass_share"] <= r["mass_hi"]
    # identical images: every resample is the same map, so the interval collapses onto the estimate
    same = region_table(np.repeat(maps[:1], 5, axis=0), regions, names={3: "right", 7: "box"}, n_boot=50)
    np.testing.assert_allclose(same.mass_ci[:, 0], same.mass_share)
    np.testing.assert_allclose(same.mass_ci[:, 1], same.mass_share)
    with pytest.raises(ValueError, match="do not match"):
        region_table(maps[:, :8], regions)
    with pytest.raises(ValueError, match="no mass"):
        region_table(np.zeros((2, 9, 14)), regions)


def test_user_region_mask(tmp_path):
    import tifffile

    regions = np.zeros((20, 30), np.uint16)
    regions[5:15, 10:20] = 42
    tifffile.imwrite(tmp_path / "mine.tif", regions)
    data, names = read_region_mask(tmp_path / "mine.tif", shape=(20, 30))
    assert names == {42: "region_42", 0: "unassigned"}
    maps = np.zeros((3, 20, 30))
    maps[:, 5:15, 10:20] = 1.0
    run = run_regions({"lab": maps}, RegionsConfig(n_boot=0), regions=data, region_names=names)
    landmarks, tables = run.landmarks, run.tables
    assert landmarks is None and tables[0].row("region_42")["mass_share"] == pytest.approx(1.0)
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((20, 30), np.float32))
    with pytest.raises(ValueError, match="integer image"):
        read_region_mask(tmp_path / "float.tif")
    with pytest.raises(ValueError, match=r"region mask is \(20, 30\) but the maps are \(21, 30\)"):
        read_region_mask(tmp_path / "mine.tif", shape=(21, 30))
    lm = Landmarks((5.0, 8.0), (6.0, 20.0), np.nan, np.ones((20, 30), bool), (10.0, 15.0), np.eye(2), (10.0, 15.0))
    write_region_mask(tmp_path / "built.tif", build_regions(lm), landmarks=lm)
    assert read_region_mask(tmp_path / "built.tif")[1][2] == "macula"
