"""The cohort explorer's core and CLI (issue #23): the cohort's global maps equal an independent mean over the
selected images' stored maps; the row filter reads only comparisons of columns; the folder renders in the report.

The explain run is real (a tiny CNN, ``saliency``, every pair computed) over 14 images of 20 × 30 with a labels CSV
holding two labels, an age and a site column.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_global_xai.analysis_config import CohortConfig
from napari_global_xai.cohort.pipeline import run_cohort
from napari_global_xai.cohort.table import outcomes
from napari_global_xai.cohort.where import select_rows
from napari_global_xai.config import ExplainConfig
from napari_global_xai.control import Cancelled, RunControl
from napari_global_xai.errors import InputError, UsageError
from napari_global_xai.explain.result import open_explain

from _tiny_nets import two_label_model

H, W, N = 20, 30, 14
LABELS = ["near", "far"]


def _explain(folder, compute="all", map_dtype=None):
    from napari_global_xai.data import LabelsTable, read_stack, write_labels_csv
    from napari_global_xai.data.readers import write_stack_tiff
    from napari_global_xai.explain.pipeline import run_explain

    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"img{i:02d}" for i in range(N)]
    write_stack_tiff(folder / "stack.tif", rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8), ids)
    table = LabelsTable(
        ids,
        LABELS,
        np.stack([np.arange(N) % 2, (np.arange(N) // 3) % 2], axis=1).astype(np.uint8),
        laterality=np.array(["L", "R"] * (N // 2)),
        metadata={"age": np.arange(40, 40 + 3 * N, 3), "site": np.array(["A", "B"] * (N // 2))},
    )
    write_labels_csv(table, folder / "stack.csv")
    torch.manual_seed(2)
    model = two_label_model(H, W)
    stack = read_stack(folder / "stack.tif")
    config = ExplainConfig(method="saliency", compute=compute, chunk_size=4)
    run_explain(stack, model, config, out_dir=folder / "out", map_dtype=map_dtype)
    return folder / "out", folder / "stack.csv"


@pytest.fixture(scope="module")
def explained(tmp_path_factory, one_torch_thread):
    return _explain(tmp_path_factory.mktemp("cohort") / "all")


def _independent(out, csv, label, rows):
    """The mean over ``rows``' stored maps of ``label``, with numpy (no package code but the folder's reader)."""
    run = open_explain(out)
    j = run.targets.index(label)
    maps = np.asarray(run.image_maps[:, j], np.float64)
    use = [i for i in rows if run.computed[i, j] and np.any(maps[i] != 0)]
    return maps[use].mean(axis=0), len(use)


def _false_positives(out, csv, label, threshold=0.5):
    import csv as csv_module

    run = open_explain(out)
    with open(csv, newline="") as handle:
        truth = {r["image"]: int(r[label]) for r in csv_module.DictReader(handle)}
    prob = run.probabilities[:, run.model_labels.index(label)]
    return [i for i, image in enumerate(run.image_ids) if truth[image] == 0 and prob[i] >= threshold]


def test_cohort_maps_equal_an_independent_mean_over_the_selected_maps(explained):
    out, csv = explained
    result = run_cohort(out, CohortConfig(where="site == 'B' and age >= 50", label="far"), labels_csv=csv)
    rows = [i for i in range(N) if i % 2 == 1 and 40 + 3 * i >= 50]
    expected, n = _independent(out, csv, "far", rows)
    assert result.n_selected == len(rows) and result.cohort_count == [n]
    np.testing.assert_allclose(result.cohort[0], expected, rtol=1e-6, atol=1e-12)
    stored = open_explain(out).global_maps.get("far")
    np.testing.assert_allclose(result.reference[0], stored)  # reference "global": the run's stored map
    np.testing.assert_allclose(result.difference[0], expected - stored, rtol=1e-6, atol=1e-12)


def test_false_positive_cohort_and_rest_and_study_references(explained):
    out, csv = explained
    threshold = float(np.median(open_explain(out).probabilities[:, 0]))  # some predicted positives either way
    fp = _false_positives(out, csv, "near", threshold)
    assert fp, "the fixture has no false positive at the median threshold"
    for reference, rows in (("rest", [i for i in range(N) if i not in fp]), ("study", list(range(N)))):
        config = CohortConfig(where="outcome == 'FP'", label="near", threshold=threshold, reference=reference)
        result = run_cohort(out, config, labels_csv=csv)
        np.testing.assert_allclose(result.cohort[0], _independent(out, csv, "near", fp)[0], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(result.reference[0], _independent(out, csv, "near", rows)[0], rtol=1e-6, atol=1e-12)
        assert result.summary()["outcomes_in_cohort"]["FP"] == len(fp)


def test_every_label_and_the_overall_map(explained):
    out, csv = explained
    result = run_cohort(out, CohortConfig(where="laterality == 'L'"), labels_csv=csv, rows=[0, 2, 4, 5])
    assert result.planes == [*LABELS, "overall"] and result.n_selected == 3  # image 5 is a right eye
    means = [_independent(out, csv, name, [0, 2, 4])[0] for name in LABELS]
    for p, mean in enumerate(means):
        np.testing.assert_allclose(result.cohort[p], mean, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(result.cohort[2], np.mean(means, axis=0), rtol=1e-6, atol=1e-12)


def test_float32_store_and_the_run_subset_give_the_stored_global_map_to_the_bit(tmp_path, one_torch_thread):
    out, csv = _explain(tmp_path, compute="subset", map_dtype="float32")
    result = run_cohort(out, CohortConfig(where="truth == 1", label="near"), labels_csv=csv)
    stored = np.asarray(open_explain(out).global_planes[0])
    np.testing.assert_array_equal(result.cohort[0].astype(np.float32), stored)
    with pytest.raises(InputError, match="--compute all"):  # negatives have no stored maps in a subset run
        run_cohort(out, CohortConfig(where="truth == 0", label="near"), labels_csv=csv)


def test_a_cancel_raises_with_nothing_written(explained, tmp_path):
    out, csv = explained
    with pytest.raises(Cancelled):
        run_cohort(out, CohortConfig(), labels_csv=csv, out_dir=tmp_path / "c", control=RunControl(cancel=lambda: True))
    assert not list((tmp_path / "c").glob("cohort_*"))


def test_cli_writes_a_folder_the_report_renders(explained, tmp_path, capsys):
    from napari_global_xai.cli import main
    from napari_global_xai.cohort.result import FILES, open_cohort
    from napari_global_xai.report import build_sections

    out, csv = explained
    dest = tmp_path / "cohort"
    argv = ["cohort", str(out), "--where", "site == 'A'", "--label", "near", "--labels", str(csv), "--out", str(dest)]
    assert main([*argv, "--quiet", "--stack", str(csv.with_suffix(".tif"))]) == 0
    assert "of 14 images" in capsys.readouterr().out
    for name in (FILES.maps, FILES.figure, FILES.table, FILES.summary):
        assert (dest / name).is_file()
    back = open_cohort(dest)
    assert back.n_selected == N // 2 and back.planes == ["near"]
    np.testing.assert_allclose(back.cohort[0], _independent(out, csv, "near", range(0, N, 2))[0], rtol=1e-6)
    titles = [s.title for s in build_sections(dest)]
    assert titles == ["Cohort · site == 'A'"]
    assert main(["cohort", str(out), "--where", "sight == 'A'", "--labels", str(csv), "--out", str(dest)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown column 'sight'" in err and "\n" not in err


@pytest.mark.parametrize(
    "where",
    [
        "__import__('os').system('echo hi')",
        "outcome.__class__",
        "prob * 2 > 1",
        "(lambda: 1)()",
        "[x for x in outcome]",
        "outcome[0] == 'F'",
        "nope == 1",
        "outcome == 1",
        "prob == 'high'",
        "outcome in prob",
        "age",
        "outcome ==",
        "a" * 3000,
    ],
)
def test_filter_refuses_in_one_line(where):
    columns = {
        "outcome": np.array(["FP", "TN", "TP"]),
        "prob": np.array([0.7, 0.1, 0.9]),
        "age": np.array([50, 61, 70]),
        "map": np.array([True, False, True]),
    }
    with pytest.raises(UsageError) as info:
        select_rows(where, columns)
    assert "\n" not in str(info.value) and str(info.value).startswith("--where:")


def test_filter_grammar():
    columns = {
        "outcome": np.array(["FP", "TN", "TP", "FN"]),
        "prob": np.array([0.7, 0.1, 0.9, 0.3]),
        "age": np.array([50, 61, 70, 45]),
        "map": np.array([True, False, True, True]),
    }

    def rows(where):
        return np.nonzero(select_rows(where, columns))[0].tolist()

    assert rows("outcome == 'FP'") == [0]
    assert rows("outcome in ['FP', 'FN'] and prob >= 0.3") == [0, 3]
    assert rows("outcome not in ('TP',) and age < 65") == [0, 1, 3]
    assert rows("not (age < 60)") == [1, 2]
    assert rows("0.2 <= prob < 0.8") == [0, 3]
    assert rows("map and age != 70") == [0, 3]
    assert rows("age > -1 and True") == [0, 1, 2, 3]
    assert rows("") == rows(None) == [0, 1, 2, 3]


def test_outcomes():
    truth = np.array([1, 0, 1, 0, -1])
    predicted = np.array([True, True, False, False, True])
    assert outcomes(truth, predicted).tolist() == ["TP", "FP", "FN", "TN", ""]
