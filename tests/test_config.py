import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

from gald.config import (
    TrainConfig,
    add_config_arguments,
    config_from_args,
    load_config,
    model_config,
)
from gald.models import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_defaults_are_the_embedded_benchmark():
    cfg = TrainConfig()
    assert cfg.dataset == "synthetic" and cfg.arch == "gald_tiny" and cfg.ga == "cgnl" and cfg.block == "gald"
    assert cfg.crop_size == [128, 256] and cfg.output_stride == 8
    # the default model is the GALD arm of the pre-registered v2 grid (plus the stage classifiers)
    assert cfg.synthetic_version == 2 and cfg.d == 2 and cfg.iterations == 600


def test_recorded_train_config_keeps_what_old_checkpoints_trained_on():
    from gald.config import recorded_train_config

    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "synthetic_version"}  # written before v2
    assert recorded_train_config(old).synthetic_version == 1
    assert recorded_train_config({**old, "synthetic_version": 2}).synthetic_version == 2
    assert recorded_train_config({**old, "gone_key": 1}, d=4, lr=None).d == 4  # unknown keys dropped
    assert recorded_train_config({}, dataset="cityscapes").synthetic_version == TrainConfig().synthetic_version


def test_file_then_cli_precedence(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"lr": 0.02, "ga": "nl", "crop_size": [64, 64]}))
    cfg = _parse(["--config", str(path), "--ga", "psp", "--flip", "false", "--max-grad-norm", "none",
                  "--widths", "8", "8", "16", "16", "--scale-range", "0.5", "2"])
    assert cfg.widths == [8, 8, 16, 16] and cfg.scale_range == [0.5, 2.0]
    assert cfg.lr == 0.02 and cfg.ga == "psp" and cfg.crop_size == [64, 64] and cfg.flip is False
    assert cfg.max_grad_norm is None


def test_unknown_key_in_file_lists_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("learning_rate: 0.1\n")
    with pytest.raises(KeyError) as err:
        load_config(path)
    assert "learning_rate" in str(err.value) and "'lr'" in str(err.value)


def test_unknown_cli_flag_is_an_error():
    with pytest.raises(SystemExit):
        _parse(["--learning-rate", "0.1"])


def test_bad_values():
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(ValueError, match="crop_size"):
        TrainConfig(crop_size=[1, 2, 3])


def test_model_config_builds():
    cfg = TrainConfig(widths=[8, 16, 32, 64], head_channels=32)
    model = build_model(model_config(cfg, num_classes=4))
    assert model.head.classifier.out_channels == 4


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.glob("*.yaml") if "_rcnn-" not in p.name), ids=lambda p: p.name)
def test_shipped_configs_load_and_build(path):  # segmentation configs; detection ones: tests/test_train_detection.py
    cfg = load_config(path)
    cfg2 = {**model_config(cfg, num_classes=19), "pretrained_backbone": None}  # never download in tests
    import torch

    with torch.device("meta"):
        build_model(cfg2)


def test_the_default_config_file_is_the_no_argument_run():
    assert load_config(CONFIGS / "gald-cgnl_tiny-d2_synthetic-v2-128x256.yaml") == TrainConfig()


def test_cityscapes_recipes_follow_the_paper():
    for depth in (50, 101):
        cfg = load_config(CONFIGS / f"gald-cgnl_r{depth}-d8_cityscapes-769x769.yaml")
        assert (cfg.batch_size, cfg.crop_size, cfg.iterations, cfg.lr, cfg.momentum, cfg.weight_decay) == (
            8, [769, 769], 50000, 0.01, 0.9, 0.0005)
        assert (cfg.poly_power, cfg.ohem, cfg.ohem_thresh, cfg.ohem_min_kept, cfg.aux_weight, cfg.sync_bn) == (
            0.9, True, 0.7, 100000, 0.4, True)
        assert cfg.arch == f"gald_resnet{depth}" and cfg.scale_range == [0.5, 2.0]


def test_each_choice_list_is_defined_once_and_checked_with_one_error():
    from gald import config
    from gald.engine import inference, memory
    from gald.models import segmentor

    assert memory.CHECKPOINT_POLICIES is config.CHECKPOINT_POLICIES
    assert inference.NORMALIZATIONS is config.NORMALIZATIONS
    assert segmentor.MODES is config.FIDELITY_MODES
    for key, bad in (("amp", "fp8"), ("annotation", "polygons"), ("checkpoint_policy", "some"),
                     ("normalization", "rgb"), ("mode", "faithful")):
        with pytest.raises(ValueError, match=rf"^{key} must be one of \[.*\], got '{bad}'$"):
            TrainConfig(**{key: bad})
    with pytest.raises(ValueError, match=r"^mode must be one of \['paper', 'official'\]"):
        segmentor.gald_tiny(mode="faithful")


def test_every_choice_list_and_registry_refuses_with_one_error_type():
    from gald import data
    from gald.config import UnknownChoiceError
    from gald.data.synthetic import SyntheticScenes
    from gald.engine.inference import TestProtocol
    from gald.metrics.ld_effect import ld_intervention
    from gald.models import build_model, context, heads, ld, segmentor
    from gald.models.backbones import build_backbone
    from gald.models.detector import build_detector
    from gald.viz.attribution import stage_layer

    tiny = segmentor.gald_tiny(num_classes=3)
    refusals = {
        "arch": lambda: build_model({"arch": "unet"}),
        "detector arch": lambda: build_detector({"arch": "yolo"}),
        "backbone": lambda: build_backbone("vgg16"),
        "ga": lambda: context.get_ga("transformer"),  # named as the config key and builder keyword
        "block": lambda: heads.GALDBlock(8, arrangement="serial"),
        "ld_downsample": lambda: ld.LocalDistribution(8, downsample="maxpool"),
        "output_stride": lambda: build_backbone("resnet50", output_stride=4),
        "LD intervention": lambda: ld_intervention(tiny, "shuffle").__enter__(),
        "dataset": lambda: data.get_dataset("ade20k"),
        "split": lambda: SyntheticScenes(split="holdout"),
        "mode": lambda: TestProtocol(mode="tiles"),
        "stage": lambda: stage_layer(tiny, "aux"),
        "amp": lambda: TrainConfig(amp="fp8"),
    }
    for name, refuse in refusals.items():
        with pytest.raises(UnknownChoiceError, match=rf"^{name} must be one of \[.+\], got '?\w+'?$"):
            refuse()
    # one type that is both what a registry miss and what a bad value used to raise
    assert issubclass(UnknownChoiceError, KeyError) and issubclass(UnknownChoiceError, ValueError)


def test_both_tasks_share_one_config_base():
    from gald.config import DetectionConfig, RunConfig

    shared = {f.name for f in dataclasses.fields(RunConfig)}
    assert {"output_dir", "seed", "data_root", "device", "resume", "stop_at"} <= shared
    for cls in (TrainConfig, DetectionConfig):
        assert issubclass(cls, RunConfig)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in shared - {"name"}:  # declared once, in the base, with one default
            assert fields[name].default == next(f for f in dataclasses.fields(RunConfig) if f.name == name).default
    assert TrainConfig().run_dir == "runs/gald-cgnl_tiny-d2_synthetic-v2-128x256"
    assert DetectionConfig().run_dir == "runs/mask_rcnn-gald_tiny-fpn_synthetic"


def test_recorded_configs_from_before_the_ranges_still_load():
    """0 meant "off" for stop_at and max_grad_norm before 0.2.2; a new config must say null."""
    from gald.config import recorded_train_config
    from gald.errors import ConfigError

    cfg = recorded_train_config({"stop_at": 0, "max_grad_norm": 0, "iterations": 10})
    assert cfg.stop_at is None and cfg.max_grad_norm is None and cfg.iterations == 10
    with pytest.raises(ConfigError, match="stop_at must be at least 1, got 0"):
        TrainConfig(stop_at=0)
