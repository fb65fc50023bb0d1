"""The README's cohort picture (docs/cohort_fp.png), computed by the README's own two commands on the shipped sample.

The demo model learnt the planted shortcut for ``peripheral_lesion`` (a corner marker burnt into the image): its false
positives all carry the marker, and their global map puts a larger share of its mass on the marker boxes and a
smaller one on the peripheral-lesion region than the true positives' map. The test runs the commands as the README
writes them (read from its Cohort explorer section), checks the cohort folder against an independent numpy mean of the
stored maps and the shares against the sample's ground truth, and keeps the figure the command drew (with
``cohort/drawing.py``) in tests/_artifacts, and in docs/ for the README with GLOBAL_XAI_UPDATE_DOCS=1.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from napari_global_xai.cli import main
from napari_global_xai.cohort import drawing
from napari_global_xai.cohort.result import FILES, open_cohort
from napari_global_xai.data.synthetic import marker_box
from napari_global_xai.explain.result import open_explain
from napari_global_xai.samples import SAMPLE_LABELS, load_ground_truth

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "_artifacts"
PICTURE = "cohort_fp.png"
LABEL = "peripheral_lesion"


def _readme_commands() -> list[list[str]]:
    """The commands of the README's Cohort explorer section, as argument lists (after ``global-xai``)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Cohort explorer", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    joined = " ".join(line.split("#", 1)[0].replace("\\", " ") for line in block.splitlines())
    return [shlex.split(c)[1:] for c in re.split(r"(?=\bglobal-xai )", joined) if c.strip()]


def _local(argv: list[str], outs: dict[str, Path]) -> list[str]:
    """``argv`` with the README's sample paths taken from this checkout and its output folders replaced."""
    return [str(outs[a]) if a in outs else str(ROOT / a) if a.startswith("sample_data/") else a for a in argv]


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """The README's two commands on the sample; the figure the cohort command drew is kept for inspection."""
    explain_args, cohort_args = _readme_commands()
    assert explain_args[0] == "explain" and cohort_args[0] == "cohort"
    readme_out = explain_args[explain_args.index("--out") + 1]
    assert cohort_args[1] == readme_out  # the cohort command reads the explain command's folder
    root = tmp_path_factory.mktemp("cohort_fp")
    out, cohort = root / "explain", root / "cohort"
    outs = {readme_out: out, cohort_args[cohort_args.index("--out") + 1]: cohort}
    draw_cohort, drawn = drawing.draw_cohort, {}

    def keep(fig, result, anatomy=None):
        draw_cohort(fig, result, anatomy)
        drawn.update(fig=fig, anatomy=anatomy)

    assert main([*_local(explain_args, outs), "--device", "cpu", "--quiet"]) == 0
    with mock.patch.object(drawing, "draw_cohort", keep):  # CohortResult.write imports it when it draws
        assert main([*_local(cohort_args, outs), "--quiet"]) == 0
    return out, cohort, drawn


def _outcomes(out) -> tuple[np.ndarray, np.ndarray]:
    """False and true positives at 0.5, from the labels CSV and the run's predictions CSV (csv module only)."""
    with open(SAMPLE_LABELS, newline="") as handle:
        truth = {r["image"]: int(r[LABEL]) for r in csv.DictReader(handle)}
    with open(Path(out) / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    t = np.array([truth[r["image"]] for r in rows])
    predicted = np.array([float(r[f"p_{LABEL}"]) >= 0.5 for r in rows])
    return predicted & (t == 0), predicted & (t == 1)


def _share(m: np.ndarray, region: np.ndarray) -> float:
    return float(m[region].sum() / m.sum())


def test_false_positives_carry_the_marker_and_their_map_shows_it(readme_run):
    out, cohort, drawn = readme_run
    fp, tp = _outcomes(out)
    truth = load_ground_truth()
    has_marker = truth["artefacts"].reshape(len(fp), -1).any(axis=1)
    assert fp.sum() >= 2 and has_marker[fp].all(), (fp.sum(), has_marker[fp])
    assert has_marker.mean() < 0.5  # the marker is rare in the study, common among the false positives

    # the cohort folder: the false positives' mean map beside the true positives' (the rest of the stored maps)
    result = open_cohort(cohort)
    assert result.planes == [LABEL] and result.n_selected == fp.sum()
    assert result.cohort_count == [fp.sum()] and result.reference_count == [tp.sum()]
    run = open_explain(out)
    maps = np.asarray(run.image_maps[:, run.targets.index(LABEL)], np.float64)
    assert np.asarray(run.computed)[:, 0].tolist() == (fp | tp).tolist()  # --subset predicted: TPs and FPs only
    fp_mean, tp_mean = maps[fp].mean(axis=0), maps[tp].mean(axis=0)
    np.testing.assert_allclose(result.cohort[0], fp_mean, rtol=1e-5, atol=1e-12)  # the TIFF holds float32
    np.testing.assert_allclose(result.reference[0], tp_mean, rtol=1e-5, atol=1e-12)

    # the README's claim, from the sample's ground truth: the false positives' map sits on the marker boxes (0.8 %
    # of the image), not on the peripheral-lesion region, unlike the true positives'
    marker = np.zeros(fp_mean.shape, bool)
    for side in ("L", "R"):
        marker[marker_box(side)] = True
    lesion = truth["regions"][LABEL]
    shares = {name: (_share(m, marker), _share(m, lesion)) for name, m in (("FP", result.cohort[0]), ("TP", tp_mean))}
    print(f"{fp.sum()} FP, {tp.sum()} TP; marker area {marker.mean():.2%}; (marker, lesion) mass shares", shares)
    (fp_marker, fp_lesion), (tp_marker, tp_lesion) = shares["FP"], shares["TP"]
    assert fp_marker == pytest.approx(_share(fp_mean, marker), rel=1e-4)
    assert fp_marker > 5 * marker.mean()  # several times the marker's share of the image
    assert fp_marker > 2 * tp_marker  # README: 8.5 % vs 2.7 %
    assert fp_lesion < 0.5 * tp_lesion  # README: 4.9 % vs 31 %

    # the figure the cohort command drew: cohort and reference on one scale, their difference red on the marker
    fig = drawn["fig"]
    panels = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.get_title() for ax in panels]
    assert titles == [
        f"{LABEL} · cohort ({fp.sum()} maps)",
        f"{LABEL} · reference (rest, {tp.sum()} maps)",
        f"{LABEL} · cohort − reference",
    ]
    shown = [ax.get_images()[-1] for ax in panels]  # over the cohort's mean anatomy
    assert drawn["anatomy"] is not None and all(len(ax.get_images()) == 2 for ax in panels)
    factor = shown[0].get_array().max() / result.cohort[0].max()
    for image, data in zip(shown, (result.cohort[0], result.reference[0], result.difference[0])):
        np.testing.assert_allclose(np.asarray(image.get_array()), data * factor, rtol=1e-6, atol=1e-12)
    assert shown[0].get_clim() == shown[1].get_clim()
    low, high = shown[2].get_clim()
    assert low == -high and result.difference[0][marker].sum() > 0

    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(cohort / FILES.figure, ARTIFACTS / PICTURE)
    if os.environ.get("GLOBAL_XAI_UPDATE_DOCS"):  # refresh the README's picture on request only
        shutil.copyfile(cohort / FILES.figure, ROOT / "docs" / PICTURE)
