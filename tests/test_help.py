"""Every flag of every command explains itself: help text, the default, and the valid choices; ``--help``
answers without building a model or data."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from gald import app, convert_official, evaluate, export, predict, predict_detection, train

ROOT = Path(__file__).resolve().parents[1]


def _script_parser(name: str) -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location(name, ROOT / "data_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_args_parser()


PARSERS = {
    "gald.train": train.get_args_parser,
    "gald.train --task detection": train.get_detection_args_parser,
    "gald.evaluate": evaluate.get_args_parser,
    "gald.export": export.get_args_parser,
    "gald.predict": predict.get_args_parser,
    "gald.predict_detection": predict_detection.get_args_parser,
    "gald.convert_official": convert_official.get_args_parser,
    "gald.app": app.get_args_parser,
    **{f"data_scripts/{n}.py": (lambda n=n: _script_parser(n)) for n in (
        "make_synthetic", "make_synthetic_detection", "prepare_cityscapes", "prepare_mapillary", "prepare_folder",
        "reencode_png")},
}


@pytest.mark.parametrize("command", PARSERS)
def test_every_flag_has_help_a_default_and_its_choices(command):
    parser = PARSERS[command]()
    text = parser.format_help()
    one_of = {a for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[0] if action.option_strings else action.dest
        assert action.help and len(action.help) > 8, f"{command} {flag}: no help"
        boolean = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if action.option_strings and not boolean and not action.required and action not in one_of:
            rendered = parser._get_formatter()._expand_help(action)
            assert "default" in rendered, f"{command} {flag}: no default shown ({rendered!r})"
        if action.choices:
            rendered = parser._get_formatter()._format_action(action)
            assert all(str(c) in rendered for c in action.choices), f"{command} {flag}: choices not shown"
    assert "==SUPPRESS==" not in text


def test_every_config_key_has_its_help_text():
    import dataclasses

    from gald.config import HELP, DetectionConfig, TrainConfig

    keys = {f.name for cls in (TrainConfig, DetectionConfig) for f in dataclasses.fields(cls)}
    assert keys - set(HELP) == set() and set(HELP) - keys == set()


def test_train_help_lists_the_registries_choices():
    from gald.config import AMP_MODES
    from gald.models import MODELS
    from gald.models.context import GA_MODULES

    text = " ".join(train.get_args_parser().format_help().split())
    for name in [*MODELS, *GA_MODULES, *AMP_MODES]:
        assert name in text
    assert "--lr LR learning rate (SGD) (default: 0.01)" in text
    assert "--crop-size [CROP_SIZE ...] training crop: HEIGHT WIDTH (the paper: 769 769 on Cityscapes) (default: 128 256)" in text


@pytest.mark.parametrize("main", [train.cli, evaluate.main, predict.main, export.main, app.main])
def test_help_answers_without_building_a_model_or_data(main, monkeypatch, capsys):
    import gald.data.build
    import gald.models

    def forbidden(*args, **kwargs):
        raise AssertionError("--help built something")

    for module, name in ((gald.models, "build_model"), (gald.data.build, "build_segmentation_data")):
        monkeypatch.setattr(module, name, forbidden)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


def test_import_and_help_load_no_optional_heavy_packages():
    """``import gald`` and every command's ``--help`` stay light: the optional extras load when used."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys, gald\n"
        "from gald import app, convert_official, evaluate, export, predict, predict_detection, train\n"
        "for m in (app, convert_official, evaluate, export, predict, predict_detection):\n"
        "    m.get_args_parser().format_help()\n"
        "train.get_args_parser().format_help(); train.get_detection_args_parser().format_help()\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    heavy = {"gradio", "matplotlib", "captum", "huggingface_hub", "safetensors", "tensorboard", "onnx", "onnxruntime"}
    assert not loaded & heavy, sorted(loaded & heavy)
