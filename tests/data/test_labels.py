"""LabelsTable and the labels CSV reader / writer."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_global_xai.data import LabelsError, LabelsTable, StackError, read_labels_csv, write_labels_csv


def write_csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def table():
    return LabelsTable(
        image_ids=["a", "b", "c"],
        names=["haemorrhage", "any_disease"],
        values=np.array([[1, 1], [0, 0], [0, 1]]),
        laterality=np.array(["L", "R", ""]),
        split=np.array(["train", "eval", "eval"]),
    )


def test_labels_error_is_a_stack_error_and_a_value_error():
    assert issubclass(LabelsError, StackError)
    assert issubclass(StackError, ValueError)


def test_write_then_read_round_trips_everything(tmp_path, table):
    path = tmp_path / "labels.csv"
    write_labels_csv(table, path)
    back = read_labels_csv(path)
    assert back.image_ids == table.image_ids
    assert back.names == table.names
    assert back.values.dtype == np.uint8
    np.testing.assert_array_equal(back.values, table.values)
    np.testing.assert_array_equal(back.laterality, ["L", "R", ""])
    np.testing.assert_array_equal(back.split, ["train", "eval", "eval"])
    assert [p.name for p in tmp_path.iterdir()] == ["labels.csv"]  # no temporary file left behind


def test_write_replaces_an_existing_file(tmp_path, table):
    path = write_csv(tmp_path / "labels.csv", "old content\n")
    write_labels_csv(table.subset([2]), path)
    assert path.read_text().splitlines() == ["image,laterality,split,haemorrhage,any_disease", "c,,eval,0,1"]


def test_rows_are_matched_by_file_name_stem_and_returned_in_image_order(tmp_path):
    path = write_csv(tmp_path / "l.csv", "filename,x\nimg_003.png,1\nimg_001.png,0\nsub/img_002.jpg,1\n")
    table = read_labels_csv(path, image_ids=["img_001", "img_002", "img_003"])
    assert table.image_ids == ["img_001", "img_002", "img_003"]
    np.testing.assert_array_equal(table.column("x"), [0, 1, 1])


def test_exact_id_match_wins_over_stem(tmp_path):
    path = write_csv(tmp_path / "l.csv", "image,x\nscan.v2,1\nscan,0\n")
    table = read_labels_csv(path, image_ids=["scan", "scan.v2"])
    np.testing.assert_array_equal(table.column("x"), [0, 1])


@pytest.mark.parametrize("id_column", ["image", "image_id", "filename", "file", "Image", " IMAGE_ID "])
def test_accepted_id_column_names(tmp_path, id_column):
    path = write_csv(tmp_path / "l.csv", f"{id_column},lesion\na,1\nb,0\n")
    table = read_labels_csv(path)
    assert table.image_ids == ["a", "b"]
    assert table.names == ["lesion"]


def test_laterality_spellings_are_normalised(tmp_path):
    path = write_csv(tmp_path / "l.csv", "image,Laterality\na,l\nb,R\nc,left\nd,RIGHT\ne,\n")
    table = read_labels_csv(path)
    np.testing.assert_array_equal(table.laterality, ["L", "R", "L", "R", ""])
    assert table.names == [] and table.values.shape == (5, 0)
    assert table.split is None


def test_values_written_as_floats_and_blank_lines_and_bom_are_fine(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes("\ufeffimage,a,b\r\nx,1.0,0\r\n\r\ny,0.0,1\r\n".encode())
    table = read_labels_csv(path)
    np.testing.assert_array_equal(table.values, [[1, 0], [0, 1]])


def test_column_and_subset(table):
    np.testing.assert_array_equal(table.column("any_disease"), [1, 0, 1])
    with pytest.raises(KeyError, match="nope"):
        table.column("nope")
    sub = table.subset([2, 0])
    assert sub.image_ids == ["c", "a"]
    np.testing.assert_array_equal(sub.values, [[0, 1], [1, 1]])
    np.testing.assert_array_equal(sub.laterality, ["", "L"])
    assert len(sub) == 2


def test_aligned_to_renames_rows_to_the_stack_ids():
    table = LabelsTable(["b.png", "a.png"], ["x"], np.array([[1], [0]]))
    aligned = table.aligned_to(["a", "b"])
    assert aligned.image_ids == ["a", "b"]
    np.testing.assert_array_equal(aligned.column("x"), [0, 1])


# ---------------------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(LabelsError, match="nothere.csv"):
        read_labels_csv(tmp_path / "nothere.csv")


def test_missing_id_column_names_the_file(tmp_path):
    path = write_csv(tmp_path / "noid.csv", "subject,x\na,1\n")  # ("name" is an id column since issue #10)
    with pytest.raises(LabelsError, match=r"noid\.csv.*no image id column"):
        read_labels_csv(path)


def test_duplicate_ids_are_named(tmp_path):
    path = write_csv(tmp_path / "dup.csv", "image,x\na,1\nimg_7,0\nimg_7,1\n")
    with pytest.raises(LabelsError, match=r"dup\.csv.*duplicate image ids 'img_7'"):
        read_labels_csv(path)


def test_two_rows_matching_one_image_by_stem(tmp_path):
    path = write_csv(tmp_path / "l.csv", "image,x\nimg_1.png,1\nimg_1.jpg,0\n")
    with pytest.raises(LabelsError, match=r"'img_1\.png' and 'img_1\.jpg' both match image 'img_1'"):
        read_labels_csv(path, image_ids=["img_1"])


def test_images_without_rows_name_five_and_count(tmp_path):
    path = write_csv(tmp_path / "few.csv", "image,x\nimg_0,1\n")
    ids = [f"img_{i}" for i in range(9)]
    with pytest.raises(LabelsError, match=r"few\.csv: 8 image\(s\) have no row: 'img_1', .*'img_5' and 3 more") as info:
        read_labels_csv(path, image_ids=ids)
    assert "img_6" not in str(info.value)


def test_rows_without_images_are_listed(tmp_path):
    path = write_csv(tmp_path / "many.csv", "image,x\na,1\nstray_1,0\nb,1\nstray_2.png,0\n")
    message = r"many\.csv: 2 row\(s\) name no image of the stack: 'stray_1', 'stray_2\.png'"
    with pytest.raises(LabelsError, match=message):
        read_labels_csv(path, image_ids=["a", "b"])


@pytest.mark.parametrize("bad", ["2", "", "nan", "yes", "-1", "0.5"])
def test_label_values_must_be_zero_or_one(tmp_path, bad):
    path = write_csv(tmp_path / "vals.csv", f"image,haemorrhage,other\nimg_1,0,1\nimg_2,{bad},0\n")
    shown = re.escape(repr(bad if bad else "(empty)"))
    # since issue #10 a model label's column is strict; without label names such a column is metadata
    with pytest.raises(LabelsError, match=rf"vals\.csv, row 'img_2' \(line 3\): label 'haemorrhage' is {shown}"):
        read_labels_csv(path, label_names=["haemorrhage", "other"])
    table = read_labels_csv(path)
    assert table.names == ["other"] and list(table.metadata) == ["haemorrhage"]


def test_short_row_counts_as_empty_value(tmp_path):
    path = write_csv(tmp_path / "short.csv", "image,a,b\nimg_1,0\n")
    with pytest.raises(LabelsError, match=r"row 'img_1'.*label 'b' is '\(empty\)'"):
        read_labels_csv(path, label_names=["a", "b"])


def test_long_row_is_an_error(tmp_path):
    path = write_csv(tmp_path / "long.csv", "image,a\nimg_1,0,1\n")
    with pytest.raises(LabelsError, match=r"long\.csv, line 2: 3 fields"):
        read_labels_csv(path)


def test_bad_laterality_names_row_and_value(tmp_path):
    path = write_csv(tmp_path / "lat.csv", "image,laterality,x\nimg_1,L,0\nimg_2,both,1\n")
    with pytest.raises(LabelsError, match=r"lat\.csv, row 'img_2'.*'both'"):
        read_labels_csv(path)


def test_empty_file_and_empty_id(tmp_path):
    with pytest.raises(LabelsError, match=r"empty\.csv: empty"):
        read_labels_csv(write_csv(tmp_path / "empty.csv", "\n\n"))
    with pytest.raises(LabelsError, match=r"noid\.csv, line 3: empty image id"):
        read_labels_csv(write_csv(tmp_path / "noid.csv", "image,x\na,1\n,0\n"))


def test_table_validates_its_values():
    with pytest.raises(LabelsError, match=r"image 'b', label 'x' has 2"):
        LabelsTable(["a", "b"], ["x"], np.array([[0], [2]]))
    with pytest.raises(LabelsError, match=r"label 'x' has nan"):
        LabelsTable(["a"], ["x"], np.array([[np.nan]]))
    with pytest.raises(LabelsError, match="shape"):
        LabelsTable(["a", "b"], ["x"], np.zeros((3, 1)))
    with pytest.raises(LabelsError, match="duplicate label names"):
        LabelsTable(["a"], ["x", "X"], np.zeros((1, 2)))
    with pytest.raises(LabelsError, match="reserved"):
        LabelsTable(["a"], ["split"], np.zeros((1, 1)))
    with pytest.raises(LabelsError, match=r"image 'a'.*'up'"):
        LabelsTable(["a"], ["x"], np.zeros((1, 1)), laterality=["up"])
