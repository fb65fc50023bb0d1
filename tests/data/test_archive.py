"""An archive as a new user brings it: a folder of PNG/TIFF/DICOM files of several sizes, bit depths and channel
layouts, a ';'-delimited CSV with metadata columns, LR as OD/OS, the model's labels in another order, one spelled
in another case and one missing, and a model of the user's own class (defined and trained here)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch import nn

from napari_global_xai.data import LabelsError, read_labels_csv, read_stack
from napari_global_xai.data.csv_layout import inspect_csv
from napari_global_xai.data.labels import InputNotice, write_labels_csv

MODEL_LABELS = ["MH", "DR", "HR", "vessel_sign"]  # the CSV has mh, HR, vessel_sign (another order); DR is missing
INPUT_SIZE = (24, 32)
IDS = ["a_od", "b_os", "c_od", "d_os", "e_od", "f_os"]
CSV_TEXT = """Filename;LR;age;sex;site;vessel_sign;mh;HR;bmi
e_od.tif;OD;71;F;Glasgow;1;0;1;24,5
a_od.png;od;64;M;Dundee;0;1;0;
c_od.png;Od;58;F;Dundee;1;1;0;31
b_os.png;OS;80;M;Glasgow;0;0;1;22,25
f_os.png;os;45;F;Perth;1;1;1;27
d_os.tif;OS;39;M;Perth;0;0;0;19
"""
# ground truth written above, in IDS order (a, b, c, d, e, f)
TRUTH = {"MH": [1, 0, 1, 0, 0, 1], "HR": [0, 1, 0, 0, 1, 1], "vessel_sign": [0, 0, 1, 0, 1, 1]}


class ArchiveNet(nn.Module):
    """The user's own architecture: conv (positive weights, so ReLU is active everywhere) -> mean -> linear."""

    def __init__(self, n_labels: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.head = nn.Linear(4, n_labels)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _rng_image(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """``(folder, csv path, card path, net)``: six images at sizes other than the model's, and a tiny model."""
    root = tmp_path_factory.mktemp("archive")
    folder = root / "images"
    folder.mkdir()
    Image.fromarray(_rng_image((30, 40, 3), np.uint8, 1)).save(folder / "a_od.png")  # 8-bit RGB
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[..., 3] = _rng_image((30, 40), np.uint8, 2)  # alpha must not leak into the pixels
    Image.fromarray(rgba, mode="RGBA").save(folder / "b_os.png")
    Image.fromarray(np.full((30, 40), 100 * 257, np.uint16)).save(folder / "c_od.png")  # 16-bit grey
    tifffile.imwrite(folder / "d_os.tif", np.full((36, 36), 50, np.uint8))  # 8-bit grey, square
    tifffile.imwrite(folder / "e_od.tif", _rng_image((30, 40, 3), np.uint16, 3), photometric="rgb")  # 16-bit RGB
    Image.fromarray(_rng_image((30, 40), np.uint8, 4)).save(folder / "f_os.png")  # 8-bit grey
    csv_path = root / "archive_labels.csv"
    csv_path.write_text(CSV_TEXT, encoding="utf-8")

    from napari_global_xai.models.architectures import ARCHITECTURES, register_architecture

    if "archive_test_net" not in ARCHITECTURES:
        register_architecture("archive_test_net")(ArchiveNet)
    torch.manual_seed(0)
    net = ArchiveNet().eval()
    with torch.no_grad():
        net.conv.weight.uniform_(0.0, 0.1)
        net.conv.bias.fill_(0.05)
    card = {
        "name": "archive_net",
        "labels": MODEL_LABELS,
        "weights": "archive_net.pt",
        "format": "state_dict",
        "architecture": "archive_test_net",
        "architecture_kwargs": {"n_labels": 4},
        "input_channels": [0, 1],
        "input_size": list(INPUT_SIZE),
        "pixel_scale": 255.0,
        "mean": [0.0, 0.0],
        "std": [1.0, 1.0],
        "cam_layer": "conv",
        "harmonise_laterality": True,
    }
    # DR's bias puts exactly three images above p = 0.5 (independent forward on the model-ready pixels)
    with pytest.warns(InputNotice):
        pixels = (
            read_stack(folder, labels=csv_path, resize=INPUT_SIZE, channels=3, dtype=np.uint8)
            .to_left_eye()
            .get(slice(None))
        )  # right eyes mirrored, as the run does
    logits = _forward(net, pixels)
    dr = np.sort(logits[:, 1])
    with torch.no_grad():
        net.head.bias[1] -= float((dr[2] + dr[3]) / 2)
    torch.save(net.state_dict(), root / "archive_net.pt")
    (root / "archive_net.card.json").write_text(json.dumps(card))
    return folder, csv_path, root / "archive_net.card.json", net


def _forward(net, pixels):
    """Logits of harmonised raw pixels (n, H, W, 3) uint8, computed here without the package."""
    x = torch.from_numpy(pixels[..., :2].astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    with torch.no_grad():
        return net(x).double().numpy()


# ------------------------------------------------------------------------------------------------ parsing


def test_archive_csv_is_parsed_by_name(archive):
    _, csv_path, _, _ = archive
    table = read_labels_csv(csv_path, image_ids=IDS, label_names=MODEL_LABELS)
    assert table.image_ids == IDS
    assert table.names == ["MH", "HR", "vessel_sign"]  # model order, model spelling
    assert table.missing == ["DR"]
    for name, values in TRUTH.items():
        np.testing.assert_array_equal(table.column(name), values)
    np.testing.assert_array_equal(table.laterality, ["R", "L", "R", "L", "R", "L"])
    assert list(table.metadata) == ["age", "sex", "site", "bmi"]
    assert table.metadata["age"].dtype == np.int64
    np.testing.assert_array_equal(table.metadata_column("AGE"), [64, 80, 58, 39, 71, 45])
    np.testing.assert_array_equal(table.metadata["sex"], ["M", "M", "F", "M", "F", "F"])
    np.testing.assert_array_equal(table.metadata["site"], ["Dundee", "Glasgow", "Dundee", "Perth", "Glasgow", "Perth"])
    assert table.metadata["bmi"].dtype == np.float64  # decimal commas in a ';' file, NaN where empty
    np.testing.assert_array_equal(table.metadata["bmi"], [np.nan, 22.25, 31.0, 19.0, 24.5, 27.0])
    assert table.split is None


def test_without_model_labels_zero_one_columns_are_labels_and_the_rest_metadata(archive):
    _, csv_path, _, _ = archive
    table = read_labels_csv(csv_path)
    assert table.names == ["vessel_sign", "mh", "HR"] and list(table.metadata) == ["age", "sex", "site", "bmi"]
    matched = table.matched_to(MODEL_LABELS)
    assert matched.names == ["MH", "HR", "vessel_sign"] and matched.missing == ["DR"]
    again = matched.matched_to(MODEL_LABELS)
    np.testing.assert_array_equal(again.values, matched.values)
    assert again.names == matched.names


def test_label_map_and_explicit_columns(tmp_path):
    text = CSV_TEXT.replace("Filename", "scan_ref").replace("LR", "eye_code").replace("HR", "hr_grade")
    path = tmp_path / "renamed.csv"
    path.write_text(text.replace(";", "\t"), encoding="utf-8")
    layout = inspect_csv(path, MODEL_LABELS)
    assert layout.delimiter == "\t" and layout.id_column is None and layout.unsure
    assert layout.missing_labels == ["DR", "HR"]
    assert layout.notes == [
        "no image id column (looked for image, image_id, filename, file, path, id, name)",
        "no column for model label(s) 'DR', 'HR'",
    ]
    with pytest.raises(LabelsError, match=r"renamed\.csv: no image id column.*--id-column"):
        read_labels_csv(path, label_names=MODEL_LABELS)
    table = read_labels_csv(
        path, IDS, MODEL_LABELS, id_column="SCAN_REF", laterality_column="eye_code", label_map=["hr_grade=HR"]
    )
    assert table.names == ["MH", "HR", "vessel_sign"] and table.missing == ["DR"]
    np.testing.assert_array_equal(table.column("HR"), TRUTH["HR"])
    np.testing.assert_array_equal(table.laterality, ["R", "L", "R", "L", "R", "L"])
    assert "eye_code" not in table.metadata and "hr_grade" not in table.metadata
    with pytest.raises(LabelsError, match=r"no column 'nope' for the image id"):
        read_labels_csv(path, label_names=MODEL_LABELS, id_column="nope")
    with pytest.raises(LabelsError, match=r"label map names column 'grade'"):
        read_labels_csv(path, label_names=MODEL_LABELS, id_column="scan_ref", label_map={"grade": "HR"})
    with pytest.raises(LabelsError, match=r"maps 'hr_grade' to 'XX', which is not a model label"):
        read_labels_csv(path, label_names=MODEL_LABELS, id_column="scan_ref", label_map=["hr_grade=XX"])


def test_metadata_survive_write_and_read(archive, tmp_path):
    _, csv_path, _, _ = archive
    table = read_labels_csv(csv_path, IDS, MODEL_LABELS)
    write_labels_csv(table, tmp_path / "out.csv")
    back = read_labels_csv(tmp_path / "out.csv", label_names=MODEL_LABELS)
    np.testing.assert_array_equal(back.values, table.values)
    for name in table.metadata:
        np.testing.assert_array_equal(back.metadata[name], table.metadata[name])


def test_a_model_label_column_that_is_not_binary_names_the_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("image;age;MH\na;70;1\nb;80;2\n", encoding="utf-8")
    with pytest.raises(
        LabelsError,
        match=r"bad\.csv, row 'b' \(line 3\): label 'MH' \(model label 'mh'\) is '2'; "
        r"labels must be 0 or 1$",
    ):
        read_labels_csv(path, label_names=["mh"])
    assert read_labels_csv(path).metadata["MH"].tolist() == [1, 2]  # without label names it is metadata


# ------------------------------------------------------------------------------------------------ images


def test_archive_folder_is_read_at_the_model_size(archive):
    folder, csv_path, card_path, _ = archive
    from napari_global_xai.data.conform import model_input_spec
    from napari_global_xai.models import ModelCard

    spec = model_input_spec(ModelCard.from_json(card_path))
    assert spec == {"resize": INPUT_SIZE, "channels": 3, "dtype": np.dtype("u1")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack = read_stack(folder, labels=csv_path, label_names=MODEL_LABELS, **spec)
    notes = [str(w.message) for w in caught if issubclass(w.category, InputNotice)]
    assert notes == [
        "alpha channel dropped from 1 of 6 image(s)",
        "3 of 6 grey image(s) replicated to RGB",
        "2 of 6 image(s) converted to 8-bit uint8 by full range (from 16-bit (2))",
        "6 of 6 image(s) resized to 24×32 (bilinear, aspect ratio changed; sizes found: 30×40 (5), 36×36 (1))",
    ]
    assert stack.shape == (6, *INPUT_SIZE, 3) and stack.dtype == np.uint8 and stack.image_ids == IDS
    pixels = stack.get(slice(None))
    np.testing.assert_array_equal(pixels[1], np.broadcast_to([10, 20, 30], (*INPUT_SIZE, 3)))  # RGBA: alpha gone
    np.testing.assert_array_equal(pixels[2], 100)  # 16-bit grey 100*257 -> 8-bit 100, in all three channels
    np.testing.assert_array_equal(pixels[3], 50)
    np.testing.assert_array_equal(stack.laterality, ["R", "L", "R", "L", "R", "L"])


def test_dicom_laterality_fills_what_the_csv_does_not_give(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    def dicom(path, keyword, value):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 8, 10, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        if keyword:
            setattr(ds, keyword, value)
        ds.PixelData = np.zeros((8, 10), np.uint8).tobytes()
        ds.save_as(path, enforce_file_format=True)

    dicom(tmp_path / "s1.dcm", "ImageLaterality", "R")
    dicom(tmp_path / "s2.dcm", "Laterality", "L")
    dicom(tmp_path / "s3.dcm", "ImageLaterality", "B")  # both eyes: unknown
    dicom(tmp_path / "s4.dcm", None, None)
    np.testing.assert_array_equal(read_stack(tmp_path).laterality, ["R", "L", "", ""])
    (tmp_path / "labels.csv").write_text("image,eye,x\ns1,,1\ns2,OD,0\ns3,,1\ns4,left,0\n")
    np.testing.assert_array_equal(read_stack(tmp_path).laterality, ["R", "R", "", "L"])  # the CSV wins


# ------------------------------------------------------------------------------------------------ per-label truth


def test_missing_label_alone_uses_predicted_positives(archive):
    folder, csv_path, card_path, net = archive
    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.explain.pipeline import run_explain
    from napari_global_xai.models import load_model

    model = load_model(card_path, device="cpu")
    with pytest.warns(InputNotice):
        stack = read_stack(
            folder, labels=csv_path, label_names=MODEL_LABELS, resize=INPUT_SIZE, channels=3, dtype=np.uint8
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_explain(stack, model, ExplainConfig(method="saliency"))
    notes = [str(w.message) for w in caught if issubclass(w.category, InputNotice)]
    assert notes == [
        "the labels table has no column for model label(s) 'DR': their global maps use the images "
        "predicted positive instead of ground truth (the other labels use ground truth); map a column "
        "to a label with label_map / --label-map CSV_NAME=MODEL_NAME"
    ]
    predicted_dr = 1 / (1 + np.exp(-_forward(net, stack.to_left_eye().get(slice(None)))[:, 1])) > 0.5
    assert predicted_dr.sum() == 3
    expected = np.stack([TRUTH["MH"], predicted_dr, TRUTH["HR"], TRUTH["vessel_sign"]], axis=1).astype(bool)
    np.testing.assert_array_equal(result.include, expected)
    assert result.subset == "positive" and result.truth_missing == ["DR"]
    np.testing.assert_array_equal(result.global_maps.count, expected.sum(axis=0))
    with pytest.raises(
        ValueError,
        match=r"subset 'positive' needs ground truth for every target label, but the "
        r"labels table has no column for model label\(s\) 'DR'",
    ):
        run_explain(stack, model, ExplainConfig(method="saliency", subset="positive"))
    only_known = run_explain(stack, model, ExplainConfig(method="saliency", subset="positive", targets=["HR", "MH"]))
    np.testing.assert_array_equal(only_known.include, np.stack([TRUTH["HR"], TRUTH["MH"]], axis=1).astype(bool))


def test_peppr_scores_only_labels_with_truth(archive):
    folder, csv_path, card_path, _ = archive
    from napari_global_xai.models import load_model
    from napari_global_xai.peppr.pipeline import peppr_truth

    model = load_model(card_path, device="cpu")
    with pytest.warns(InputNotice):
        stack = read_stack(folder, labels=csv_path, resize=INPUT_SIZE, channels=3, dtype=np.uint8)
    with pytest.warns(InputNotice, match=r"^PEPPR scores only labels with ground truth: skipped 'DR' \(no column"):
        names, truth = peppr_truth(stack, model)
    assert names == ["MH", "HR", "vessel_sign"]
    np.testing.assert_array_equal(truth, np.stack([TRUTH[n] for n in names], axis=1))
    with pytest.raises(ValueError, match=r"no column for model label\(s\) 'DR'"):
        peppr_truth(stack, model, ["DR", "HR"])


# ------------------------------------------------------------------------------------------------ CLI


def _run_cli(argv, capsys):
    from napari_global_xai.cli import main

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(argv)
    captured = capsys.readouterr()
    notes = [str(w.message) for w in caught if issubclass(w.category, InputNotice)]
    return code, captured.out, captured.err, notes


def test_cli_explain_on_the_archive(archive, tmp_path, capsys):
    folder, csv_path, card_path, _ = archive
    from napari_global_xai.explain.result import open_explain

    common = [
        str(folder),
        "--model",
        str(card_path),
        "--labels",
        str(csv_path),
        "--method",
        "saliency",
        "--quiet",
        "--device",
        "cpu",
    ]
    code, out, err, notes = _run_cli(["explain", *common, "--out", str(tmp_path / "e1")], capsys)
    assert code == 0, err
    assert any("resized to 24×32" in n for n in notes)
    assert any("no column for model label(s) 'DR'" in n for n in notes)
    gm = open_explain(tmp_path / "e1").global_maps
    counts = dict(zip(gm.labels, gm.count.tolist()))
    assert {k: counts[k] for k in TRUTH} == {k: sum(v) for k, v in TRUTH.items()}  # the CSV's positives
    assert counts["DR"] == 3  # predicted positives (the bias was set for three)

    code, out, err, notes = _run_cli(
        ["explain", *common, "--subset", "positive", "--out", str(tmp_path / "e2")], capsys
    )
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "'DR'" in err and err.startswith("global-xai explain: error: subset 'positive'")
    assert not (tmp_path / "e2").exists()

    # explicit columns and a label map: every model label has ground truth, no fallback note
    renamed = tmp_path / "renamed.csv"
    renamed.write_text(
        "scan_ref,eye_code,mh_grade,HR,VESSEL_SIGN,dr_any,site\n"
        "a_od.png,OD,1,0,0,1,Dundee\nb_os.png,OS,0,1,0,0,Glasgow\nc_od.png,OD,1,0,1,1,Dundee\n"
        "d_os.tif,OS,0,0,0,0,Perth\ne_od.tif,OD,0,1,1,1,Glasgow\nf_os.png,OS,1,1,1,0,Perth\n",
        encoding="utf-8",
    )
    dr_truth = [1, 0, 1, 0, 1, 0]
    code, out, err, notes = _run_cli(
        [
            "explain",
            *common[:3],
            "--labels",
            str(renamed),
            *common[5:],
            "--out",
            str(tmp_path / "e3"),
            "--id-column",
            "scan_ref",
            "--laterality-column",
            "eye_code",
            "--label-map",
            "mh_grade=MH",
            "--label-map",
            "dr_any=DR",
        ],
        capsys,
    )
    assert code == 0, err
    assert not any("no column" in n for n in notes)
    e3 = open_explain(tmp_path / "e3").global_maps
    counts = dict(zip(e3.labels, e3.count.tolist()))
    assert counts == {**{k: sum(v) for k, v in TRUTH.items()}, "DR": sum(dr_truth)}


# ------------------------------------------------------------------------------------------------ fitting later


def test_a_stack_opened_before_the_model_is_fitted_to_its_card_lazily():
    from types import SimpleNamespace

    from napari_global_xai.data import AlignedStack
    from napari_global_xai.data.conform import fit_stack_to_model

    pixels = np.full((3, 10, 12, 1), 200 * 257, np.uint16)
    pixels[1] = 0
    stack = AlignedStack(pixels, ["a", "b", "c"], laterality=["R", "L", ""])
    card = SimpleNamespace(input_size=[5, 6], input_channels=[0, 1], pixel_scale=255.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = fit_stack_to_model(stack, card)
    assert [str(w.message) for w in caught] == [
        "3 image(s) resized from 10×12 to the model's input size 5×6",
        "grey images replicated to RGB (the model reads channels [0, 1])",
        "16-bit pixels rescaled to 8-bit (the model's pixel_scale is 255)",
    ]
    assert fitted.shape == (3, 5, 6, 3) and fitted.dtype == np.uint8 and fitted.image_ids == stack.image_ids
    out = fitted.get([2, 1])
    np.testing.assert_array_equal(out[0], 200)
    np.testing.assert_array_equal(out[1], 0)
    np.testing.assert_array_equal(fitted.laterality, ["R", "L", ""])
    same = SimpleNamespace(input_size=[5, 6], input_channels=[0, 1], pixel_scale=255.0)
    assert fit_stack_to_model(fitted, same) is fitted  # nothing left to change: the same stack, no notice


def test_napari_reader_opens_a_mixed_folder_and_survives_an_unreadable_csv(tmp_path):
    from napari_global_xai._reader import read_aligned_stack

    for i, size in enumerate([(12, 16), (12, 16), (20, 20)]):
        Image.fromarray(np.full((*size, 3), 30 * i, np.uint8)).save(tmp_path / f"img_{i}.png")
    (tmp_path / "labels.csv").write_text("scan,x\nimg_0,1\nimg_1,0\nimg_2,1\n")  # no id column it knows
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ((_, kwargs, _),) = read_aligned_stack(str(tmp_path))
    notes = [str(w.message) for w in caught if issubclass(w.category, InputNotice)]
    assert any(n.startswith("1 of 3 image(s) resized to 12×16") for n in notes)
    assert any(n.startswith("opened without labels: ") and "no image id column" in n for n in notes)
    stack = kwargs["metadata"]["napari_global_xai"]["stack"]
    assert stack.shape == (3, 12, 16, 3) and stack.labels is None
    np.testing.assert_array_equal(stack.get([2]), 60)
