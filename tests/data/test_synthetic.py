"""The planted-truth generator: determinism, label rates, lesions inside their regions, the shortcut marker."""

import numpy as np
import pytest

from napari_global_xai.data.synthetic import (
    DISEASE_LABELS,
    HEIGHT,
    WIDTH,
    draw_labels,
    field_of_view_mask,
    generate_image,
    generate_stack,
    marker_box,
    region_masks,
)


@pytest.fixture(scope="module")
def eval_stack():
    return generate_stack(40, seed=11, split="eval")


@pytest.fixture(scope="module")
def train_draws():
    """Labels, markers and visible peripheral lesions of 200 seed-0 train images (drawn, not rendered)."""
    return draw_labels(200, seed=0, split="train")


@pytest.mark.parametrize("split", ["train", "eval"])
def test_draw_labels_is_what_the_rendered_images_show(split):
    """The draws of the statistical tests below are the rendered images' labels, markers and visible lesions."""
    stack = generate_stack(12, seed=4, split=split, start=30)
    labels, marker, visible = draw_labels(12, seed=4, split=split, start=30)
    np.testing.assert_array_equal(labels, stack.labels)
    np.testing.assert_array_equal(marker, stack.has_marker)
    shown = (stack.lesion_masks == 2).reshape(12, -1).any(axis=1)  # peripheral lesion pixels drawn
    np.testing.assert_array_equal(shown, (labels[:, 1] == 1) & visible)


def test_deterministic_per_seed_split_and_index():
    a = generate_image(3, "eval", 5)
    b = generate_image(3, "eval", 5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], generate_image(4, "eval", 5)[0])
    assert not np.array_equal(a[0], generate_image(3, "train", 5)[0])
    # chunks of one dataset are generated independently
    whole = generate_stack(6, seed=3, split="val")
    part = generate_stack(2, seed=3, split="val", start=4)
    np.testing.assert_array_equal(whole.images[4:], part.images)
    assert part.image_ids == ["val_00004", "val_00005"]


def test_shapes_colour_and_labels(eval_stack):
    s = eval_stack
    assert s.images.shape == (40, HEIGHT, WIDTH, 3) and s.images.dtype == np.uint8
    fov = field_of_view_mask()
    left = s.aligned("left").get(slice(None))
    red, green, blue = (left[..., c][:, fov].mean() for c in range(3))
    assert red > green > 4 * blue and blue < 6  # Optos-like pseudo-colour: blue near zero
    np.testing.assert_array_equal(s.labels[:, 4], s.labels[:, :4].max(axis=1))  # any = OR
    assert set(np.unique(s.laterality)) == {"L", "R"}


def test_label_prevalence_is_roughly_a_third():
    labels, _, _ = draw_labels(150, seed=1, split="eval")
    rates = labels[:, :4].mean(axis=0)
    assert np.all((rates > 0.2) & (rates < 0.45)), rates


def test_every_lesion_pixel_lies_in_its_labels_region(eval_stack):
    regions = region_masks()
    s = eval_stack
    for k, name in enumerate(DISEASE_LABELS):
        lesion = s.lesion_masks == k + 1
        positives = s.labels[:, k] == 1
        assert lesion[positives].reshape(positives.sum(), -1).any(axis=1).all(), f"{name}: a positive lacks lesion"
        assert not lesion[~positives].any(), f"{name}: lesion drawn in a negative image"
        inside = (lesion & regions[name]).sum() / lesion.sum()
        assert inside > 0.97, (name, inside)


def test_lesions_change_the_pixels_where_planted():
    """A positive image differs from the same anatomy without the lesion only near the lesion mask."""
    img, labels, lat, lesion, _ = generate_image(0, "eval", 2)
    assert lesion.any()
    left = img if lat == "L" else img[:, ::-1]
    r = left[..., 0].astype(float)
    on, off = r[lesion > 0], r[(lesion == 0) & field_of_view_mask()]
    assert abs(on.mean() - off.mean()) > 10


def test_regions_are_disjoint_with_planned_shares():
    regions = region_masks()
    fov = field_of_view_mask().sum()
    shares = {n: regions[n].sum() / fov for n in DISEASE_LABELS}
    assert 0.06 < shares["haemorrhage"] < 0.09 and 0.22 < shares["peripheral_lesion"] < 0.30
    assert 0.02 < shares["disc_swelling"] < 0.035 and 0.06 < shares["arcade_lesion"] < 0.09
    total = sum(regions[n].astype(int) for n in DISEASE_LABELS)
    assert total.max() == 1
    assert not (regions["superior_arcade"] & regions["inferior_arcade"]).any()


def test_arcade_positives_use_either_or_both_arcades():
    labels, _, _ = draw_labels(120, seed=2, split="eval")
    positives = np.nonzero(labels[:, 3] == 1)[0]  # only they are drawn
    arcade = np.stack([generate_image(2, "eval", int(i))[3] == 4 for i in positives])
    regions = region_masks()
    sup = (arcade & regions["superior_arcade"]).reshape(len(positives), -1).any(1)
    inf = (arcade & regions["inferior_arcade"]).reshape(len(positives), -1).any(1)
    assert (sup & ~inf).any() and (inf & ~sup).any() and (sup & inf).any()


def test_marker_is_a_shortcut_only_in_training_like_splits(train_draws):
    labels, marker, _ = train_draws
    pos = labels[:, 1] == 1
    assert marker[pos].mean() > 0.7 and marker[~pos].mean() < 0.2
    labels_e, marker_e, _ = draw_labels(200, seed=0, split="eval")
    pos_e = labels_e[:, 1] == 1
    assert abs(marker_e[pos_e].mean() - marker_e[~pos_e].mean()) < 0.2
    # the marker sits outside the field of view, in the stored bottom-right corner
    fov = field_of_view_mask()
    for i in np.nonzero(marker_e)[0][:5]:
        image, _, laterality, _, artefact = generate_image(0, "eval", int(i))
        box = marker_box(laterality)
        assert artefact[box].all() and not (artefact & fov).any()
        stored = image[box[0], :][:, -46:]
        assert stored.max() > 200


def test_some_training_positives_show_no_peripheral_lesion_so_the_marker_pays_off(train_draws):
    """Training-like splits only: a share of peripheral_lesion positives has no visible lesion (the marker is then
    the only evidence); the eval split's positives all show lesions (checked above) and its pixels do not depend on
    that share."""
    from napari_global_xai.data import synthetic

    labels, marker, peripheral_visible = train_draws  # drawn with the default UNSEEN_IF_POSITIVE (0.25)
    pos = labels[:, 1] == 1
    visible = peripheral_visible[pos]  # = lesion pixels drawn: test_draw_labels_is_what_the_rendered_images_show
    unseen = 1 - visible.mean()
    assert 0.1 < unseen < 0.4, unseen  # UNSEEN_IF_POSITIVE = 0.25
    assert marker[pos][~visible].mean() > 0.6  # most of them carry the marker
    before = generate_stack(6, seed=4, split="eval").images
    try:
        synthetic.UNSEEN_IF_POSITIVE = 0.9
        assert np.array_equal(generate_stack(6, seed=4, split="eval").images, before)
    finally:
        synthetic.UNSEEN_IF_POSITIVE = 0.25


def test_aligned_stack_carries_laterality_labels_and_the_left_eye_frame(eval_stack):
    s = eval_stack
    left, stored = s.aligned(), s.aligned("stored")
    assert left.frame == "left" and stored.frame == "stored" and left.image_ids == s.image_ids
    np.testing.assert_array_equal(stored.get(slice(None)), s.images)
    right = np.nonzero(s.laterality == "R")[0]
    assert len(right) and len(right) < len(s.laterality)
    np.testing.assert_array_equal(left.get(right), s.images[right][:, :, ::-1])  # mirrored independently here
    np.testing.assert_array_equal(left.get(s.laterality == "L"), s.images[s.laterality == "L"])
    assert list(left.labels.names) == list(s.label_names)
    np.testing.assert_array_equal(left.labels.values, s.labels)
    np.testing.assert_array_equal(left.laterality, s.laterality)
