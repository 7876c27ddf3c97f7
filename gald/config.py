"""Training configuration: one flat dataclass per task, flat YAML files, CLI overrides.

:class:`TrainConfig` is segmentation training (``python -m gald.train``), :class:`DetectionConfig`
detection training (``python -m gald.train --task detection``); both are :class:`RunConfig` s.

Precedence: dataclass defaults (the embedded CPU default) < ``--config file.yaml`` < ``--key value``
flags. Unknown keys, in a file or on the command line, are errors that list the valid keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import yaml

from gald.errors import ConfigError, InputFileError

T = TypeVar("T")

__all__ = [
    "RunConfig", "TrainConfig", "DetectionConfig", "add_config_arguments", "config_from_args", "load_config",
    "load_detection_config", "model_config", "detector_config", "recorded_train_config",
    "AMP_MODES", "ANNOTATIONS", "CHECKPOINT_POLICIES", "NORMALIZATIONS", "BACKENDS", "FIDELITY_MODES", "HOST_ARCHS", "OUTPUT_STRIDES", "DETECTION_DATASETS", "HELP", "CHOICES",
    "BOUNDS", "UnknownChoiceError", "bounded", "check_choice", "check_range", "lookup",
]

# Each choice list of the configs and the model builders, defined once and checked by check_choice
# (the lowest layer, so that data, models and engine take them from here).
AMP_MODES = ("none", "bf16", "fp16")
ANNOTATIONS = ("fine", "coarse")  # Cityscapes gtFine / gtCoarse
CHECKPOINT_POLICIES = ("full", "selective")  # activation checkpointing: whole blocks / keep 3x3 outputs
NORMALIZATIONS = ("imagenet", "bgr_mean")  # torchvision mean/std | the authors' Caffe BGR mean
BACKENDS = ("torch", "onnxruntime")  # what runs a segmentation model's forward pass at inference
FIDELITY_MODES = ("paper", "official")  # Eq. 1-3 as printed | the authors' GALDNet.py
#: torchvision segmentation networks a GALD block is plugged into by name (gald.models.hosts.HOSTS)
HOST_ARCHS = ("deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large", "fcn_resnet50",
              "fcn_resnet101", "lraspp_mobilenet_v3_large")
OUTPUT_STRIDES = (8, 16, 32)  # backbone: layer3 and layer4 dilated | layer4 dilated | none
DETECTION_DATASETS = ("synthetic", "voc", "coco")  # generated scenes | VOCdevkit | COCO


class UnknownChoiceError(ConfigError, KeyError):
    """A value outside its choice list, or a name missing from a registry (models, GA modules,
    datasets, ...): the one error type of every such check. A :class:`~gald.errors.GaldError`, and
    both a ``ValueError`` (a bad value) and a ``KeyError`` (a registry miss), so code that catches
    either keeps working."""


class UnknownKeyError(ConfigError, KeyError):
    """A config key (in a file or an override) that the config class does not have."""


def check_choice(name: str, value: Any, choices: Iterable) -> None:
    """Raise ``UnknownChoiceError("<name> must be one of [...], got <value>")`` unless ``value``
    is one of ``choices`` (a tuple, or a registry dict's keys)."""
    if value not in choices:
        raise UnknownChoiceError(f"{name} must be one of {list(choices)}, got {value!r}")


def lookup(name: str, key: Any, registry: Mapping[Any, T]) -> T:
    """``registry[key]``, or the :func:`check_choice` error naming the valid keys."""
    check_choice(name, key, registry)
    return registry[key]


@dataclass
class RunConfig:
    """What the configs of both tasks share: the run folder ``output_dir/name``, the seeds, where the
    data is, the engine's device and loader workers, and resuming; plus a plain dict form for
    ``config.yaml`` and checkpoints. :class:`TrainConfig` and :class:`DetectionConfig` add their own."""

    name: str = "run"
    output_dir: str = "runs"
    seed: int = 0
    dataset: str = "synthetic"
    data_root: str | None = None
    data_seed: int = 0
    workers: int = 0
    device: str = "auto"
    resume: str | None = None  # a last.pt, or "auto": runs/<name>/last.pt when it exists
    overwrite: bool = False  # replace the run in runs/<name> (else a folder holding a checkpoint is refused)
    init_from: str | None = None  # weights to start from, with a fresh optimiser and schedule
    stop_at: int | None = None  # stop after this step, as if interrupted (resume later)
    amp: str = "none"  # mixed precision: none | bf16 | fp16 (fp16 with a GradScaler)
    sync_bn: bool = True  # SyncBatchNorm under DDP on CUDA (world size > 1)
    dist_timeout: float = 1800.0  # seconds for the processes to form a group (and for any collective)

    def __post_init__(self) -> None:
        _check_types(self)
        _check_bounds(self)
        check_choice("amp", self.amp, AMP_MODES)
        if self.data_root is not None and self.dataset == "synthetic":
            raise ConfigError(f"data_root {self.data_root!r} is given but dataset is 'synthetic' (generated in memory, "
                              "no files): name the dataset of that folder with --dataset")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> str:
        return os.path.join(self.output_dir, self.name)


@dataclass
class TrainConfig(RunConfig):
    """Every knob of ``python -m gald.train``; the defaults are the embedded CPU benchmark run."""

    # experiment
    name: str = "gald-cgnl_tiny-d2_synthetic-v2-128x256"
    # data (dataset, data_root, data_seed, workers: RunConfig)
    # splits of the on-disk datasets: "+" joins several ("train+val"); a part may name its own
    # Cityscapes annotation ("train+train_extra:coarse"); "all" is every image of a folder dataset
    train_split: str = "train"
    val_split: str = "val"
    annotation: str = "fine"  # Cityscapes: fine (gtFine) | coarse (gtCoarse)
    resize_short: int | None = None  # mapillary/folder: rescale each image's short side first
    normalization: str = "imagenet"  # imagenet (torchvision mean/std) | bgr_mean (the authors' Caffe mean)
    num_train: int = 400
    num_val: int = 100
    synthetic_version: int = 2  # the synthetic benchmark's version (gald.data.synthetic.GENERATOR_VERSIONS)
    crop_size: list[int] = field(default_factory=lambda: [128, 256])
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    flip: bool = True
    # model (see gald.models.build_model)
    arch: str = "gald_tiny"
    ga: str = "cgnl"
    block: str = "gald"
    ld_downsample: str = "dwconv"
    d: int = 2
    ld_last_norm: bool | None = None  # None: the mode's choice (see gald.models.ld.PAPER_LD)
    ld_init: str | None = None  # None: the mode's choice; else one of gald.models.ld.LD_INITS
    ga_downsample: bool = True
    output_stride: int = 8
    mode: str = "paper"
    depths: list[int] = field(default_factory=lambda: [1, 1, 2, 1])
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 96])
    head_channels: int = 64
    aux_channels: int = 64
    stage_classifiers: bool = True
    pretrained_backbone: str | None = None
    plug_after: str | None = None  # a host arch (HOST_ARCHS): the module GALD goes after; None: the host's default
    activation_checkpointing: bool = False  # recompute backbone blocks in backward: less memory, more time
    checkpoint_policy: str = "full"  # "full": recompute whole blocks; "selective": keep 3×3 conv outputs
    # optimisation (paper: SGD 0.01, momentum 0.9, wd 5e-4, poly 0.9)
    batch_size: int = 8
    iterations: int = 600
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    max_grad_norm: float | None = None
    # loss (paper: OHEM 0.7, min_kept per image, aux 0.4)
    ohem: bool = True
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 5000
    aux_weight: float = 0.4
    ignore_index: int = 255
    # stage classifiers (Sec. 4.3.1, Fig. 5): fine-tuned on the frozen model at the end
    stage_iterations: int = 150
    stage_lr: float = 0.01
    # engine (amp, sync_bn: RunConfig)
    channels_last: bool = False
    nnpack: bool = False  # CPU: wide 3×3 convs (the head's) through NNPACK's fast-convolution algorithms
    freeze_bn: bool = False
    log_interval: int = 25
    eval_interval: int = 300
    checkpoint_interval: int = 300
    eval_batch_size: int = 8
    ld_effect: bool = True  # at the end, measure the LD effect (gald.metrics.ld_effect) of models with LD

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("annotation", self.annotation, ANNOTATIONS)
        check_choice("checkpoint_policy", self.checkpoint_policy, CHECKPOINT_POLICIES)
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_choice("mode", self.mode, FIDELITY_MODES)
        check_choice("output_stride", self.output_stride, OUTPUT_STRIDES)
        if len(self.crop_size) != 2:
            raise ConfigError(f"crop_size needs [height, width], got {self.crop_size}")
        if self.arch in HOST_ARCHS:
            for key, value in (("mode", "official"), ("activation_checkpointing", True), ("output_stride", 16),
                               ("output_stride", 32)):
                if getattr(self, key) == value:
                    raise ConfigError(f"{key} {value} applies to gald's own networks, not to the host {self.arch} "
                                      "(GALD plugged into torchvision's model, paper mode)")
        elif self.plug_after is not None:
            raise ConfigError(f"plug_after {self.plug_after!r} is for a host network (arch one of "
                              f"{list(HOST_ARCHS)}), not for arch {self.arch!r}")
        if len(self.scale_range) != 2 or self.scale_range[0] > self.scale_range[1]:
            raise ConfigError(f"scale_range needs [low, high] with low <= high, got {self.scale_range}")


#: Keys added to :class:`TrainConfig` after checkpoints were written with it, and the value those
#: checkpoints were trained with (the synthetic benchmark was v1 before the key existed).
_ADDED_KEYS = {"synthetic_version": 1}


def recorded_train_config(record: dict[str, Any], **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` a checkpoint's ``config["train"]`` record describes.

    Keys the record predates take the value they had then (not today's default); keys this
    version does not know are dropped; ``overrides`` that are not ``None`` replace recorded values.
    """
    values = {**_ADDED_KEYS, **record} if record else {}
    for key in ("stop_at", "max_grad_norm"):  # before 0.2.2, 0 meant "off" here (null does now)
        if values.get(key) == 0:
            values[key] = None
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("dataset", "synthetic") == "synthetic" and overrides.get("data_root") is None:
        values.pop("data_root", None)  # runs before 0.2.1 could record a data_root the in-memory data ignored
    return TrainConfig(**{k: v for k, v in values.items() if k in _fields(TrainConfig)})


def _check_types(cfg: RunConfig) -> None:
    """Check every field against its annotation, naming the key: booleans strictly (the string
    ``"no"`` is not a boolean), integers without a fractional part, floats also from the strings
    YAML 1.1 leaves unparsed (``1e-3``), lists element by element. Floats given as ints or numeric
    strings are stored as floats."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        converted = _conform(f.name, value, hints[f.name])
        if converted is not value:
            object.__setattr__(cfg, f.name, converted)


#: Ranges of the numeric keys of both configs, checked when a config is made (a list key element by
#: element): ``(lowest, highest, whether lowest itself is excluded)``; ``None`` = unbounded.
BOUNDS: dict[str, tuple[float | None, float | None, bool]] = {
    **dict.fromkeys(("seed", "data_seed", "workers", "eval_interval", "ohem_min_kept", "stage_iterations",
                     "warmup_iters", "lr_steps"), (0, None, False)),
    **dict.fromkeys(("log_interval", "checkpoint_interval", "iterations", "batch_size", "eval_batch_size", "num_train",
                     "num_val", "crop_size", "image_size", "d", "depths", "widths", "head_channels", "aux_channels",
                     "stop_at", "epochs", "resize_short", "min_size", "max_size", "fpn_channels",
                     "synthetic_version"), (1, None, False)),
    **dict.fromkeys(("scale_range", "max_grad_norm", "dist_timeout", "gamma"), (0, None, True)),
    # a learning rate of 0 is allowed: it measures what a step does without the update
    **dict.fromkeys(("lr", "stage_lr", "weight_decay", "poly_power", "aux_weight"), (0, None, False)),
    **dict.fromkeys(("momentum", "ohem_thresh", "warmup_ratio", "mask_threshold"), (0, 1, False)),
    "ignore_index": (0, 255, False),
    "trainable_backbone_layers": (0, 5, False),  # torchvision's ResNet stages
}


def check_range(name: str, value: Any, low: float | None = None, high: float | None = None, *,
                open_low: bool = False) -> None:
    """Refuse ``value`` (or any element of a list or tuple) outside ``[low, high]`` (``(low, high]``
    with ``open_low``), naming ``name``: a config key or a command-line flag.

    Raises:
        ConfigError: ``"<name> must be <range>, got <value>"``.
    """
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if (low is not None and (v < low or (open_low and v == low))) or (high is not None and v > high):
            if high is not None:
                want = f"in ({low}, {high}]" if open_low else f"in [{low}, {high}]"
            else:
                want = f"> {low}" if open_low else f"at least {low}"
            raise ConfigError(f"{name} must be {want}, got {value!r}")


def bounded(kind: type, low: float | None = None, high: float | None = None, *, open_low: bool = False):
    """An argparse ``type=`` that converts with ``kind`` and refuses values outside the range of
    :func:`check_range`: argparse then prints ``argument --flag: must be …`` and exits with code 2."""

    def convert(text: str):
        value = kind(text)  # a ValueError here is argparse's "invalid int value"
        try:
            check_range("value", value, low, high, open_low=open_low)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix("value ")) from None
        return value

    convert.__name__ = kind.__name__
    return convert


def _check_bounds(cfg: RunConfig) -> None:
    """Refuse a numeric key outside :data:`BOUNDS`, naming the key and the range."""
    for f in dataclasses.fields(cfg):
        bounds, value = BOUNDS.get(f.name), getattr(cfg, f.name)
        if bounds is not None and value is not None:
            check_range(f.name, value, bounds[0], bounds[1], open_low=bounds[2])


def _conform(key: str, value: Any, hint: Any) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_conform(key, v, item) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or float(value) != int(value)):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            number = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return value if isinstance(value, float) else number
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _check_keys(keys: typing.Iterable[str], source: str, cls: type, *, file: bool = False) -> None:
    valid = _fields(cls)
    unknown = sorted(set(keys) - set(valid))
    if not unknown:
        return
    for other, task, fix in ((DetectionConfig, "detection", "add --task detection"),
                             (TrainConfig, "segmentation", "drop --task detection")):
        # a file of the other task: several keys, all of them the other config's (not one typo)
        if file and other is not cls and len(unknown) >= 3 and set(unknown) <= set(_fields(other)):
            raise UnknownKeyError(f"{source} is a {task} config (its keys {unknown[:4]} are {other.__name__} keys): {fix}")
    raise UnknownKeyError(f"unknown {cls.__name__} key(s) {unknown} in {source}; valid keys: {sorted(valid)}")


def load_config(path: str | os.PathLike | None = None, *, cls: type = TrainConfig, **overrides: Any):
    """Defaults, then a flat YAML file, then keyword overrides, into the dataclass ``cls``
    (:class:`TrainConfig`; detection passes its ``DetectionConfig``)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except OSError as err:
            raise InputFileError(f"cannot read config file {os.fspath(path)!r}: {err.strerror or err}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{os.fspath(path)!r} is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{os.fspath(path)!r} must hold a flat mapping of config keys")
        _check_keys(data, os.fspath(path), cls, file=True)
        values.update(data)
    _check_keys(overrides, "overrides", cls)
    values.update(overrides)
    return cls(**values)


def _parse_optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null", "") else kind(text)

    return parse


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


#: What each config key (and its ``--key`` flag) means: ``--help`` text of ``python -m gald.train``,
#: both tasks. Keys the two configs share but read differently are worded for both.
HELP: dict[str, str] = {
    # run (both tasks)
    "name": "run name: the run folder is OUTPUT_DIR/NAME",
    "output_dir": "folder holding the run folders",
    "seed": "seed of model initialisation, sampling and augmentation (data order too)",
    "dataset": "the data: synthetic is generated in memory, the others are read from --data-root",
    "data_root": "root folder of an on-disk dataset (needs --dataset)",
    "data_seed": "seed of the generated benchmark's images (synthetic datasets)",
    "workers": "data-loading worker processes (0: in the training process)",
    "device": "auto (the GPU when CUDA is available, under torchrun this process's; else the CPU), cpu, cuda or cuda:N",
    "resume": "continue from a last.pt, or 'auto': this run's last.pt when it exists",
    "overwrite": "replace the run already in OUTPUT_DIR/NAME (else a folder holding a checkpoint is refused)",
    "init_from": "weights to start from (a model.pt), with a fresh optimiser and schedule",
    "stop_at": "stop after this step as if interrupted (resume later with --resume auto)",
    "amp": "mixed precision: fp16 uses a GradScaler",
    "sync_bn": "SyncBatchNorm under DDP on CUDA with more than one process",
    "dist_timeout": "seconds for the processes to form a group, and for any collective",
    # segmentation data
    "train_split": "training split(s); '+' joins several ('train+val'), a part may name its Cityscapes "
                   "annotation ('train+train_extra:coarse'); 'all': every image of a folder dataset; "
                   "detection (COCO): the training split",
    "val_split": "validation split (detection, COCO: the validation split)",
    "annotation": "Cityscapes annotation: fine (gtFine) or coarse (gtCoarse)",
    "resize_short": "mapillary / folder: rescale each image's short side to this first",
    "normalization": "input normalisation: torchvision's ImageNet mean/std, or the authors' Caffe BGR mean",
    "num_train": "training images of the generated benchmark",
    "num_val": "validation images of the generated benchmark",
    "synthetic_version": "version of the generated benchmark (gald.data.synthetic)",
    "crop_size": "training crop: HEIGHT WIDTH (the paper: 769 769 on Cityscapes)",
    "scale_range": "random scale range: LOW HIGH (the paper: 0.5 2.0); 1 1 disables it",
    "flip": "random horizontal flips",
    # segmentation model
    "arch": "the network (gald.models.list_models(task=...))",
    "ga": "Global Aggregation module (Sec. 3.1)",
    "block": "arrangement of GA and LD (Sec. 4.3): gald = GA then LD (the paper's), ldga, parallel, ga, ld, none",
    "ld_downsample": "how LD shrinks F_GA before its mask (Sec. 3.2; the paper: depth-wise strided convolutions)",
    "d": "LD's downsampling rate d (Sec. 3.2; the paper: 8, Table 1(e)); detection: none = the builder's",
    "ld_last_norm": "BatchNorm after LD's last convolution (not given: the --mode's choice)",
    "ld_init": "initialisation of LD's mask layer (none or not given: the --mode's choice)",
    "ga_downsample": "let the GA module work on a 2x downsampled map (the authors' code)",
    "output_stride": "backbone output stride (8: layer3 and layer4 dilated, as the paper)",
    "mode": "paper: Eq. 1-3 as printed; official: as the authors' GALDNet.py",
    "depths": "gald_tiny: blocks per stage (four numbers); detection: the tiny backbone's",
    "widths": "gald_tiny: channels per stage (four numbers); detection: the tiny backbone's",
    "head_channels": "channels of the GALD head",
    "aux_channels": "channels of the auxiliary head on layer3",
    "stage_classifiers": "1x1 classifiers on F and F_GA (Sec. 4.3.1, Fig. 5), fine-tuned at the end",
    "pretrained_backbone": "backbone weights: a local file, 'torchvision' (downloads ImageNet weights) or none",
    "plug_after": "host networks (arch a torchvision model): the module GALD is plugged after (none: the host's "
                  "default, gald.models.HOSTS)",
    "activation_checkpointing": "recompute backbone blocks in the backward pass: less memory, more time",
    "checkpoint_policy": "activation checkpointing: full recomputes whole blocks, selective keeps 3x3 outputs",
    # optimisation
    "batch_size": "global batch: images per step over all processes (each takes BATCH_SIZE / world size)",
    "iterations": "optimiser steps",
    "lr": "learning rate (SGD)",
    "momentum": "SGD momentum",
    "weight_decay": "SGD weight decay",
    "poly_power": "power of the poly learning-rate schedule",
    "max_grad_norm": "clip the gradient norm to this (none: no clipping)",
    "ohem": "online hard example mining on the main output (the paper: on)",
    "ohem_thresh": "OHEM: pixels with a true-class probability above this are easy",
    "ohem_min_kept": "OHEM: pixels kept at least, per image",
    "aux_weight": "weight of the auxiliary loss (the paper: 0.4)",
    "ignore_index": "label id that is not scored",
    "stage_iterations": "steps that fine-tune the stage classifiers on the frozen model (0: not trained, not scored)",
    "stage_lr": "learning rate of the stage classifiers' fine-tuning",
    # engine
    "channels_last": "channels-last memory format (faster convolutions on recent GPUs)",
    "nnpack": "CPU: the head's wide 3x3 convolutions through NNPACK",
    "freeze_bn": "keep BatchNorm statistics and affine parameters fixed (fine-tuning)",
    "log_interval": "steps between log lines (loss terms, learning rate, images/s)",
    "eval_interval": "steps between validations (0: only at the end)",
    "checkpoint_interval": "steps between last.pt checkpoints",
    "eval_batch_size": "images per validation batch",
    "ld_effect": "at the end, measure the LD effect: what mIoU loses when M is replaced by its mean (docs/ld.md)",
    # detection
    "train_sets": "VOC training sets, YEAR/SET (e.g. 2007/trainval 2012/trainval)",
    "test_sets": "VOC test sets, YEAR/SET",
    "classes": "VOC class names (not given: the 20 Pascal VOC classes)",
    "image_size": "generated benchmark: image HEIGHT WIDTH",
    "context": "context module in the detector (none, nl, cgnl, gald)",
    "placement": "where the context module sits: c5 (on the backbone's last stage) or p5 (on the FPN's top level)",
    "weights_backbone": "backbone weights: a local file, 'torchvision' (downloads) or none",
    "trainable_backbone_layers": "backbone stages trained (0-5; none: the builder's)",
    "min_size": "resize: shorter side (none: the builder's)",
    "max_size": "resize: longest side at most (none: the builder's)",
    "fpn_channels": "FPN channels (none: the builder's)",
    "epochs": "train for this many epochs instead of --iterations (then --lr-steps are epochs)",
    "lr_steps": "steps (or epochs) where the learning rate is multiplied by --gamma",
    "gamma": "learning-rate factor at each of --lr-steps",
    "warmup_iters": "linear warm-up steps",
    "warmup_ratio": "learning rate at the start of the warm-up, relative to --lr",
    "mask_threshold": "mask probability above which a pixel is inside the instance",
}

#: Choice lists of config keys shown in ``--help`` (the registries of models and data are added by
#: the command, which may import them: :func:`add_config_arguments`'s ``choices``).
CHOICES: dict[str, tuple] = {
    "amp": AMP_MODES, "annotation": ANNOTATIONS, "checkpoint_policy": CHECKPOINT_POLICIES,
    "normalization": NORMALIZATIONS, "mode": FIDELITY_MODES, "output_stride": OUTPUT_STRIDES,
}


def add_config_arguments(parser: argparse.ArgumentParser, cls: type = TrainConfig, *,
                         choices: typing.Mapping[str, typing.Iterable] | None = None) -> None:
    """Add ``--config`` and one ``--key`` flag per field of the dataclass ``cls``.

    A flag's value overrides the config file's (so the parser's own default is "not given"); the
    help shows :data:`HELP`, the dataclass default, and the valid choices (:data:`CHOICES`, plus
    ``choices``: registries a command passes in). Values are checked when the config is made.
    """
    parser.add_argument("--config", default=None, help="flat YAML file of config keys (configs/); flags override it (default: none, the built-in defaults)")
    hints = typing.get_type_hints(cls)
    defaults = cls()
    known = {**CHOICES, **(choices or {})}
    for name in _fields(cls):
        hint = hints[name]
        is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = typing.get_args(hint) if is_union else (hint,)
        optional = type(None) in args
        base = next(a for a in args if a is not type(None))
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": name}
        if typing.get_origin(base) is list:
            kwargs.update(nargs="*", type=typing.get_args(base)[0])
        elif base is bool:
            kwargs.update(type=_parse_bool, metavar="{true,false}")
        else:
            kwargs.update(type=_parse_optional(base) if optional else base)
        default = getattr(defaults, name)
        shown = "none" if default is None else " ".join(map(str, default)) if isinstance(default, list) else default
        text = HELP.get(name, "")
        if name in known:
            text += f"; one of: {', '.join(map(str, known[name]))}"
        kwargs["help"] = f"{text} (default: {str(shown).lower() if isinstance(shown, bool) else shown})"
        parser.add_argument("--" + name.replace("_", "-"), **kwargs)


def config_from_args(args: argparse.Namespace, cls: type = TrainConfig):
    values = {k: v for k, v in vars(args).items() if k in _fields(cls)}
    return load_config(getattr(args, "config", None), cls=cls, **values)


def model_config(cfg: TrainConfig, num_classes: int) -> dict[str, Any]:
    """The ``build_model`` config of a training config: a gald network, or a host with GALD plugged in."""
    if cfg.arch in HOST_ARCHS:
        return {
            "arch": cfg.arch, "num_classes": num_classes, "aux": None if cfg.aux_weight > 0 else False,
            "after": cfg.plug_after, "block": cfg.block, "ga": cfg.ga, "d": cfg.d, "ld_downsample": cfg.ld_downsample,
            "ld_last_norm": cfg.ld_last_norm, "ld_init": cfg.ld_init, "ga_downsample": cfg.ga_downsample,
            "stage_classifiers": cfg.stage_classifiers, "pretrained_backbone": cfg.pretrained_backbone,
        }
    model = {
        "arch": cfg.arch, "num_classes": num_classes, "ga": cfg.ga, "block": cfg.block,
        "ld_downsample": cfg.ld_downsample, "d": cfg.d, "ld_last_norm": cfg.ld_last_norm,
        "ld_init": cfg.ld_init, "ga_downsample": cfg.ga_downsample,
        "output_stride": cfg.output_stride, "mode": cfg.mode, "stage_classifiers": cfg.stage_classifiers,
        "head_channels": cfg.head_channels, "aux_channels": cfg.aux_channels,
        "pretrained_backbone": cfg.pretrained_backbone,
    }
    if cfg.arch == "gald_tiny":
        model.update(depths=tuple(cfg.depths), widths=tuple(cfg.widths))
    return model


@dataclass
class DetectionConfig(RunConfig):
    """Every knob of detection training; the defaults are the embedded CPU run on the scene benchmark."""

    # experiment
    name: str = "mask_rcnn-gald_tiny-fpn_synthetic"
    # data: dataset "synthetic" (generated on the fly), "voc" (VOCdevkit) or "coco" (RunConfig)
    train_sets: list[str] = field(default_factory=lambda: ["2007/trainval", "2012/trainval"])  # VOC year/set
    test_sets: list[str] = field(default_factory=lambda: ["2007/test"])
    classes: list[str] | None = None  # VOC class names; None: the 20 Pascal VOC classes
    train_split: str = "train2017"  # COCO
    val_split: str = "val2017"
    num_train: int = 400  # synthetic
    num_val: int = 100
    image_size: list[int] = field(default_factory=lambda: [128, 256])
    flip: bool = True
    # model (see gald.models.detector.build_detector); None = the builder's default
    arch: str = "mask_rcnn_tiny_fpn_gald"
    context: str = "gald"
    placement: str = "c5"
    ga: str = "cgnl"
    d: int | None = None
    weights_backbone: str | None = None
    trainable_backbone_layers: int | None = None
    min_size: int | None = None
    max_size: int | None = None
    fpn_channels: int | None = None
    depths: list[int] | None = None  # tiny backbone only
    widths: list[int] | None = None
    # optimisation: SGD, linear warm-up, steps ×0.1 (mmdetection's schedule)
    batch_size: int = 4
    iterations: int = 600
    epochs: int | None = None  # if set, replaces iterations and lr_steps are in epochs
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: list[int] = field(default_factory=lambda: [450, 550])
    gamma: float = 0.1
    warmup_iters: int = 100
    warmup_ratio: float = 0.001
    max_grad_norm: float | None = 10.0
    # evaluation
    mask_threshold: float = 0.5
    eval_batch_size: int = 4
    # engine
    log_interval: int = 20
    eval_interval: int = 0
    checkpoint_interval: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("dataset", self.dataset, DETECTION_DATASETS)
        if len(self.image_size) != 2:
            raise ConfigError(f"image_size needs [height, width], got {self.image_size}")

    @property
    def masks(self) -> bool:
        return self.arch.startswith("mask_rcnn")


def load_detection_config(path: str | os.PathLike | None = None, **overrides: Any) -> DetectionConfig:
    """Defaults, then a flat YAML file, then keyword overrides (unknown keys are errors)."""
    return load_config(path, cls=DetectionConfig, **overrides)


def detector_config(cfg: DetectionConfig, num_classes: int) -> dict[str, Any]:
    """The :func:`~gald.models.detector.build_detector` config of a training config (``num_classes`` with background)."""
    model: dict[str, Any] = {"arch": cfg.arch, "num_classes": num_classes, "context": cfg.context,
                             "placement": cfg.placement, "ga": cfg.ga,
                             "weights_backbone": cfg.weights_backbone,
                             "trainable_backbone_layers": cfg.trainable_backbone_layers}
    for key in ("d", "min_size", "max_size", "fpn_channels", "depths", "widths"):
        if getattr(cfg, key) is not None:
            model[key] = getattr(cfg, key)
    return model
