"""The names moved in 0.2.0 still resolve at their old paths, to the very same objects (CHANGELOG.md).

Remove each alias, and its row here, one minor release after it was deprecated.
"""

from __future__ import annotations

import importlib

import pytest

# old module → new module: every public name the old one defined is the new one's object
MOVED_MODULES = {
    "gald.ablation": "gald.experiments.ablation",
    "gald.analysis": "gald.experiments.analysis",
    "gald.attribution": "gald.viz.attribution",
    "gald.detection_metrics": "gald.metrics.detection",
    "gald.figures": "gald.viz.figures",
    "gald.images": "gald.data.images",
    "gald.inference": "gald.engine.inference",
    "gald.ld_effect": "gald.metrics.ld_effect",
    "gald.models.fuse": "gald.deploy.fuse",
    "gald.models.nnpack": "gald.deploy.nnpack",
    "gald.stats": "gald.experiments.stats",
    "gald.submission": "gald.deploy.submission",
}

# (old module, old name) → (new module, new name)
MOVED_NAMES = {
    ("gald.models", "count_batch_norms"): ("gald.deploy.fuse", "count_batch_norms"),
    ("gald.models", "fuse_conv_bn"): ("gald.deploy.fuse", "fuse_conv_bn"),
    ("gald.models", "optimize_for_inference"): ("gald.deploy.fuse", "optimize_for_inference"),
    ("gald.models", "NNPACKConv2d"): ("gald.deploy.nnpack", "NNPACKConv2d"),
    ("gald.models", "convert_to_nnpack"): ("gald.deploy.nnpack", "convert_to_nnpack"),
    ("gald.models", "nnpack_available"): ("gald.deploy.nnpack", "nnpack_available"),
    ("gald.models.weights", "load_state_dict_checked"): ("gald.models.state_dict", "load_state_dict_checked"),
    ("gald.train", "main"): ("gald.engine.segmentation", "fit"),
    ("gald.train", "train_step"): ("gald.engine.segmentation", "train_step"),
    ("gald.train", "evaluate"): ("gald.engine.segmentation", "evaluate"),
    ("gald.train", "output_metrics"): ("gald.engine.segmentation", "output_metrics"),
    ("gald.train", "finetune_stage_classifiers"): ("gald.engine.segmentation", "finetune_stage_classifiers"),
    ("gald.train", "freeze_batchnorm"): ("gald.engine.segmentation", "freeze_batchnorm"),
    ("gald.train", "unwrap"): ("gald.engine.segmentation", "unwrap"),
    ("gald.train", "save_curves"): ("gald.engine.segmentation", "save_curves"),
    ("gald.train", "seed_everything"): ("gald.engine.runtime", "seed_everything"),
    ("gald.train", "resolve_device"): ("gald.engine.runtime", "resolve_device"),
    ("gald.train", "autocast"): ("gald.engine.runtime", "autocast"),
    ("gald.train", "log_to_stdout"): ("gald.engine.runtime", "log_to_stdout"),
    ("gald.train", "run_logging"): ("gald.engine.runtime", "run_logging"),
    ("gald.train_detection", "DetectionConfig"): ("gald.config", "DetectionConfig"),
    ("gald.train_detection", "load_detection_config"): ("gald.config", "load_detection_config"),
    ("gald.train_detection", "detector_config"): ("gald.config", "detector_config"),
    ("gald.train_detection", "build_detection_data"): ("gald.data.build", "build_detection_data"),
    ("gald.train_detection", "train_step"): ("gald.engine.detection", "train_step"),
    ("gald.train_detection", "predict"): ("gald.engine.detection", "predict"),
    ("gald.train_detection", "evaluate"): ("gald.engine.detection", "evaluate"),
    ("gald.train_detection", "main"): ("gald.engine.detection", "fit"),
    ("gald.evaluate", "evaluate_checkpoint"): ("gald.engine.evaluation", "evaluate_checkpoint"),
    ("gald.evaluate", "add_protocol_arguments"): ("gald.engine.inference", "add_protocol_arguments"),
    ("gald.evaluate", "protocol_from_args"): ("gald.engine.inference", "protocol_from_args"),
    ("gald.evaluate", "checkpoint_normalization"): ("gald.engine.inference", "checkpoint_normalization"),
    ("gald.evaluate", "NORMALIZATIONS"): ("gald.engine.inference", "NORMALIZATIONS"),
    ("gald.predict", "Predictor"): ("gald.engine.predictor", "Predictor"),
    ("gald.app", "Predictor"): ("gald.engine.predictor", "Predictor"),
    ("gald.app", "load_predictor"): ("gald.engine.predictor", "load_predictor"),
    ("gald.app", "default_checkpoint"): ("gald.engine.predictor", "default_checkpoint"),
    ("gald.app", "DEFAULT_CHECKPOINT"): ("gald.engine.predictor", "DEFAULT_CHECKPOINT"),
    ("gald.app", "_official_arch"): ("gald.deploy.official", "official_arch"),
    ("gald.app", "MAX_PIXELS"): ("gald.viz.views", "MAX_PIXELS"),
    ("gald.app", "MAX_SIDE"): ("gald.viz.views", "MAX_SIDE"),
    ("gald.app", "MIN_SIDE"): ("gald.viz.views", "MIN_SIDE"),
    ("gald.app", "STAGE_FEATURES"): ("gald.viz.views", "STAGE_FEATURES"),
    ("gald.app", "STAGE_NAMES"): ("gald.viz.views", "STAGE_NAMES"),
    ("gald.app", "UPSCALE_SIDE"): ("gald.viz.views", "UPSCALE_SIDE"),
    ("gald.app", "analyze"): ("gald.viz.views", "analyze"),
    ("gald.app", "attribution_view"): ("gald.viz.views", "attribution_view"),
    ("gald.app", "example_images"): ("gald.viz.views", "example_images"),
    ("gald.app", "ld_effect_markdown"): ("gald.viz.views", "ld_effect_markdown"),
    ("gald.app", "ld_views"): ("gald.viz.views", "ld_views"),
    ("gald.app", "load_image"): ("gald.viz.views", "load_image"),
    ("gald.app", "model_banner"): ("gald.viz.views", "model_banner"),
    ("gald.app", "model_info_markdown"): ("gald.viz.views", "model_info_markdown"),
    ("gald.app", "prediction_views"): ("gald.viz.views", "prediction_views"),
    ("gald.app", "prepare_image"): ("gald.viz.views", "prepare_image"),
    ("gald.app", "stage_views"): ("gald.viz.views", "stage_views"),
    ("gald.predict_detection", "load_detector"): ("gald.engine.predictor", "load_detector"),
    ("gald.predict_detection", "draw_detections"): ("gald.viz.overlays", "draw_detections"),
    ("gald.convert_official", "official_to_gald"): ("gald.deploy.official", "official_to_gald"),
    ("gald.convert_official", "gald_to_official"): ("gald.deploy.official", "gald_to_official"),
    ("gald.convert_official", "load_official"): ("gald.deploy.official", "load_official"),
    ("gald.convert_official", "convert"): ("gald.deploy.official", "convert"),
    ("gald.export", "export_onnx"): ("gald.deploy.export", "export_onnx"),
    ("gald.export", "onnx_max_abs_diff"): ("gald.deploy.export", "onnx_max_abs_diff"),
}

# gald.metrics and gald.viz became packages that re-export what the modules of those names held
REEXPORTING_PACKAGES = {"gald.metrics": "gald.metrics.segmentation", "gald.viz": "gald.viz.overlays"}


@pytest.mark.parametrize("old,new", sorted(MOVED_MODULES.items()))
def test_moved_module_is_a_documented_alias(old, new):
    if old == "gald.attribution":
        pytest.importorskip("captum")
    alias, module = importlib.import_module(old), importlib.import_module(new)
    assert alias.__doc__.startswith(f"Deprecated alias of :mod:`{new}`")
    public = [n for n in vars(alias) if not n.startswith("_")]
    assert public and all(getattr(alias, n) is getattr(module, n) for n in public)
    assert set(getattr(alias, "__all__", public)) <= set(public)


@pytest.mark.parametrize("old,new", sorted(MOVED_NAMES.items()), ids=lambda p: ".".join(p))
def test_moved_name_resolves_to_the_same_object(old, new):
    if old[0] == "gald.app":
        pytest.importorskip("gradio")
    assert getattr(importlib.import_module(old[0]), old[1]) is getattr(importlib.import_module(new[0]), new[1])


@pytest.mark.parametrize("package,module", sorted(REEXPORTING_PACKAGES.items()))
def test_package_reexports_the_module_it_replaced(package, module):
    pkg, mod = importlib.import_module(package), importlib.import_module(module)
    assert pkg.__all__ and all(getattr(pkg, n) is getattr(mod, n) for n in pkg.__all__)


def test_an_unknown_name_of_gald_models_is_still_an_attribute_error():
    import gald.models

    with pytest.raises(AttributeError, match="no attribute 'fuse_everything'"):
        gald.models.fuse_everything  # noqa: B018
