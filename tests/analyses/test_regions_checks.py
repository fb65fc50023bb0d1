"""Regions a reviewer can trust: shares inside the field of view (against an independent computation), disc and
fovea checked for plausibility (refused in one line when detected and implausible), and the folder contract."""

import numpy as np
import pytest

from napari_global_xai.analyses.landmarks import Landmarks, field_of_view, find_landmarks, landmark_problems
from napari_global_xai.analyses.regions import FOV, IMAGE, region_table
from napari_global_xai.analyses.regions_pipeline import run_regions
from napari_global_xai.analyses.regions_result import FILES, RegionsResult
from napari_global_xai.analysis_config import RegionsConfig
from napari_global_xai.errors import InputError


def test_shares_inside_the_field_of_view_equal_an_independent_computation():
    rng = np.random.default_rng(7)
    h, w = 12, 16
    yy, xx = np.mgrid[0:h, 0:w]
    fov = np.hypot((yy - 5.5) / 6, (xx - 7.5) / 8) <= 1.0
    regions = np.where(xx < 6, 1, 2)
    regions[~fov] = 3  # "outside" by construction
    regions[0:3, 6:10] = 4  # straddles the rim: only its inside part counts
    names = {1: "west", 2: "east", 3: "outside", 4: "top"}
    maps = rng.gamma(1.0, 1.0, size=(5, h, w))
    t = region_table(maps, regions, names=names, n_boot=200, seed=2, fov=fov)
    g = maps.mean(0)
    for rid, name in ((1, "west"), (2, "east"), (4, "top")):
        inside = (regions == rid) & fov
        r = t.row(name)
        assert r["baseline"] == FOV
        assert r["mass_share"] == pytest.approx(g[inside].sum() / g[fov].sum())
        assert r["area_share"] == pytest.approx(inside.sum() / fov.sum())
        assert r["enrichment"] == pytest.approx((g[inside].sum() / g[fov].sum()) / (inside.sum() / fov.sum()))
        assert r["mass_lo"] <= r["mass_share"] <= r["mass_hi"]
    out = t.row("outside")
    assert out["baseline"] == IMAGE
    assert out["mass_share"] == pytest.approx(g[~fov].sum() / g.sum())
    assert out["area_share"] == pytest.approx((~fov).mean())
    assert t.mass_in_fov == pytest.approx(g[fov].sum() / g.sum())
    # a map uniform over the field of view and zero outside (as saliency of an input-multiplying method is): over
    # the whole image every inner region's ratio is inflated by 1 / (field of view's share); inside it, 1
    flat = np.repeat(fov[None].astype(float), 2, axis=0)
    whole = region_table(flat, regions, names=names, n_boot=0)
    inner = region_table(flat, regions, names=names, n_boot=0, fov=fov)
    assert whole.row("west")["enrichment"] == pytest.approx(1 / fov.mean())
    assert inner.row("west")["enrichment"] == pytest.approx(1.0)
    assert whole.baseline == [IMAGE] * len(whole.names)


@pytest.fixture(scope="module")
def sample_anatomies():
    from napari_global_xai.samples import load_sample_stack

    stack = load_sample_stack()
    stored = stack.in_frame("stored")
    right = np.nonzero(np.asarray(stack.laterality) == "R")[0]
    return {
        "left": stack.to_left_eye().mean_image(),
        "both eyes, no laterality": stored.mean_image(),
        "right eyes not mirrored": stored.subset(right).mean_image(),
    }


def test_sample_landmarks_are_plausible_and_planted_failures_are_refused_in_one_line(sample_anatomies, tmp_path):
    from napari_global_xai.data.synthetic import GEOMETRY

    good = find_landmarks(sample_anatomies["left"])
    assert good.problems == [] and np.hypot(*np.subtract(good.fovea, GEOMETRY.fovea)) <= 10
    maps = {"lab": np.ones((2,) + good.fov.shape)}
    for case, cause in (
        ("both eyes, no laterality", "mixes left and right eyes"),
        ("right eyes not mirrored", "not mirrored"),
    ):
        anatomy = sample_anatomies[case]
        assert any(cause in p for p in find_landmarks(anatomy).problems), case
        with pytest.raises(InputError) as err:
            run_regions(maps, RegionsConfig(n_boot=0), anatomy=anatomy, out_dir=tmp_path / "refused")
        text = str(err.value)
        assert "\n" not in text and "not plausible" in text and "--disc ROW COL --fovea ROW COL" in text, text
        assert not (tmp_path / "refused" / FILES.table).exists()
    # given by hand they are used, and what is implausible about them is still said
    given = run_regions(
        maps, RegionsConfig(n_boot=0), anatomy=sample_anatomies["left"], disc=(190, 196), fovea=(26, 348)
    )
    assert given.landmarks.source == "given" and any("rim" in p or "outside" in p for p in given.landmarks.problems)


def test_the_issue_fovea_on_the_border_is_implausible(sample_anatomies):
    """(26, 348) on a 384×512 sample anatomy (the issue's report) against about (192, 282)."""
    fov, centre, axes, radii = field_of_view(sample_anatomies["left"])
    bad = Landmarks((190.0, 196.0), (26.0, 348.0), 19.4, fov, centre, axes, radii)
    problems = landmark_problems(bad)
    assert any("fovea at (26, 348)" in p for p in problems), problems
    assert landmark_problems(Landmarks((190.0, 196.0), (192.0, 282.0), 19.4, fov, centre, axes, radii)) == []


def test_regions_folder_round_trips_and_the_report_shows_the_baseline(tmp_path):
    from napari_global_xai.report import build_sections

    h, w = 20, 30
    regions = np.ones((h, w), np.int64)
    regions[:, 20:] = 2
    regions[:2] = 3
    names = {1: "west", 2: "east", 3: "outside_fov"}
    maps = {"a": np.random.default_rng(0).random((4, h, w)), "b": np.random.default_rng(1).random((4, h, w))}
    run = run_regions(maps, RegionsConfig(n_boot=50), regions=regions, region_names=names, out_dir=tmp_path)
    assert run.fov_source == "region mask" and run.tables[0].row("west")["baseline"] == FOV
    back = RegionsResult.open(tmp_path)
    assert back.fov_source == "region mask" and back.landmarks is None
    np.testing.assert_array_equal(back.regions, regions)
    for a, b in zip(run.tables, back.tables):
        assert a.label == b.label and a.names == b.names and a.baseline == b.baseline
        np.testing.assert_allclose(b.enrichment, a.enrichment, rtol=1e-5)
        np.testing.assert_allclose(b.enrichment_ci, a.enrichment_ci, rtol=1e-5)
        assert b.mass_in_fov == pytest.approx(a.mass_in_fov)
    (section,) = [s for s in build_sections(tmp_path) if s.title == "Region table"]
    facts = dict(section.facts)
    assert facts["field of view"] == "region mask" and "inside the field of view" in facts["baseline"]
    assert [t.caption.split(":")[0] for t in section.tables] == ["a", "b"]
    assert section.tables[0].header[2] == "baseline" and len(section.figures) == 2
