"""`global-xai sanity | compare | regions` end to end on the sample, and their one-line errors."""

import csv
import json

import numpy as np
import pytest
import tifffile

from napari_global_xai.cli import main
from napari_global_xai.data.synthetic import DISEASE_LABELS
from napari_global_xai.samples import SAMPLE_LABELS, SAMPLE_STACK


@pytest.fixture(scope="module")
def explain_dir(tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("explain")
    assert (
        main(
            [
                "explain",
                str(SAMPLE_STACK),
                "--out",
                str(out),
                "--method",
                "gradcam",
                "--device",
                "cpu",
                "--quiet",
                "--targets",
                "haemorrhage",
                "arcade_lesion",
                "--compute",
                "all",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def raw_explain_dir(tmp_path_factory, one_torch_thread):
    """Grad-CAM maps of every image for each disease label, un-normalised (what compare compares by default)."""
    out = tmp_path_factory.mktemp("explain_raw")
    args = ["explain", str(SAMPLE_STACK), "--out", str(out), "--method", "gradcam", "--device", "cpu", "--quiet"]
    args += ["--normalisation", "none", "--map-dtype", "float32", "--compute", "all", "--targets", *DISEASE_LABELS]
    assert main(args) == 0
    return out


def _write_sites(path, image_ids, sites):
    with open(path, "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["Image_ID", "scanner", "age"])  # an id column spelled differently, columns the project lacks
        for i, (image_id, site) in enumerate(zip(image_ids, sites)):
            w.writerow([f"{image_id}.png", site, 40 + i % 37])


def test_regions_then_compare_by_label_status(explain_dir, raw_explain_dir, tmp_path, capsys):
    reg_out = tmp_path / "regions"
    assert (
        main(
            [
                "regions",
                str(explain_dir),
                "--stack",
                str(SAMPLE_STACK),
                "--out",
                str(reg_out),
                "--n-boot",
                "100",
                "--quiet",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "haemorrhage" in text and "most enriched: macula" in text
    with open(reg_out / "region_table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["label"] for r in rows} == {"haemorrhage", "arcade_lesion"}
    # compare haemorrhage maps of haemorrhage-positive vs negative images (label status read from the labels CSV)
    cmp_out = tmp_path / "compare"
    assert (
        main(
            [
                "compare",
                str(raw_explain_dir),
                "--csv",
                str(SAMPLE_LABELS),
                "--column",
                "haemorrhage",
                "--label",
                "haemorrhage",
                "--regions",
                str(reg_out / "regions.tif"),
                "--out",
                str(cmp_out),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "compared: raw: attributions as the method made them" in text and "p-floor" in text
    assert "BH declares nothing unless at least" in text and "total evidence: mean total A / B" in text
    summary = json.loads((cmp_out / "compare_summary.json").read_text())
    assert summary["groups"] == ["haemorrhage=1", "haemorrhage=0"] and summary["n_permutations"] == 1000
    assert summary["n_significant_fdr_a_gt_b"] > 0 and summary["n_significant_fdr_b_gt_a"] == 0
    assert summary["normalisation"] == "raw" and summary["p_floor"] <= 1 / 1001
    top = summary["by_region"][0]
    assert top["region"] in ("macula", "posterior_pole")  # positives' extra evidence sits around the fovea
    mask = tifffile.imread(cmp_out / "compare_significant.tif")
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2}
    # the default explain run's maps sum to 1 per image: refused for a raw comparison in one line, shares allowed
    base = ["compare", str(explain_dir), "--csv", str(SAMPLE_LABELS), "--column", "haemorrhage"]
    base += ["--label", "haemorrhage", "--device", "cpu", "--quiet", "--n-permutations", "200"]
    assert main([*base, "--out", str(tmp_path / "refused")]) == 1
    err = capsys.readouterr().err
    assert "'global-xai explain ... --normalisation none --map-dtype float32'" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "refused").exists()
    assert main([*base, "--maps-as", "shares", "--out", str(tmp_path / "shares")]) == 0
    assert "compared: shares: each map divided by its total" in capsys.readouterr().out


def test_compare_reads_any_csv_column_and_reports_bad_input(explain_dir, tmp_path, capsys):
    with open(explain_dir / "predictions.csv", newline="") as handle:
        ids = [r["image"] for r in csv.DictReader(handle)]
    sites = np.where(
        np.arange(len(ids)) % 3 == 0, "optos_a", np.where(np.arange(len(ids)) % 3 == 1, "optos_b", "clarus")
    )
    meta = tmp_path / "meta.csv"
    _write_sites(meta, ids, sites)
    out = tmp_path / "c"
    assert (
        main(
            [
                "compare",
                str(explain_dir),
                "--csv",
                str(meta),
                "--column",
                "scanner",
                "--groups",
                "clarus",
                "rest",
                "--n-permutations",
                "200",
                "--maps-as",
                "shares",
                "--out",
                str(out),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert json.loads((out / "compare_summary.json").read_text())["n_images"] == [21, 43]
    capsys.readouterr()
    assert (
        main(
            [
                "compare",
                str(explain_dir),
                "--csv",
                str(meta),
                "--column",
                "scanner",
                "--out",
                str(tmp_path / "x"),
                "--quiet",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "scanner has 3 levels" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (
        main(
            [
                "compare",
                str(explain_dir),
                "--csv",
                str(meta),
                "--column",
                "site",
                "--out",
                str(tmp_path / "x"),
                "--quiet",
            ]
        )
        == 1
    )
    assert "no column 'site'; columns: ['Image_ID', 'scanner', 'age']" in capsys.readouterr().err
    assert (
        main(["compare", str(tmp_path), "--csv", str(meta), "--column", "age", "--out", str(tmp_path / "x"), "--quiet"])
        == 1
    )
    assert "not an explain output folder" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert (
        main(
            [
                "compare",
                str(explain_dir),
                "--csv",
                str(meta),
                "--column",
                "age",
                "--maps-as",
                "shares",
                "--out",
                str(blocker / "sub"),
                "--quiet",
            ]
        )
        == 1
    )
    assert "cannot write to output folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # input problems are found before the output folder is made


def test_sanity_cli(tmp_path, capsys, one_torch_thread):
    assert (
        main(
            [
                "sanity",
                str(SAMPLE_STACK),
                "--out",
                str(tmp_path),
                "--method",
                "gradcam",
                "--n-images",
                "6",
                "--no-independent",
                "--n-boot",
                "200",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "gradcam · image-wise: passes: randomised |ρ|" in out and "gradcam · global:" in out
    assert "unrelated pairs" in out and "model-free" in out  # the table's references
    summary = json.loads((tmp_path / "sanity.json").read_text())
    assert list(summary["verdicts"]) == ["gradcam"] and set(summary["judgements"]["gradcam"]) == {"image", "global"}
    with pytest.raises(SystemExit):
        main(["sanity", str(SAMPLE_STACK), "--out", str(tmp_path), "--method", "ig", "--param", "n_steps=3"])


def _pool(a, k=4):
    """Mean over k×k blocks of the last two axes."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // k, k, w // k, k).mean((-3, -1))


def test_compare_on_the_planted_truth_sample_finds_each_planted_region_and_no_artefact(raw_explain_dir):
    """Positives vs negatives of each label (raw Grad-CAM maps, 4×4-pooled to keep it cheap): the family-wise map
    lies in the planted region (dilated by two CAM cells, 32 px), and no more "negatives higher" pixels appear
    outside it than 20 random splits of the same sizes give (benchmarks/bench_compare.py: full size)."""
    from scipy import ndimage

    from napari_global_xai.analyses.compare_pipeline import run_compare
    from napari_global_xai.analyses.explain_inputs import label_maps
    from napari_global_xai.analysis_config import CompareConfig
    from napari_global_xai.explain.result import open_explain
    from napari_global_xai.samples import load_ground_truth

    run = open_explain(raw_explain_dir)
    truth = load_ground_truth()["regions"]
    with open(SAMPLE_LABELS, newline="") as handle:
        status = {r["image"]: r for r in csv.DictReader(handle)}
    config = CompareConfig(n_permutations=500, max_permutations=500)
    rng = np.random.default_rng(0)
    for label in DISEASE_LABELS:
        maps, idx = label_maps(run.image_maps, run.computed, run.targets, label)
        maps = _pool(maps)
        values = np.array([status[run.image_ids[i]][label] for i in idx])
        region = _pool(truth[label].astype(float)) > 0.5
        near = ndimage.distance_transform_edt(~region) <= 8
        real = run_compare(maps, values, config, column=label)
        null_any, null_fwe = [], []
        for k in range(20):
            r = run_compare(maps, rng.permutation(values), CompareConfig(n_permutations=500, seed=k + 1), column=label)
            null_any.append(int((r.significant[~region] > 0).sum()))
            null_fwe.append(int((r.significant_fwe[~region] > 0).sum()))
        fwe, fdr = real.significant_fwe, real.significant
        assert (fwe[region] == 1).sum() >= 50, label  # the planted region is found (peripheral: 7 % of its annulus)
        assert (fwe[~near] > 0).sum() <= max(null_fwe), label  # the family-wise map lies in the region
        assert (fwe[~region] == 2).sum() <= max(null_fwe) and (fdr[~region] == 2).sum() <= max(null_any), label
