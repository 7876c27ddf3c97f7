"""Datasets and joint transforms: the synthetic benchmark, Cityscapes, Mapillary Vistas, plain folders.

``DATASETS`` maps a config's dataset name to its class; an unknown name raises :class:`~gald.config.UnknownChoiceError`
listing the valid ones (see :func:`get_dataset`).
"""

from gald.config import lookup

from .cityscapes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    LABEL_TO_TRAIN,
    TRAIN_TO_LABEL,
    CityscapesSegmentation,
    CorruptImageError,
)
from .folder import FolderSegmentation, read_class_file
from .mapillary import (
    MAPILLARY_CLASSES,
    MAPILLARY_PALETTE,
    MAPILLARY_TO_CITYSCAPES,
    MapillaryVistas,
    mapillary_train_ids,
)
from .synthetic import (
    CLASSES,
    CONTEXT_CLASSES,
    IGNORE_INDEX,
    LABEL_IDS,
    LARGE_CLASSES,
    NUM_CLASSES,
    PALETTE,
    SMALL_CLASSES,
    THING_CLASSES,
    Scene,
    SyntheticScenes,
    colorize,
    export_cityscapes_layout,
    make_scene,
    synthetic_label_map,
)
from .transforms import (
    BGR_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    ToTensorNormalize,
    eval_transforms,
    train_transforms,
)

DATASETS = {
    "synthetic": SyntheticScenes,
    "cityscapes": CityscapesSegmentation,
    "mapillary": MapillaryVistas,
    "folder": FolderSegmentation,
}


def get_dataset(name: str) -> type:
    """The dataset class registered as ``name`` in :data:`DATASETS`."""
    return lookup("dataset", name, DATASETS)


__all__ = [
    "BGR_MEAN",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "CLASSES",
    "CONTEXT_CLASSES",
    "CityscapesSegmentation",
    "Compose",
    "FolderSegmentation",
    "MAPILLARY_CLASSES",
    "MAPILLARY_PALETTE",
    "MAPILLARY_TO_CITYSCAPES",
    "MapillaryVistas",
    "CorruptImageError",
    "DATASETS",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LABEL_IDS",
    "LABEL_TO_TRAIN",
    "LARGE_CLASSES",
    "NUM_CLASSES",
    "PALETTE",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomScale",
    "SMALL_CLASSES",
    "Scene",
    "SyntheticScenes",
    "THING_CLASSES",
    "TRAIN_TO_LABEL",
    "ToTensorNormalize",
    "colorize",
    "eval_transforms",
    "export_cityscapes_layout",
    "get_dataset",
    "make_scene",
    "mapillary_train_ids",
    "read_class_file",
    "synthetic_label_map",
    "train_transforms",
]
