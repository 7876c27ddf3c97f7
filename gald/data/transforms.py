"""Joint transforms: image and label move together (random scale, crop, flip, normalise).

Every transform is called as ``t(image, label, rng=None)`` on a numpy ``(H, W, 3)`` uint8 image and
an ``(H, W)`` integer label; the geometric ones return numpy arrays, :class:`ToTensorNormalize`
returns tensors. Resizing uses PIL (bilinear for the image, nearest for the label), as
torchvision's segmentation reference does; crop, pad and flip are array slicing.

Randomness: a transform draws from the ``numpy.random.Generator`` it is given. When ``rng`` is
``None`` — the usual case, a dataset calling ``transform(image, label)`` — :class:`Compose` (or a
lone transform) makes one generator per sample, seeded by a draw from **torch's** global RNG. Torch
seeds that RNG in every DataLoader worker from the loader's base seed (``torch.manual_seed`` or the
loader's ``generator``), and in the main process ``torch.manual_seed`` seeds it, so a run is
reproducible with any ``num_workers`` and no ``worker_init_fn``. Pass an explicit ``rng`` to pin a
single call (tests, visualisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from PIL import Image

__all__ = [
    "BGR_MEAN",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Compose",
    "JointTransform",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "RandomScaleCrop",
    "ToTensor",
    "ToTensorNormalize",
    "eval_transforms",
    "train_transforms",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The authors' per-channel mean, in **BGR** order and 0–255 units (GALD-Net's ``IMG_MEAN``).
BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)


class JointTransform(Protocol):
    """Anything called as ``t(image, label, rng=None) -> (image, label)``."""

    def __call__(self, image, label, rng: np.random.Generator | None = None): ...


def torch_seeded_rng() -> np.random.Generator:
    """A numpy generator seeded by one draw from torch's global RNG (see the module docstring)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))


def _check_pair(image: np.ndarray, label: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or not isinstance(label, np.ndarray):
        raise TypeError(
            f"joint transforms take numpy arrays, got {type(image).__name__} and {type(label).__name__}; "
            "put ToTensorNormalize last"
        )
    if image.ndim != 3 or label.ndim != 2 or image.shape[:2] != label.shape:
        raise ValueError(f"expected image (H, W, C) and label (H, W) of one size, got {image.shape} and {label.shape}")


def _resize_label(label: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize that keeps the dtype (PIL ``L`` for uint8, ``I`` otherwise)."""
    h, w = size_hw
    if label.dtype == np.uint8:
        return np.asarray(Image.fromarray(label).resize((w, h), Image.Resampling.NEAREST))
    out = np.asarray(Image.fromarray(label.astype(np.int32)).resize((w, h), Image.Resampling.NEAREST))
    return out.astype(label.dtype)


class Compose:
    """Apply transforms in order, sharing one random generator per sample.

    Args:
        transforms: joint transforms, each called as ``t(image, label, rng)``.
    """

    def __init__(self, transforms: Sequence[JointTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image, label, rng: np.random.Generator | None = None):
        rng = torch_seeded_rng() if rng is None else rng
        for t in self.transforms:
            image, label = t(image, label, rng)
        return image, label

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class RandomScale:
    """Resize by a factor drawn uniformly from ``[min, max]``: bilinear image, nearest label.

    Args:
        min: smallest scale factor (0.5 in the paper's recipe).
        max: largest scale factor (2.0 in the paper's recipe).

    Shape:
        (H, W, 3), (H, W) -> (round(s·H), round(s·W), 3), (round(s·H), round(s·W))
    """

    def __init__(self, min: float = 0.5, max: float = 2.0) -> None:  # noqa: A002 - the brief's names
        if not 0 < min <= max:
            raise ValueError(f"RandomScale needs 0 < min <= max, got min={min}, max={max}")
        self.min = float(min)
        self.max = float(max)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None):
        _check_pair(image, label)
        rng = torch_seeded_rng() if rng is None else rng
        scale = float(rng.uniform(self.min, self.max))
        h, w = label.shape
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        if (new_h, new_w) == (h, w):
            return image, label
        image = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
        return image, _resize_label(label, (new_h, new_w))

    def __repr__(self) -> str:
        return f"RandomScale(min={self.min}, max={self.max})"


class RandomCrop:
    """Random crop of ``size``; a smaller input is first padded (bottom/right) with 0 and ignore.

    Args:
        size: crop ``(height, width)``, or one int for a square.
        ignore_index: label value written into padding.
        fill: image value written into padding.

    Shape:
        (H, W, 3), (H, W) -> (h, w, 3), (h, w)
    """

    def __init__(self, size: int | Sequence[int], *, ignore_index: int = 255, fill: int = 0) -> None:
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if h <= 0 or w <= 0:
            raise ValueError(f"crop size must be positive, got {size}")
        self.size = (int(h), int(w))
        self.ignore_index = ignore_index
        self.fill = fill

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None):
        _check_pair(image, label)
        rng = torch_seeded_rng() if rng is None else rng
        ch, cw = self.size
        h, w = label.shape
        pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=self.fill)
            label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=self.ignore_index)
            h, w = label.shape
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        return image[top : top + ch, left : left + cw], label[top : top + ch, left : left + cw]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, ignore_index={self.ignore_index})"


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """The source index of each output position of PIL's nearest-neighbour resize from ``n_in`` to
    ``n_out`` samples: PIL steps a float64 coordinate by ``n_in / n_out`` from half a step and floors
    it (``ImagingScaleAffine``); the same accumulation here gives the same indices."""
    step = n_in / n_out
    coords = np.add.accumulate(np.concatenate([[step * 0.5], np.full(n_out - 1, step)]))
    return np.minimum(np.floor(coords).astype(np.intp), n_in - 1)


class RandomScaleCrop:
    """:class:`RandomScale` then :class:`RandomCrop`, resampling only the crop window.

    The same random draws as the two in sequence (the scale, then the crop's top and left in the
    scaled, padded image) and the same output: the label exactly (the crop's rows and columns of
    PIL's nearest-neighbour index tables), the image within rounding (the crop window is mapped back
    to a box of the source and only that box is resampled, PIL's ``resize(box=...)``: the same
    filter and sample positions as a full resize, a grey level apart on a few pixels). A full Cityscapes image scaled by 2 keeps 769²
    of its 4096×2048 pixels, so this skips almost all of the resize.

    Args:
        size: crop ``(height, width)``, or one int for a square.
        scale_range: ``(min, max)`` of the scale factor (0.5, 2.0 in the paper's recipe).
        ignore_index: label value written into padding.
        fill: image value written into padding.

    Shape:
        (H, W, 3), (H, W) -> (h, w, 3), (h, w)
    """

    def __init__(
        self, size: int | Sequence[int], scale_range: tuple[float, float] = (0.5, 2.0), *, ignore_index: int = 255,
        fill: int = 0,
    ) -> None:
        self.scale = RandomScale(*scale_range)  # checks the range
        self.crop = RandomCrop(size, ignore_index=ignore_index, fill=fill)  # checks the size
        self.size = self.crop.size

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None):
        _check_pair(image, label)
        rng = torch_seeded_rng() if rng is None else rng
        scale = float(rng.uniform(self.scale.min, self.scale.max))  # RandomScale's draw
        h, w = label.shape
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        ch, cw = self.size
        top = int(rng.integers(0, max(new_h, ch) - ch + 1))  # RandomCrop's draws, on the padded size
        left = int(rng.integers(0, max(new_w, cw) - cw + 1))
        bottom, right = min(top + ch, new_h), min(left + cw, new_w)  # the window's part inside the image
        if (new_h, new_w) == (h, w):
            image_part, label_part = image[top:bottom, left:right], label[top:bottom, left:right]
        else:
            sy, sx = new_h / h, new_w / w  # RandomScale's factors, per axis (sizes are rounded)
            box = (left / sx, top / sy, right / sx, bottom / sy)
            out = (right - left, bottom - top)
            image_part = np.asarray(Image.fromarray(image).resize(out, Image.Resampling.BILINEAR, box=box))
            rows, cols = _nearest_index(new_h, h)[top:bottom], _nearest_index(new_w, w)[left:right]
            label_part = label.take(rows, axis=0).take(cols, axis=1)  # PIL's full nearest resize, then the crop
        if image_part.shape[:2] == (ch, cw):
            return image_part, label_part
        crop_image = np.full((ch, cw, image.shape[2]), self.crop.fill, image.dtype)
        crop_label = np.full((ch, cw), self.crop.ignore_index, label.dtype)
        crop_image[: bottom - top, : right - left] = image_part
        crop_label[: bottom - top, : right - left] = label_part
        return crop_image, crop_label

    def __repr__(self) -> str:
        return f"RandomScaleCrop(size={self.size}, scale_range=({self.scale.min}, {self.scale.max}), " \
               f"ignore_index={self.crop.ignore_index})"


class RandomHorizontalFlip:
    """Mirror image and label left–right together with probability ``p``.

    Args:
        p: flip probability.

    Shape:
        (H, W, 3), (H, W) -> same
    """

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = float(p)

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None):
        _check_pair(image, label)
        rng = torch_seeded_rng() if rng is None else rng
        if rng.random() < self.p:
            return image[:, ::-1], label[:, ::-1]
        return image, label

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class ToTensorNormalize:
    """uint8 HWC image → normalised float32 CHW tensor; label → int64 tensor.

    Default: RGB, ``(x / 255 - mean) / std`` with ImageNet statistics (torchvision backbones).
    ``bgr_mean=True`` is the authors' option (Caffe-style ResNets): channels reordered to BGR and
    :data:`BGR_MEAN` subtracted in 0–255 units, no std scaling; ``mean``/``std`` are then unused.

    Args:
        mean: per-channel RGB mean in [0, 1] units.
        std: per-channel RGB std in [0, 1] units.
        bgr_mean: use the authors' BGR mean subtraction instead.

    Shape:
        (H, W, 3) uint8, (H, W) int -> (3, H, W) float32, (H, W) int64
    """

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        *,
        bgr_mean: bool = False,
    ) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.bgr_mean = bool(bgr_mean)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 entries and std > 0, got mean={mean}, std={std}")

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None):
        _check_pair(image, label)
        return self.image(image), torch.from_numpy(np.array(label, dtype=np.int64))

    def image(self, image: np.ndarray) -> torch.Tensor:
        """The image alone (what inference needs), normalised one channel at a time.

        Shape:
            (H, W, 3) uint8 -> (3, H, W) float32
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
        # numpy arithmetic: single-threaded, so it never contends with the loop's torch threads;
        # channel by channel, in place, so a large image needs one float copy, not four.
        out = np.empty((3, *image.shape[:2]), np.float32)
        if self.bgr_mean:
            for c, mean in enumerate(np.array(BGR_MEAN, np.float32)):
                out[c] = image[..., 2 - c]
                out[c] -= mean
        else:
            means = np.array(self.mean, np.float32) * 255.0
            stds = np.array(self.std, np.float32) * 255.0
            for c in range(3):
                out[c] = image[..., c]
                out[c] -= means[c]
                out[c] /= stds[c]
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        if self.bgr_mean:
            return "ToTensorNormalize(bgr_mean=True)"
        return f"ToTensorNormalize(mean={self.mean}, std={self.std})"


class ToTensor:
    """uint8 HWC image → uint8 CHW tensor; label → a tensor of its own integer type (uint8 for
    train ids): what a loader worker sends, 4 bytes per pixel instead of 20. :class:`Normalize`
    finishes the job on the device, to the exact values of :class:`ToTensorNormalize`.

    Shape:
        (H, W, 3) uint8, (H, W) int -> (3, H, W) uint8, (H, W) same integer type
    """

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None):
        _check_pair(image, label)
        if image.dtype != np.uint8:
            raise TypeError(f"ToTensor takes uint8 images, got {image.dtype}")
        image = np.ascontiguousarray(image.transpose(2, 0, 1))
        label = np.ascontiguousarray(label)
        if label.dtype not in (np.uint8, np.int16, np.int32, np.int64):
            label = label.astype(np.int64)
        # torch needs writable arrays (decoded images are read-only): copy the views that are not
        image, label = (a if a.flags.writeable else a.copy() for a in (image, label))
        return torch.from_numpy(image), torch.from_numpy(label)

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """Normalise a batch of uint8 images where it is: on the GPU, after the copy, in the engine.

    The same arithmetic as :class:`ToTensorNormalize` (``(x − 255·mean) / (255·std)`` in float32,
    or the BGR mean subtraction), so the result is bit-identical to normalising in the workers.
    Float input is returned unchanged (it was normalised already).

    Shape:
        (N, 3, H, W) uint8 -> (N, 3, H, W) float32
    """

    def __init__(
        self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, *, bgr_mean: bool = False
    ) -> None:
        self.spec = ToTensorNormalize(mean, std, bgr_mean=bgr_mean)  # checks mean and std
        if self.spec.bgr_mean:
            self._sub = torch.tensor(BGR_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
            self._div = None
        else:
            self._sub = (torch.tensor(self.spec.mean, dtype=torch.float32) * 255.0).view(1, 3, 1, 1)
            self._div = (torch.tensor(self.spec.std, dtype=torch.float32) * 255.0).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            return images
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"Normalize takes (N, 3, H, W) images, got shape {tuple(images.shape)}")
        x = images.flip(1) if self.spec.bgr_mean else images  # RGB → BGR for the authors' mean
        x = x.float().sub_(self._sub.to(x.device))
        return x if self._div is None else x.div_(self._div.to(x.device))

    def __repr__(self) -> str:
        return repr(self.spec).replace("ToTensorNormalize", "Normalize")


def train_transforms(
    crop_size: int | Sequence[int],
    scale_range: tuple[float, float] = (0.5, 2.0),
    *,
    flip_p: float = 0.5,
    ignore_index: int = 255,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    bgr_mean: bool = False,
    normalize: bool = True,
) -> Compose:
    """The paper's training augmentation: random scale, random crop (pad with ignore), flip, normalise.

    Scale and crop are one step (:class:`RandomScaleCrop`: only the crop window is resampled).

    Args:
        crop_size: ``(height, width)`` or an int (769 for Cityscapes in the paper).
        scale_range: ``(min, max)`` of the random scale factor; ``None`` or ``(1, 1)`` skips scaling.
        flip_p: horizontal flip probability (0 disables the flip).
        ignore_index: label written into padding.
        mean: RGB mean for :class:`ToTensorNormalize`.
        std: RGB std for :class:`ToTensorNormalize`.
        bgr_mean: the authors' BGR mean subtraction instead of mean/std.
        normalize: end with :class:`ToTensorNormalize`; ``False`` ends with :class:`ToTensor`
            (uint8 out of the workers; the engine applies :class:`Normalize` on the device).

    Shape:
        (H, W, 3) uint8, (H, W) -> (3, h, w) float32, (h, w) int64 (``normalize=False``: uint8, the
        label's integer type)
    """
    steps: list[JointTransform] = []
    if scale_range is not None and tuple(scale_range) != (1.0, 1.0):
        steps.append(RandomScaleCrop(crop_size, tuple(scale_range), ignore_index=ignore_index))
    else:  # the embedded benchmark's default: a crop alone, drawn as it always was
        steps.append(RandomCrop(crop_size, ignore_index=ignore_index))
    if flip_p > 0:
        steps.append(RandomHorizontalFlip(flip_p))
    steps.append(ToTensorNormalize(mean, std, bgr_mean=bgr_mean) if normalize else ToTensor())
    return Compose(steps)


def eval_transforms(
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    bgr_mean: bool = False,
) -> Compose:
    """Evaluation: full resolution, normalise only (sliding windows and flips belong to the evaluator).

    Shape:
        (H, W, 3) uint8, (H, W) -> (3, H, W) float32, (H, W) int64
    """
    return Compose([ToTensorNormalize(mean, std, bgr_mean=bgr_mean)])
