"""`global-xai sanity | compare | regions` end to end on the sample, and their one-line errors."""

import csv
import json

import numpy as np
import pytest
import tifffile

from napari_global_xai.cli import main
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


def _write_sites(path, image_ids, sites):
    with open(path, "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["Image_ID", "scanner", "age"])  # an id column spelled differently, columns the project lacks
        for i, (image_id, site) in enumerate(zip(image_ids, sites)):
            w.writerow([f"{image_id}.png", site, 40 + i % 37])


def test_regions_then_compare_by_label_status(explain_dir, tmp_path, capsys):
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
                str(explain_dir),
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
    summary = json.loads((cmp_out / "compare_summary.json").read_text())
    assert summary["groups"] == ["haemorrhage=1", "haemorrhage=0"] and summary["n_permutations"] == 1000
    assert summary["n_significant_fdr_a_gt_b"] > 0
    top = summary["by_region"][0]
    assert top["region"] in ("macula", "posterior_pole")  # positives' extra evidence sits around the fovea
    mask = tifffile.imread(cmp_out / "compare_significant.tif")
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2}


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
                "2",
                "--depth",
                "1",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "gradcam: passes" in out
    verdicts = json.loads((tmp_path / "sanity.json").read_text())["verdicts"]
    assert list(verdicts) == ["gradcam"]
    with pytest.raises(SystemExit):
        main(["sanity", str(SAMPLE_STACK), "--out", str(tmp_path), "--method", "ig", "--param", "n_steps=3"])
