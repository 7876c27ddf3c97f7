"""The synthetic benchmark: determinism, exact labels and instances, and the global cue."""

import numpy as np
import pytest
import torch

from gald.data import DATASETS, get_dataset
from gald.data.synthetic import (
    CLASSES,
    CONTEXT_CLASSES,
    IGNORE_INDEX,
    LABEL_IDS,
    LARGE_CLASSES,
    NUM_CLASSES,
    PALETTE,
    SMALL_CLASSES,
    THING_CLASSES,
    SyntheticScenes,
    colorize,
    make_scene,
    swap_sky,
    synthetic_label_map,
)

SIZE = (64, 128)
ROAD, TERRAIN, SKY = 0, 1, 4


@pytest.fixture(scope="module")
def scenes():
    return [make_scene(0, i, size=SIZE) for i in range(60)]


def test_class_tables_are_consistent():
    assert len(CLASSES) == len(PALETTE) == len(LABEL_IDS) == NUM_CLASSES == 9
    assert IGNORE_INDEX == 255
    assert CLASSES[ROAD] == "road" and CLASSES[TERRAIN] == "terrain" and CLASSES[SKY] == "sky"
    assert PALETTE[CLASSES.index("car")] == (0, 0, 142) and LABEL_IDS[CLASSES.index("car")] == 26
    assert set(LARGE_CLASSES) | set(SMALL_CLASSES) | {8} == set(range(9))
    assert set(CONTEXT_CLASSES) <= set(LARGE_CLASSES) and set(SMALL_CLASSES) <= set(THING_CLASSES)
    mapping = synthetic_label_map()
    assert all(mapping[label_id] == train_id for train_id, label_id in enumerate(LABEL_IDS))
    assert sorted(mapping) == list(range(34))
    assert sum(v != 255 for v in mapping.values()) == 9


def test_same_arguments_same_scene_other_split_other_scene():
    a, b = make_scene(3, 5, size=SIZE), make_scene(3, 5, size=SIZE)
    for field in ("image", "label", "instances"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.instance_classes == b.instance_classes and a.cue == b.cue
    assert not np.array_equal(a.image, make_scene(3, 5, split="val", size=SIZE).image)
    assert not np.array_equal(a.image, make_scene(3, 6, size=SIZE).image)
    assert not np.array_equal(a.image, make_scene(4, 5, size=SIZE).image)


def test_generation_leaves_global_rngs_alone():
    np.random.seed(123)
    torch.manual_seed(123)
    expected = (np.random.random(), torch.rand(()).item())
    np.random.seed(123)
    torch.manual_seed(123)
    make_scene(0, 0, size=SIZE)
    assert (np.random.random(), torch.rand(()).item()) == expected


def test_types_shapes_and_label_range(scenes):
    for s in scenes[:10]:
        assert s.image.shape == (*SIZE, 3) and s.image.dtype == np.uint8
        assert s.label.shape == SIZE and s.label.dtype == np.uint8
        assert s.instances.shape == SIZE and s.instances.dtype == np.int32
        assert s.label.max() < NUM_CLASSES
        assert s.cue in ("day", "dusk")


@pytest.mark.parametrize("size", [(64, 128), (128, 256), (96, 160)])
def test_other_sizes(size):
    s = make_scene(1, 2, size=size)
    assert s.image.shape == (*size, 3) and s.label.shape == size
    assert 0 < s.sky_bottom < s.horizon < size[0]


def test_instances_match_labels(scenes):
    for s in scenes:
        ids = np.unique(s.instances)
        ids = ids[ids > 0]
        assert sorted(s.instance_classes) == ids.tolist() == list(range(1, len(ids) + 1))
        for iid, cls in s.instance_classes.items():
            assert cls in THING_CLASSES
            assert (s.label[s.instances == iid] == cls).all()
        thing = np.isin(s.label, THING_CLASSES)
        np.testing.assert_array_equal(thing, s.instances > 0)


def test_every_scene_has_small_patterns(scenes):
    for s in scenes:
        present = set(s.instance_classes.values())
        assert {5, 7} <= present  # poles and persons; signs can be hidden behind a nearer car


@pytest.mark.parametrize("version", [1, 2])
def test_small_classes_are_small(version):
    area = {c: [] for c in THING_CLASSES}
    for s in (make_scene(0, i, size=SIZE, version=version) for i in range(60)):
        for iid, cls in s.instance_classes.items():
            area[cls].append((s.instances == iid).sum() / s.label.size)
    for cls in SMALL_CLASSES:
        assert area[cls], CLASSES[cls]
        assert np.median(area[cls]) < 0.02, CLASSES[cls]
    if version == 1:  # v2's small patterns are one to two LD cells across, as large as its cars
        assert np.median(area[8]) > max(np.median(area[c]) for c in SMALL_CLASSES)


def test_road_only_by_day_terrain_only_at_dusk(scenes):
    cues = [s.cue for s in scenes]
    assert 15 < cues.count("day") < 45
    for s in scenes:
        present = set(np.unique(s.label).tolist())
        assert (ROAD in present) == (s.cue == "day")
        assert (TERRAIN in present) == (s.cue == "dusk")


def test_sky_is_far_from_the_ground(scenes):
    for s in scenes:
        sky_rows = np.nonzero((s.label == SKY).any(axis=1))[0]
        ground_rows = np.nonzero(np.isin(s.label, CONTEXT_CLASSES).any(axis=1))[0]
        assert sky_rows.max() < s.sky_bottom
        assert ground_rows.min() - sky_rows.max() > 0.2 * SIZE[0]


def test_ground_appearance_is_independent_of_the_cue(scenes):
    """Mean ground colour does not tell day from dusk; mean sky colour does, by far."""
    ground = {"day": [], "dusk": []}
    sky = {"day": [], "dusk": []}
    for s in scenes:
        ground[s.cue].append(s.image[np.isin(s.label, CONTEXT_CLASSES)].mean(0))
        sky[s.cue].append(s.image[s.label == SKY].mean(0))
    g_day, g_dusk = np.array(ground["day"]), np.array(ground["dusk"])
    gap = np.abs(g_day.mean(0) - g_dusk.mean(0))
    stderr = np.sqrt(g_day.var(0) / len(g_day) + g_dusk.var(0) / len(g_dusk))
    assert (gap < 12).all(), gap
    assert (gap < 3 * stderr).all(), (gap, stderr)
    sky_gap = np.abs(np.mean(sky["day"], 0) - np.mean(sky["dusk"], 0))
    assert sky_gap.max() > 50, sky_gap


def test_forced_cue_changes_only_the_sky_and_the_ground_label():
    day = make_scene(0, 7, size=SIZE, cue="day")
    dusk = make_scene(0, 7, size=SIZE, cue="dusk")
    not_sky = day.label != SKY
    np.testing.assert_array_equal(day.label == SKY, dusk.label == SKY)
    np.testing.assert_array_equal(day.image[not_sky], dusk.image[not_sky])
    np.testing.assert_array_equal(day.instances, dusk.instances)
    assert (day.label == TERRAIN).sum() == 0 and (dusk.label == ROAD).sum() == 0
    np.testing.assert_array_equal(day.label == ROAD, dusk.label == TERRAIN)
    assert make_scene(0, 7, size=SIZE).cue in ("day", "dusk")
    with pytest.raises(KeyError, match="night"):
        make_scene(0, 7, size=SIZE, cue="night")


def test_dataset_defaults_and_items():
    assert DATASETS["synthetic"] is SyntheticScenes and get_dataset("synthetic") is SyntheticScenes
    with pytest.raises(KeyError, match="cityscapes"):
        get_dataset("nope")
    assert len(SyntheticScenes()) == 400 and len(SyntheticScenes(split="val")) == 100
    ds = SyntheticScenes(split="test", num_images=3, seed=2, size=SIZE)
    assert ds.num_classes == 9 and ds.ignore_index == 255 and ds.classes == CLASSES and ds.palette == PALETTE
    image, label = ds[1]
    assert image.shape == (3, *SIZE) and image.dtype == torch.float32
    assert label.shape == SIZE and label.dtype == torch.int64
    np.testing.assert_array_equal(label.numpy(), make_scene(2, 1, split="test", size=SIZE).label)
    assert abs(image.mean().item()) < 2.0  # normalised
    np.testing.assert_array_equal(ds.scene(-1).label, ds.scene(2).label)
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(KeyError, match="train"):
        SyntheticScenes(split="training")


def test_custom_transform_is_used():
    ds = SyntheticScenes(num_images=1, size=SIZE, transform=lambda image, label: (image[:8], label[:8]))
    image, label = ds[0]
    assert image.shape == (8, SIZE[1], 3) and label.shape == (8, SIZE[1])


def test_colorize():
    label = np.array([[0, 8], [255, 4]], np.uint8)
    rgb = colorize(label)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == PALETTE[0] and tuple(rgb[0, 1]) == PALETTE[8] and tuple(rgb[1, 0]) == (0, 0, 0)


def test_version_1_is_unchanged_bit_for_bit():
    """v1 results stay reproducible: these bytes were recorded before versions existed."""
    import hashlib

    h = hashlib.sha256()
    for split in ("train", "val"):
        for i in range(6):
            s = make_scene(0, i, split=split, version=1)
            h.update(s.image.tobytes())
            h.update(s.label.tobytes())
            h.update(s.instances.tobytes())
    assert h.hexdigest() == "9394b062e64ff912dfb497920192d261cfd32db1760b0677075a56aa030f8648"


def test_version_2_has_cell_sized_small_patterns_and_camouflaged_persons():
    from gald.data.synthetic import GENERATOR_VERSION, GENERATOR_VERSIONS

    assert GENERATOR_VERSIONS == (1, 2) and GENERATOR_VERSION == 2  # the default config's benchmark
    v1 = [make_scene(0, i, version=1) for i in range(30)]
    v2 = [make_scene(0, i, version=2) for i in range(30)]
    for a, b in zip(v1, v2):
        assert a.cue == b.cue and a.horizon == b.horizon  # same draws up to the objects
    pole_px = [(s.label == 5).sum() for s in v2]
    assert np.median(pole_px) > 4 * np.median([(s.label == 5).sum() for s in v1])
    # camouflaged persons: their mean colour is close to the ground's, unlike v1's red persons
    def person_red_excess(scenes):
        vals = [s.image[s.label == 7].astype(float).mean(0) for s in scenes if (s.label == 7).any()]
        return np.array([v[0] - v[1] for v in vals])
    assert np.median(person_red_excess(v2)) < np.median(person_red_excess(v1))


def test_unknown_version_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"version must be one of \[1, 2\], got 3"):
        make_scene(0, 0, version=3)
    with pytest.raises(ValueError, match=r"version must be one of \[1, 2\], got 0"):
        SyntheticScenes(version=0)


def test_swap_sky_repaints_only_the_sky_in_the_other_cues_colours():
    day = make_scene(0, 4, split="val", cue="day")
    sky = day.label == CLASSES.index("sky")
    swapped, cue = swap_sky(day.image, sky)
    assert cue == "dusk" and swapped.dtype == np.uint8
    assert (swapped[~sky] == day.image[~sky]).all() and not (swapped[sky] == day.image[sky]).all()
    dusk = make_scene(0, 4, split="val", cue="dusk")  # the exact twin: its sky is nearer than the day sky
    mean = swapped[sky].astype(float).mean(0)
    assert np.abs(mean - dusk.image[sky].mean(0)).sum() < np.abs(mean - day.image[sky].mean(0)).sum()
    back, cue_back = swap_sky(swapped, sky)
    assert cue_back == "day"
    assert swap_sky(day.image, sky, cue="day")[1] == "day"  # a forced cue is painted as asked


def test_swap_sky_refuses_no_sky_and_bad_shapes():
    image = np.zeros((32, 48, 3), np.uint8)
    with pytest.raises(ValueError, match="no sky"):
        swap_sky(image, np.zeros((32, 48), bool))
    with pytest.raises(ValueError, match="mask"):
        swap_sky(image, np.ones((32, 47), bool))
    with pytest.raises(KeyError, match="unknown cue"):
        swap_sky(image, np.ones((32, 48), bool), cue="noon")
