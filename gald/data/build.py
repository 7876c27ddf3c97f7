"""From a training config to datasets, a step-indexed training stream and a validation loader.

:func:`build_segmentation_data` serves segmentation training; :func:`build_detection_data` gives the
train and validation sets of detection training (``gald.engine.detection`` draws its own batches).

The training stream is a pure function of ``(seed, step)``: the order of images comes from a
per-epoch permutation seeded by ``(seed, epoch)`` and every sample's augmentation from a generator
seeded by ``(seed, step, position)``. So a run resumed at step ``s`` sees exactly the batches an
uninterrupted run sees from step ``s`` on, with any number of loader workers, and every DDP rank
takes its own slice of the same global batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from gald.config import ANNOTATIONS, check_choice
from gald.errors import ConfigError, InputFileError, MissingFileError

from . import synthetic
from .cityscapes import CorruptImageError, CityscapesSegmentation
from .detection import DetectionTransform, SyntheticDetection, collate
from .folder import FolderSegmentation
from .mapillary import MapillaryVistas
from .synthetic import SyntheticScenes, synthetic_label_map
from .transforms import Normalize, ToTensorNormalize, eval_transforms, train_transforms

log = logging.getLogger(__name__)

__all__ = [
    "ConcatSegmentation", "DATASET_NAMES", "SegmentationData", "build_segmentation_data", "StepBatchSampler",
    "build_detection_data", "detection_batches",
]

#: Dataset names a training config may use.
DATASET_NAMES = ("cityscapes", "folder", "mapillary", "synthetic", "synthetic_disk")


class StepBatchSampler(Sampler):
    """Yields, for each step from ``start_step`` on, this rank's ``(index, sample_seed)`` pairs.

    Args:
        num_items: dataset length.
        global_batch: images per step over all ranks.
        rank: this process's rank.
        world_size: number of processes.
        seed: stream seed.
        start_step: first step to yield.
    """

    def __init__(self, num_items: int, global_batch: int, *, rank: int, world_size: int, seed: int, start_step: int = 0) -> None:
        if num_items < 1:
            raise ConfigError("cannot train on an empty dataset")
        self.n = num_items
        self.batch = global_batch
        self.per_rank = global_batch // world_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_step = start_step
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch, 7]).permutation(self.n)}
        return self._perms[epoch]

    def batch_at(self, step: int) -> list[tuple[int, int]]:
        lo = step * self.batch + self.rank * self.per_rank
        out = []
        for pos in range(lo, lo + self.per_rank):
            epoch, offset = divmod(pos, self.n)
            out.append((int(self._perm(epoch)[offset]), int(np.random.SeedSequence([self.seed, step, pos]).generate_state(1)[0])))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch_at(step)
            step += 1


class _Augmented(Dataset):
    """Applies a joint transform with a per-sample generator.

    A corrupt image is logged, counted and replaced by the next readable one, so batches keep their
    size (BatchNorm on pooled maps needs more than one sample).
    """

    def __init__(self, base: Dataset, transform) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        index, sample_seed = key
        skipped = 0
        for attempt in range(len(self.base)):
            try:
                image, label = self.base.load((index + attempt) % len(self.base))
                break
            except CorruptImageError as err:
                log.warning("skipping corrupt image %s", err)
                skipped += 1
        else:
            raise CorruptImageError(f"every one of the {len(self.base)} training images is unreadable")
        image, label = self.transform(image, label, np.random.default_rng(sample_seed))
        return image, label, skipped


def _collate_counting(batch):
    images, targets, skipped = torch.utils.data.default_collate(batch)
    return images, targets, int(skipped.sum())


class _Cached(Dataset):
    """Keeps every decoded ``load(i)`` in memory (the synthetic benchmark is ~100 kB per image)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base
        self._items: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.base)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._items:
            self._items[i] = self.base.load(i)
        return self._items[i]


class _WithInstances(Dataset):
    """Synthetic validation items with their instance maps (for the per-instance size metric)."""

    def __init__(self, base: SyntheticScenes) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        scene = self.base.scene(i)
        image, label = self.base.transform(scene.image, scene.label)
        return image, label, torch.from_numpy(scene.instances.astype(np.int64))


@dataclass
class SegmentationData:
    """Everything the training loop needs from the data side."""

    train_set: Dataset
    val_set: Dataset
    val_loader: DataLoader
    num_classes: int
    class_names: list[str]
    palette: list[tuple[int, int, int]] | None
    sampler: StepBatchSampler
    train_transform: object
    workers: int = 0
    ignore_index: int = 255
    small_classes: tuple[int, ...] = ()
    large_classes: tuple[int, ...] = ()
    skipped: int = field(default=0)
    #: finishes the training stream's uint8 images on the device (:meth:`to_device`)
    normalize: Normalize = field(default_factory=Normalize)
    #: page-locked batches, for fast non-blocking copies to a GPU (the engine sets it on CUDA)
    pin_memory: bool = False

    def to_device(
        self, images: torch.Tensor, targets: torch.Tensor, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch on ``device``: images normalised there (float32, the values
        :class:`~gald.data.transforms.ToTensorNormalize` gives), targets as int64.

        Shape:
            (N, 3, H, W) uint8, (N, H, W) int -> (N, 3, H, W) float32, (N, H, W) int64
        """
        images = self.normalize(images.to(device, non_blocking=True))
        return images, targets.to(device, non_blocking=True).long()

    def train_batches(self, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """An endless stream of ``(images, targets)`` batches for this rank, from ``start_step`` on:
        uint8 images and integer targets, as the workers send them (finish them with :meth:`to_device`).

        Corrupt images are skipped (replaced by the next readable image) and counted in :attr:`skipped`.
        """
        s = self.sampler
        sampler = StepBatchSampler(s.n, s.batch, rank=s.rank, world_size=s.world_size, seed=s.seed, start_step=start_step)
        loader = DataLoader(
            _Augmented(self.train_set, self.train_transform),
            batch_sampler=sampler,
            num_workers=self.workers,
            collate_fn=_collate_counting,
            persistent_workers=self.workers > 0,
            pin_memory=self.pin_memory,
            # its own generator, so creating the loader leaves the global torch RNG untouched
            generator=torch.Generator().manual_seed(self.sampler.seed),
        )
        for images, targets, skipped in loader:
            self.skipped += skipped
            yield images, targets


class ConcatSegmentation(Dataset):
    """Several readers of one label space read as one (``train_split: train+val``).

    Args:
        parts: datasets with ``load``, ``classes``, ``palette`` and ``num_classes`` (the first one's
            are kept; the others must agree).

    Shape:
        ``ds[i]`` -> whatever the part holding item ``i`` returns
    """

    def __init__(self, parts: Sequence[Dataset]) -> None:
        if not parts:
            raise ValueError("ConcatSegmentation needs at least one dataset")
        first = parts[0]
        for part in parts[1:]:
            if tuple(part.classes) != tuple(first.classes):
                raise ConfigError(f"cannot concatenate {part!r} with {first!r}: their class lists differ")
        self.parts = list(parts)
        self.classes, self.palette, self.num_classes = first.classes, first.palette, first.num_classes
        self.label_map = getattr(first, "label_map", None)
        self.files = [f for part in self.parts for f in getattr(part, "files", [])]
        self._offsets = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, i: int) -> tuple[Dataset, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        k = int(np.searchsorted(self._offsets, i, side="right")) - 1
        return self.parts[k], i - int(self._offsets[k])

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        part, j = self._locate(i)
        return part.load(j)

    def __getitem__(self, i: int):
        part, j = self._locate(i)
        return part[j]

    def __repr__(self) -> str:
        return f"ConcatSegmentation({self.parts!r})"


def _split_parts(text: str, default_annotation: str) -> list[tuple[str, str]]:
    """``"train+train_extra:coarse"`` → ``[("train", default), ("train_extra", "coarse")]``."""
    parts = []
    for item in text.split("+"):
        name, _, annotation = item.strip().partition(":")
        if not name:
            raise ConfigError(f"empty split name in {text!r}; write e.g. 'train' or 'train+val'")
        annotation = annotation or default_annotation
        check_choice(f"the annotation of split {text!r}", annotation, ANNOTATIONS)
        parts.append((name, annotation))
    return parts


def _on_disk(cfg, split: str, transform) -> Dataset:
    """The reader(s) of ``cfg.dataset`` for a (possibly ``+``-joined) split."""
    readers = []
    for name, annotation in _split_parts(split, cfg.annotation):
        if cfg.dataset == "cityscapes":
            readers.append(CityscapesSegmentation(cfg.data_root, split=name, mode=annotation, transform=transform))
        elif cfg.dataset == "synthetic_disk":
            readers.append(CityscapesSegmentation(
                cfg.data_root, split=name, mode=annotation, transform=transform, label_map=synthetic_label_map(),
                classes=synthetic.CLASSES, palette=synthetic.PALETTE,
            ))  # fmt: skip
        elif cfg.dataset == "mapillary":
            readers.append(MapillaryVistas(cfg.data_root, split=name, transform=transform, resize_short=cfg.resize_short))
        else:  # folder
            if cfg.data_root is None:
                raise MissingFileError("dataset 'folder' needs data_root (the folder holding classes.json, images/, masks/)")
            readers.append(FolderSegmentation(cfg.data_root, split=name, transform=transform, resize_short=cfg.resize_short))
    return readers[0] if len(readers) == 1 else ConcatSegmentation(readers)


def build_segmentation_data(cfg, *, rank: int = 0, world_size: int = 1) -> SegmentationData:
    """Datasets named by ``cfg.dataset`` (one of :data:`DATASET_NAMES`).

    * ``"synthetic"``: the embedded benchmark, generated in memory.
    * ``"cityscapes"``: a Cityscapes-layout folder, 19 classes; ``cfg.train_split`` /
      ``cfg.val_split`` choose the splits (``"train+val"`` concatenates) and ``cfg.annotation``
      fine (gtFine) or coarse (gtCoarse), per part with ``"train+train_extra:coarse"``.
    * ``"synthetic_disk"``: the synthetic benchmark written by ``data_scripts/make_synthetic.py``,
      read through the Cityscapes loader.
    * ``"mapillary"``: Mapillary Vistas v1.2 mapped to the 19 Cityscapes classes
      (:mod:`gald.data.mapillary`), ``cfg.resize_short`` applied to every image.
    * ``"folder"``: :class:`~gald.data.folder.FolderSegmentation` at ``cfg.data_root``.

    ``cfg.normalization`` (``"imagenet"`` or ``"bgr_mean"``) picks the normalisation of both the
    training and the validation transforms.
    """
    check_choice("dataset", cfg.dataset, DATASET_NAMES)
    bgr = getattr(cfg, "normalization", "imagenet") == "bgr_mean"
    crop = tuple(cfg.crop_size)
    # uint8 out of the workers; SegmentationData.to_device normalises on the device, bit-identically
    transform = train_transforms(
        crop, tuple(cfg.scale_range), flip_p=0.5 if cfg.flip else 0.0, ignore_index=cfg.ignore_index, bgr_mean=bgr,
        normalize=False,
    )
    small: tuple[int, ...] = ()
    large: tuple[int, ...] = ()
    val_batch = cfg.eval_batch_size
    if cfg.dataset == "synthetic":
        size = crop
        version = cfg.synthetic_version
        train_set = SyntheticScenes(split="train", num_images=cfg.num_train, seed=cfg.data_seed, size=size, version=version)
        val_set = SyntheticScenes(split="val", num_images=cfg.num_val, seed=cfg.data_seed, size=size, version=version,
                                  transform=ToTensorNormalize(bgr_mean=bgr))
        names, palette, num_classes = list(synthetic.CLASSES), list(synthetic.PALETTE), synthetic.NUM_CLASSES
        small, large = synthetic.SMALL_CLASSES, synthetic.LARGE_CLASSES
        val_items: Dataset = _WithInstances(val_set)
    else:
        if cfg.dataset == "synthetic_disk":
            small, large = synthetic.SMALL_CLASSES, synthetic.LARGE_CLASSES
        train_set = _on_disk(cfg, cfg.train_split, None)
        val_set = _on_disk(cfg, cfg.val_split, eval_transforms(bgr_mean=bgr))
        check_image_files(val_set, what=f"validation split {cfg.val_split!r}")  # before training, not after
        names, palette, num_classes = list(train_set.classes), train_set.palette, train_set.num_classes
        if tuple(val_set.classes) != tuple(train_set.classes):
            raise ConfigError(f"train split {cfg.train_split!r} and val split {cfg.val_split!r} have different classes")
        val_items = val_set
        if cfg.dataset in ("mapillary", "folder") and val_batch > 1:
            # their images differ in size, and whole-image evaluation cannot stack them into one batch
            log.info("%s: evaluating one image at a time (images differ in size)", cfg.dataset)
            val_batch = 1
    if world_size > 1:
        # every rank evaluates its own shard; metrics are summed with all_reduce
        val_items = torch.utils.data.Subset(val_items, list(range(rank, len(val_items), world_size)))
    val_loader = DataLoader(val_items, batch_size=val_batch, shuffle=False, num_workers=cfg.workers)
    sampler = StepBatchSampler(len(train_set), cfg.batch_size, rank=rank, world_size=world_size, seed=cfg.seed)
    return SegmentationData(
        train_set=_Cached(train_set) if cfg.dataset == "synthetic" else train_set, val_set=val_set, val_loader=val_loader, num_classes=num_classes,
        class_names=names, palette=palette, sampler=sampler, train_transform=transform, workers=cfg.workers,
        ignore_index=cfg.ignore_index, small_classes=tuple(small), large_classes=tuple(large),
        normalize=Normalize(bgr_mean=bgr),
    )


def _voc_sets(entries: list[str]) -> list[tuple[str, str]]:
    sets = []
    for e in entries:
        if "/" not in e:
            raise ConfigError(f"VOC image sets are 'year/set' such as '2007/trainval', got {e!r}")
        sets.append(tuple(e.split("/", 1)))
    return sets


def build_detection_data(cfg):
    """``(train_set, val_set, class_names)`` for the dataset of a :class:`~gald.config.DetectionConfig`."""
    train_tf, eval_tf = DetectionTransform(flip=0.5 if cfg.flip else 0.0), DetectionTransform()
    if cfg.dataset == "synthetic":
        size = tuple(cfg.image_size)
        train = SyntheticDetection(split="train", num_images=cfg.num_train, seed=cfg.data_seed, size=size,
                                   transform=train_tf, masks=cfg.masks)
        val = SyntheticDetection(split="val", num_images=cfg.num_val, seed=cfg.data_seed, size=size,
                                 transform=eval_tf, masks=cfg.masks)
        return train, val, list(train.classes)
    if cfg.data_root is None:
        raise ConfigError(f"dataset {cfg.dataset!r} needs --data-root (the VOCdevkit folder or the COCO root)")
    if cfg.dataset == "voc":
        from .voc import VOC_CLASSES, VOCDetection

        classes = tuple(cfg.classes) if cfg.classes else VOC_CLASSES
        train = VOCDetection(cfg.data_root, image_sets=_voc_sets(cfg.train_sets), classes=classes,
                             keep_difficult=False, transform=train_tf)
        val = VOCDetection(cfg.data_root, image_sets=_voc_sets(cfg.test_sets), classes=classes, keep_difficult=True,
                           transform=eval_tf)
        return train, val, list(train.classes)
    from .coco import COCODetection

    train = COCODetection(cfg.data_root, split=cfg.train_split, masks=cfg.masks, transform=train_tf)
    val = COCODetection(cfg.data_root, split=cfg.val_split, masks=cfg.masks, transform=eval_tf)
    if train.classes != val.classes:
        raise ConfigError(f"train and val category lists differ: {train.classes} vs {val.classes}")
    return train, val, list(train.classes)


class _SeededDetection(Dataset):
    """``ds[(index, sample_seed)]``: item ``index`` of ``base``, its random transform (the flip)
    drawn from ``sample_seed``, with the seed kept in the target as ``"sample_seed"`` for the
    detector's per-image sampling (:func:`gald.models.detector.sampling_seeds`). The global torch
    RNG is left as it was."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        index, sample_seed = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed)
            image, target = self.base[index]
        return image, {**target, "sample_seed": torch.tensor(sample_seed, dtype=torch.int64)}


def detection_batches(
    dataset: Dataset, global_batch: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
    start_step: int = 0, workers: int = 0,
) -> Iterator[tuple[tuple, tuple]]:
    """An endless stream of this process's detection batches ``(images, targets)`` from ``start_step`` on.

    Step ``s`` holds the images :class:`StepBatchSampler` assigns it, each with its own sample seed:
    a pure function of ``seed`` and ``s`` (as segmentation's stream), so a resumed run and a run on
    any number of processes see the same images, flipped the same way. Rank ``r`` gets positions
    ``r·B/W … (r+1)·B/W − 1`` of the global batch, so the processes of one step together hold what
    a single process would. Batches are lists (:func:`gald.data.detection.collate`); images keep
    their sizes (the detector pads them).
    """
    sampler = StepBatchSampler(len(dataset), global_batch, rank=rank, world_size=world_size, seed=seed,
                               start_step=start_step)
    loader = DataLoader(
        _SeededDetection(dataset), batch_sampler=sampler, num_workers=workers, collate_fn=collate,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),  # creating the loader leaves the global RNG alone
    )
    yield from loader


def check_image_files(dataset: Dataset, *, what: str = "dataset", max_listed: int = 5) -> None:
    """Check that every image and label file of an on-disk dataset opens and passes Pillow's
    integrity check (``Image.verify``: chunk checksums, no full decode).

    Raises:
        InputFileError: naming the files that fail (the first ``max_listed``) and how many.
    """
    parts = getattr(dataset, "parts", [dataset])
    bad: list[str] = []
    total = 0
    for part in parts:
        for pair in getattr(part, "files", ()):
            for path in pair:
                if path is None:
                    continue
                total += 1
                try:
                    with Image.open(path) as im:
                        im.verify()
                except Exception as err:  # Pillow raises many types for a broken file
                    bad.append(f"{path} ({type(err).__name__}: {err})")
    if bad:
        listed = "; ".join(bad[:max_listed]) + (f"; … {len(bad) - max_listed} more" if len(bad) > max_listed else "")
        raise InputFileError(f"{len(bad)} of {total} files of the {what} cannot be read: {listed}")
