"""Joint transforms: image and label stay aligned; randomness is reproducible."""

import numpy as np
import pytest
import torch

from gald.data.transforms import (
    BGR_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    RandomScaleCrop,
    ToTensor,
    ToTensorNormalize,
    eval_transforms,
    train_transforms,
)


def pair(h=37, w=53):
    """An image whose red channel encodes the column and a label that encodes a coarse grid."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[..., 0] = (np.arange(w) * 4 % 256)[None, :]
    label = ((np.arange(h)[:, None] // 8) * 3 + np.arange(w)[None, :] // 16).astype(np.uint8)
    return image, label


def test_random_scale_shapes_and_nearest_labels():
    image, label = pair()
    for seed in range(5):
        out_image, out_label = RandomScale(0.5, 2.0)(image, label, np.random.default_rng(seed))
        assert out_image.shape[:2] == out_label.shape and out_image.dtype == np.uint8
        assert 0.5 * 37 - 1 <= out_label.shape[0] <= 2 * 37 + 1
        assert set(np.unique(out_label)) <= set(np.unique(label))
    wide = label.astype(np.int64) * 1000  # non-uint8 labels keep their dtype and values
    _, out = RandomScale(1.5, 1.5)(image, wide, np.random.default_rng(0))
    assert out.dtype == np.int64 and set(np.unique(out)) <= set(np.unique(wide))


def test_random_scale_rejects_bad_range():
    with pytest.raises(ValueError):
        RandomScale(2.0, 1.0)


def test_random_crop_pads_with_ignore_and_zero():
    image, label = pair(20, 30)
    out_image, out_label = RandomCrop((40, 50), ignore_index=255)(image, label, np.random.default_rng(0))
    assert out_image.shape == (40, 50, 3) and out_label.shape == (40, 50)
    assert (out_label[20:] == 255).all() and (out_label[:, 30:] == 255).all()
    assert (out_image[20:] == 0).all() and (out_image[:, 30:] == 0).all()
    np.testing.assert_array_equal(out_label[:20, :30], label)


def test_random_crop_is_a_window_of_the_input():
    image, label = pair()
    out_image, out_label = RandomCrop(16)(image, label, np.random.default_rng(3))
    assert out_image.shape == (16, 16, 3) and out_label.shape == (16, 16)
    hits = [
        (top, left)
        for top in range(37 - 15)
        for left in range(53 - 15)
        if np.array_equal(image[top : top + 16, left : left + 16], out_image)
    ]
    assert len(hits) == 1
    top, left = hits[0]
    np.testing.assert_array_equal(label[top : top + 16, left : left + 16], out_label)


def test_flip_moves_image_and_label_together():
    image, label = pair()
    out_image, out_label = RandomHorizontalFlip(p=1.0)(image, label)
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    np.testing.assert_array_equal(out_label, label[:, ::-1])
    same_image, same_label = RandomHorizontalFlip(p=0.0)(image, label)
    assert same_image is image and same_label is label


def test_to_tensor_normalize_imagenet():
    image, label = pair()
    x, y = ToTensorNormalize()(image, label)
    assert x.shape == (3, 37, 53) and x.dtype == torch.float32
    assert y.shape == (37, 53) and y.dtype == torch.int64
    expected = (image[5, 7, 1] / 255.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1]
    assert x[1, 5, 7].item() == pytest.approx(expected, abs=1e-5)
    np.testing.assert_array_equal(y.numpy(), label)


def test_to_tensor_normalize_bgr_option():
    image, label = pair()
    x, _ = ToTensorNormalize(bgr_mean=True)(image, label)
    for c_out, c_in in enumerate((2, 1, 0)):  # BGR order
        assert x[c_out, 4, 9].item() == pytest.approx(image[4, 9, c_in] - BGR_MEAN[c_out], abs=1e-4)


def test_to_tensor_normalize_image_alone_equals_the_pair_path_bit_for_bit():
    image, label = pair()
    for bgr in (False, True):
        t = ToTensorNormalize(bgr_mean=bgr)
        x = image.astype(np.float32)  # the arithmetic of the whole-array formula, in float32
        ref = x[..., ::-1] - np.array(BGR_MEAN, np.float32) if bgr else (
            (x - np.array(IMAGENET_MEAN, np.float32) * 255.0) / (np.array(IMAGENET_STD, np.float32) * 255.0))
        np.testing.assert_array_equal(t.image(image).numpy(), ref.transpose(2, 0, 1))
        torch.testing.assert_close(t(image, label)[0], t.image(image), rtol=0, atol=0)
    with pytest.raises(ValueError, match="H, W, 3"):
        ToTensorNormalize().image(image[..., :2])


def test_compose_is_reproducible_from_rng_or_torch_seed():
    image, label = pair(64, 96)
    t = train_transforms((32, 48), scale_range=(0.5, 2.0))
    a = t(image, label, np.random.default_rng(7))
    b = t(image, label, np.random.default_rng(7))
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    torch.manual_seed(1)
    c = t(image, label)
    torch.manual_seed(1)
    d = t(image, label)
    torch.testing.assert_close(c[0], d[0])
    torch.testing.assert_close(c[1], d[1])
    assert c[0].shape == (3, 32, 48) and c[1].shape == (32, 48) and c[1].dtype == torch.int64


def test_train_transforms_keep_labels_aligned_with_the_image():
    """A label equal to the image's red channel must still match it after scale, crop and flip."""
    rng = np.random.default_rng(0)
    image = np.repeat(rng.integers(0, 9, (12, 16), dtype=np.uint8).repeat(4, 0).repeat(4, 1)[..., None], 3, 2)
    label = image[..., 0].copy()
    t = Compose([RandomScale(1.0, 2.0), RandomCrop((24, 40)), RandomHorizontalFlip(), ToTensorNormalize(bgr_mean=True)])
    for seed in range(4):
        x, y = t(image, label, np.random.default_rng(seed))
        red = x[2] + BGR_MEAN[2]  # channel 2 of BGR is red
        valid = y != 255
        interior = valid.clone()
        interior[1:-1, 1:-1] &= (y[:-2, 1:-1] == y[2:, 1:-1]) & (y[1:-1, :-2] == y[1:-1, 2:])
        interior[0, :] = interior[-1, :] = interior[:, 0] = interior[:, -1] = False
        torch.testing.assert_close(red[interior], y[interior].float(), atol=0.51, rtol=0)


def test_eval_transforms_only_normalise():
    image, label = pair()
    x, y = eval_transforms()(image, label)
    assert x.shape == (3, 37, 53)
    np.testing.assert_array_equal(y.numpy(), label)


def test_transforms_reject_tensors_with_a_hint():
    image, label = pair()
    with pytest.raises(TypeError, match="ToTensorNormalize last"):
        RandomCrop(8)(torch.zeros(3, 8, 8), label)
    with pytest.raises(ValueError):
        RandomCrop(8)(image, label[:-1])


def test_dataloader_workers_are_reproducible():
    from gald.data import SyntheticScenes

    ds = SyntheticScenes(num_images=4, size=(32, 64), transform=train_transforms((24, 24)))

    def run(seed):
        loader = torch.utils.data.DataLoader(
            ds, batch_size=2, num_workers=2, generator=torch.Generator().manual_seed(seed)
        )
        return torch.cat([y for _, y in loader])

    first, second, other = run(0), run(0), run(1)
    torch.testing.assert_close(first, second)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("crop, scales", [((31, 47), (0.5, 2.0)), ((64, 96), (0.5, 0.9)), ((20, 20), (1.7, 2.0))])
def test_random_scale_crop_resamples_only_the_window_with_the_same_draws(crop, scales):
    """The fused step equals RandomScale then RandomCrop (same generator state): labels exactly,
    images within one grey level on a few pixels (PIL's box resize rounds its bounds)."""
    image, label = pair(57, 83)
    label = (label * 7 + np.arange(83)[None, :] % 5).astype(np.uint8)  # many values: every index shows
    for seed in range(12):
        fused = RandomScaleCrop(crop, scales)(image, label, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        reference = RandomCrop(crop)(*RandomScale(*scales)(image, label, rng), rng)
        assert fused[0].shape == reference[0].shape == (*crop, 3) and fused[1].dtype == label.dtype
        np.testing.assert_array_equal(fused[1], reference[1])
        diff = np.abs(fused[0].astype(int) - reference[0].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.02, (seed, diff.max(), (diff > 0).mean())


def test_random_scale_crop_labels_are_exact_at_cityscapes_size():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 34, (1024, 2048), dtype=np.uint8)
    image = np.zeros((1024, 2048, 3), np.uint8)
    for seed in range(4):
        fused = RandomScaleCrop(769, (0.5, 2.0))(image, label, np.random.default_rng(seed))[1]
        r = np.random.default_rng(seed)
        reference = RandomCrop(769)(*RandomScale(0.5, 2.0)(image, label, r), r)[1]
        np.testing.assert_array_equal(fused, reference)


def test_to_tensor_copies_read_only_arrays():
    import warnings

    image, label = pair()
    before = image.copy(), label.copy()
    image.flags.writeable = label.flags.writeable = False  # as PIL decodes them
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it is handed a read-only array
        x, y = ToTensor()(image, label)
    x += 1
    y += 1  # the tensors are the worker's own, not views of the decoded arrays
    assert (image == before[0]).all() and (label == before[1]).all()


def test_random_scale_crop_pads_and_keeps_wide_labels():
    image, label = pair(20, 30)
    big_label = label.astype(np.int32) + 1000  # a label type PIL resizes as 32-bit integers
    x, y = RandomScaleCrop((40, 64), (1.0, 1.0))(image, big_label, np.random.default_rng(0))
    assert x.shape == (40, 64, 3) and y.dtype == np.int32
    assert (y[20:] == 255).all() and (x[20:] == 0).all() and (y[:20, :30] >= 1000).all()
    with pytest.raises(ValueError, match="min <= max"):
        RandomScaleCrop(8, (2.0, 1.0))


@pytest.mark.parametrize("bgr", [False, True])
def test_uint8_out_of_the_workers_normalised_on_the_device_is_bit_identical(bgr):
    image, label = pair()
    expected, target = ToTensorNormalize(bgr_mean=bgr)(image, label)
    x, y = ToTensor()(image, label)
    assert x.dtype == torch.uint8 and x.shape == (3, 37, 53) and y.dtype == torch.uint8
    assert torch.equal(Normalize(bgr_mean=bgr)(x[None])[0], expected) and torch.equal(y.long(), target)
    assert Normalize()(expected[None]) is not None and torch.equal(Normalize()(expected[None])[0], expected)  # floats pass
    with pytest.raises(TypeError, match="uint8"):
        ToTensor()(image.astype(np.float32), label)


def test_train_transforms_fuse_scale_and_crop_only_when_scaling():
    assert [type(t).__name__ for t in train_transforms(32, (0.5, 2.0)).transforms] == [
        "RandomScaleCrop", "RandomHorizontalFlip", "ToTensorNormalize"]
    assert [type(t).__name__ for t in train_transforms(32, (1.0, 1.0), normalize=False).transforms] == [
        "RandomCrop", "RandomHorizontalFlip", "ToTensor"]  # the embedded benchmark's draws, unchanged
