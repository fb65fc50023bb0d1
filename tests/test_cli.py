"""The ``global-xai`` CLI: explain and peppr on the shipped sample, clear errors, method listing."""

import json

import pytest

from napari_global_xai.cli import main
from napari_global_xai.samples import SAMPLE_STACK


def test_list_methods(capsys):
    assert main(["--list-methods"]) == 0
    out = capsys.readouterr().out
    for name in ("ig", "gradcam", "igos", "igos++", "occlusion", "smoothgrad"):
        assert f"\n{name} " in "\n" + out


def test_bad_inputs_exit_1_with_a_clear_message(tmp_path, capsys):
    (tmp_path / "broken.tif").write_bytes(b"not a tiff at all")
    assert main(["explain", str(tmp_path / "broken.tif"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "global-xai explain: error:" in err and "broken.tif" in err
    assert main(["explain", str(SAMPLE_STACK), "--model", str(tmp_path / "w.pt"), "--out", str(tmp_path)]) == 1
    assert "give the model's card" in capsys.readouterr().err


def _first_images_of_the_sample(folder, n):
    """The sample's first ``n`` images as a TIFF stack with its labels CSV beside it (as a user's export)."""
    import numpy as np

    from napari_global_xai.data import write_labels_csv, write_stack_tiff
    from napari_global_xai.samples import load_sample_stack

    part = load_sample_stack().subset(np.arange(n))
    write_stack_tiff(folder / "uwf_part.tif", np.asarray(part.pixels), image_ids=part.image_ids)
    write_labels_csv(part.labels, folder / "uwf_part.csv")
    return folder / "uwf_part.tif", part.labels


@pytest.mark.slow
def test_explain_then_peppr_on_part_of_the_sample(tmp_path, capsys):
    """Explain then PEPPR from the command line on the sample's first 24 images (a third of the cost of all 64; every
    label's diagonal gap clears the bar by 0.19-0.68 here, measured, against 0.25-0.55 on all 64)."""
    stack, labels = _first_images_of_the_sample(tmp_path, 24)
    out = tmp_path / "gc"
    assert main(["explain", str(stack), "--method", "gradcam", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    positives = labels.values.astype(bool)  # subset "positive": one map per (image, label) the image is positive for
    assert f"gradcam: {int(positives.sum())} image-wise maps of 24 images" in text
    summary = json.loads((out / "explain_summary.json").read_text())
    haemorrhage = int(positives[:, list(labels.names).index("haemorrhage")].sum())
    assert summary["maps_per_label"]["haemorrhage"] == haemorrhage > 5 and summary["subset"] == "positive"
    assert summary["provenance"]["inputs"][0]["path"].endswith("uwf_part.tif")
    peppr_out = tmp_path / "peppr"
    assert (
        main(
            [
                "peppr",
                str(stack),
                "--global-maps",
                str(out),
                "--out",
                str(peppr_out),
                "--random-seeds",
                "1",
                # a coarse grid (0 and 1 are added), a sixth of the default grid's cost
                "--fractions",
                "0.05",
                "0.3",
                "--quiet",
            ]
        )
        == 0
    )
    result = json.loads((peppr_out / "peppr_summary.json").read_text())
    rows = {(r["map"], r["label"]): r for r in result["table"]}
    for label in ("haemorrhage", "peripheral_lesion", "disc_swelling", "arcade_lesion"):
        assert rows[(label, label)]["gap"] > rows[(label, label)]["random_gap"] + 0.1
    for name in ("peppr.png", "peppr_curves.csv", "erased_overall.tif", "restored_overall.tif"):
        assert (peppr_out / name).stat().st_size > 0


#: Sample images positive for arcade_lesion (uwf_sample.csv)
ARCADE_POSITIVES = (5, 8, 20, 28, 32, 35, 37, 39, 45, 48, 50, 52, 53, 54, 55, 56)


@pytest.mark.slow
def test_sag_on_the_sample_finds_the_two_arcades(tmp_path, capsys):
    """The stack summary of arcade_lesion positives: the dominant patches sit in the two planted arcade regions."""
    import csv

    from napari_global_xai.samples import SAMPLE_LABELS

    with open(SAMPLE_LABELS) as f:
        assert tuple(i for i, row in enumerate(csv.DictReader(f)) if row["arcade_lesion"] == "1") == ARCADE_POSITIVES
    import numpy as np

    from napari_global_xai.sag import grid_for, patch_masks
    from napari_global_xai.samples import load_ground_truth

    out = tmp_path / "sag"
    assert (
        main(
            [
                "sag",
                str(SAMPLE_STACK),
                "--label",
                "arcade_lesion",
                "--method",
                "gradcam",
                # the first 8 of the 16 positives: the top 4 patches sit in the arcades at frequencies 0.5-0.25,
                # the 5th patch at 0 (measured), at half the cost of all 16
                "--images",
                *[str(i) for i in ARCADE_POSITIVES[:8]],
                "--max-root-size",  # roots of up to 4 patches: the same patch frequencies as 6 (measured), 2/3 the time
                "4",
                "--out",
                str(out),
                "--figure-formats",
                "png",
                "svg",
                "--quiet",
            ]
        )
        == 0
    )
    summary = json.loads((out / "sag_summary.json").read_text())
    assert summary["n_images"] == 8 and summary["grid"] == [6, 8]
    regions = load_ground_truth()["regions"]
    masks = patch_masks((384, 512), tuple(grid_for((384, 512))))
    freq = np.asarray(summary["patch_frequency"])
    top = np.argsort(-freq)[:4]
    in_sup = [bool((masks[p] & regions["superior_arcade"]).any()) for p in top]
    in_inf = [bool((masks[p] & regions["inferior_arcade"]).any()) for p in top]
    assert all(s or i for s, i in zip(in_sup, in_inf)) and any(in_sup) and any(in_inf)
    first = summary["images"][0]
    assert (out / f"sag_{first}.png").read_bytes().startswith(b"\x89PNG")
    svg = (out / f"sag_{first}.svg").read_text()
    assert "<svg" in svg and "<image" in svg  # a vector figure with the image patches embedded per node


def test_help_is_plain_text(capsys):
    """Help reads as a terminal shows it: no reST markup from docstrings."""
    from napari_global_xai.cli import build_parser

    parser = build_parser()
    texts = [parser.format_help()]
    for action in parser._subparsers._group_actions:
        texts += [sub.format_help() for sub in action.choices.values()]
    for text in texts:
        assert "``" not in text and ":mod:" not in text and ":func:" not in text, text[:200]
