"""Share weights as a folder or a Hugging Face Hub repository: builder name + JSON keyword arguments +
safetensors weights + a generated model card (optional extra: ``pip install "gald[hub]"``).

A pretrained folder holds three files:

* ``config.json`` — ``{"arch": builder name, "kwargs": {...}, "task", "classes", "palette",
  "normalization", "metrics", "ld_effect", "train", "gald_version", "format_version"}``;
* ``model.safetensors`` — the state dict (no pickle: nothing in it can run code);
* ``README.md`` — the model card: classes, preprocessing, metrics with the command that measured
  them, the training command, and the LD effect where it was measured.

Three lines::

    from gald.hub import from_pretrained
    model = from_pretrained("runs/my-run/pretrained")      # or a Hub repo id, "user/gald-cgnl-r50-cityscapes"
    scores = model(images)["out"]                           # model.pretrained: the config.json above

:func:`save_pretrained` takes a model (from :func:`gald.models.get_model` or training) or the path
of a ``model.pt`` that ``python -m gald.train`` wrote; :func:`push_to_hub` writes the same folder and
uploads it. Weights are read with ``safetensors`` (or ``torch.load(weights_only=True)`` for
``model.pt`` files), and the model is sized from its config before allocation.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

import gald
from gald.config import HELP, DetectionConfig, TrainConfig
from gald.errors import CheckpointError, MissingFileError
from gald.models import model_from_checkpoint, read_checkpoint
from gald.models.weights import checkpoint_task

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "CARD_NAME", "save_pretrained", "from_pretrained", "push_to_hub", "model_card"]

_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")  # user/name
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 1


def _safetensors():
    try:
        from safetensors import torch as st
    except ImportError:  # an optional extra
        raise MissingFileError('gald.hub needs safetensors: pip install "gald[hub]"') from None
    return st


def save_pretrained(
    model: nn.Module | str | os.PathLike,
    folder: str | os.PathLike,
    *,
    classes: list[str] | None = None,
    palette: list | None = None,
    normalization: str | None = None,
    metrics: dict | None = None,
    license: str | None = None,
    force: bool = False,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``README.md`` into ``folder``.

    Args:
        model: a gald model (its ``config`` names the builder and its options), or the path of a
            ``model.pt`` from ``python -m gald.train`` / ``gald.convert_official`` (its classes,
            palette, metrics, LD effect and training config then fill the card).
        folder: created if needed; files there are refused unless ``force``.
        classes, palette, normalization, metrics: override or supply what a bare model lacks
            (metrics given here are credited to you, not to the training run).
        license: the licence of the weights for the card's metadata (e.g. ``"mit"``); none by
            default: weights trained on Cityscapes, or the authors', carry their own terms.

    Returns:
        The folder.

    Raises:
        OutputExistsError: a file of the folder exists and ``force`` is not set.
    """
    from gald.files import check_output

    st = _safetensors()
    record: dict[str, Any] = {}
    if isinstance(model, (str, os.PathLike)):
        record = read_checkpoint(model)
        model = model_from_checkpoint(record, what=os.fspath(model))
    config = dict(getattr(model, "config", None) or {})
    if "arch" not in config:
        raise CheckpointError("save_pretrained needs a gald model (built by gald.models.get_model or training): "
                              "its config names the builder")
    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME):
        check_output(folder / name, force=force, what="output")
    arch = config.pop("arch")
    task = checkpoint_task({"config": {"model": {"arch": arch}}})
    num_classes = int(config.get("num_classes", 0))
    classes = list(classes or record.get("classes") or [f"class_{i}" for i in range(num_classes - (task == "detection"))])
    ld_effect = record.get("ld_effect") or {}
    info = {
        "arch": arch,
        "kwargs": _jsonable(config),
        "task": task,
        "classes": classes,
        "palette": palette or record.get("palette"),
        "normalization": normalization or record.get("normalization")
        or (record.get("config", {}).get("train", {}) or {}).get("normalization") or "imagenet",
        "metrics": metrics or record.get("metrics") or {},
        "metrics_source": "given" if metrics else "training" if record.get("metrics") else None,
        "license": license,
        "ld_effect": ld_effect,
        "train": record.get("config", {}).get("train") or {},
        "gald_version": gald.__version__,
        "format_version": FORMAT_VERSION,
    }
    _check_classes(info, model)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic(folder / WEIGHTS_NAME, lambda path: st.save_file(state, path, metadata={"format": "pt"}))
    _atomic(folder / CONFIG_NAME, lambda path: Path(path).write_text(json.dumps(info, indent=2) + "\n"))
    _atomic(folder / CARD_NAME, lambda path: Path(path).write_text(model_card(info)))
    return folder


def from_pretrained(source: str | os.PathLike, *, task: str | None = None, revision: str | None = None) -> nn.Module:
    """The model a pretrained folder (or Hub repository) holds, in eval mode.

    Args:
        source: a folder written by :func:`save_pretrained`, or a Hugging Face Hub repo id
            (downloaded with ``huggingface_hub.snapshot_download``).
        task: ``"segmentation"`` or ``"detection"``: refuse the other (optional).
        revision: a Hub branch, tag or commit.

    Returns:
        The model; ``model.pretrained`` is the folder's ``config.json`` (classes, palette,
        normalization, metrics, LD effect).

    Raises:
        MissingFileError: a folder without ``config.json`` or ``model.safetensors``, naming them.
        CheckpointError: weights that do not match the config, or a card whose classes disagree.
    """
    st = _safetensors()
    folder = Path(source)
    if not folder.is_dir():
        if not _REPO_ID.fullmatch(os.fspath(source)):
            raise MissingFileError(f"{source}: no such folder (a pretrained folder, or a Hub repo id 'user/name')")
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise MissingFileError(f'{source} is not a folder; downloading it needs huggingface_hub: '
                                   'pip install "gald[hub]"') from None
        try:
            folder = Path(snapshot_download(repo_id=os.fspath(source), revision=revision,
                                            allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]))
        except Exception as err:  # offline, no such repository, no access: huggingface_hub's many types
            raise MissingFileError(f"{source}: no such folder, and the Hub did not give that repository "
                                   f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / name).is_file()]
    if missing:
        raise MissingFileError(f"{folder} is not a pretrained folder: {' and '.join(missing)} missing "
                               "(gald.hub.save_pretrained writes both)")
    try:
        info = json.loads((folder / CONFIG_NAME).read_text())
        arch, kwargs = info["arch"], dict(info["kwargs"])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{folder / CONFIG_NAME}: not a gald pretrained config ({err})") from None
    try:
        state = st.load_file(folder / WEIGHTS_NAME)
    except Exception as err:  # safetensors raises its own error types for a damaged header or data
        raise CheckpointError(f"{folder / WEIGHTS_NAME} cannot be read: {err}") from None
    model = model_from_checkpoint({"model": state, "config": {"model": {"arch": arch, **kwargs}}},
                                  what=os.fspath(folder / WEIGHTS_NAME), task=task)
    _check_classes(info, model, where=folder / CONFIG_NAME)
    model.pretrained = info
    return model.eval()


def push_to_hub(
    model: nn.Module | str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str = "Upload gald model",
    token: str | None = None,
    **card: Any,
) -> str:
    """Write the pretrained folder of ``model`` (see :func:`save_pretrained`) and upload it to
    the Hub repository ``repo_id`` (created if needed). Returns the commit URL."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise MissingFileError('push_to_hub needs huggingface_hub: pip install "gald[hub]"') from None

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, **card)
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=tmp, repo_id=repo_id, commit_message=commit_message)
    return str(getattr(commit, "commit_url", commit))


def model_card(info: dict[str, Any]) -> str:
    """The ``README.md`` of a pretrained folder (Hub metadata, classes, preprocessing, metrics with
    their commands, the training command, the LD effect)."""
    task = info["task"]
    title = info.get("train", {}).get("name") or info["arch"]
    lines = [
        "---",
        "library_name: gald",
        *([f"license: {info['license']}"] if info.get("license") else []),
        "tags: [gald, pytorch, " + ("semantic-segmentation" if task == "segmentation" else "object-detection") + "]",
        "---",
        "",
        f"# {title}",
        "",
        f"A `{info['arch']}` model of gald (GALD: Global Aggregation then Local Distribution, BMVC 2019), "
        f"{task}, {len(info['classes'])} classes. Written by gald {info['gald_version']}.",
        "",
        "## Use",
        "",
        "```python",
        "from gald.hub import from_pretrained",
        "model = from_pretrained(\"<this folder or repo id>\")",
        "out = model(images)[\"out\"]" if task == "segmentation" else "detections = model(images)",
        "```",
        "",
        "## Preprocessing",
        "",
        ("RGB tensors in [0, 1]; the detector normalises inside the model." if task == "detection" else
         "RGB images, " + ("ImageNet mean/std normalisation (torchvision), in [0, 1] units."
                           if info["normalization"] == "imagenet" else
                           "BGR channel order minus the authors' per-channel mean in 0-255 units, no std scaling "
                           "(`bgr_mean`).")),
        "",
        "## Classes",
        "",
        "| id | class |",
        "|---|---|",
        # detector label k is classes[k - 1]: 0 is the background
        *[f"| {i + (task == 'detection')} | {name} |" for i, name in enumerate(info["classes"])],
        "",
    ]
    train = info.get("train") or {}
    command = _train_command(train, task) if train else None
    lines += ["## Metrics", ""]
    if info.get("metrics"):
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" if isinstance(v, (int, float)) else f"| {k} | {v} |" for k, v in info["metrics"].items()]
        if info.get("metrics_source") == "training" and command:
            lines += ["", f"Measured on the validation data of `{train.get('dataset', '?')}` at the end of training "
                      f"(the command below)."]
            if task == "segmentation":
                lines += ["The training run's `model.pt` re-measures them: "
                          "`python -m gald.evaluate --checkpoint runs/<name>/model.pt`."]
        else:
            lines += ["", "Given by whoever saved the model; no training record says how they were measured."]
    else:
        lines += ["Not measured: this folder was saved from a model without recorded metrics."]
    lines += ["", "## Training", ""]
    lines += [f"```bash\n{command}\n```" if command else "No training record (e.g. converted or untrained weights)."]
    effect = info.get("ld_effect") or {}
    lines += ["", "## LD effect", ""]
    if effect:
        lines += [f"What mIoU loses when LD's masks are replaced by their spatial means (docs/ld.md): "
                  f"{json.dumps(effect)}"]
    elif task == "segmentation":
        lines += ["Not measured (`python -m gald.evaluate --checkpoint model.pt --ld-effect` measures it from a "
                  "training run's checkpoint)."]
    else:
        lines += ["Not measured for detectors."]
    return "\n".join(lines) + "\n"


def _train_command(train: dict[str, Any], task: str) -> str:
    """``python -m gald.train`` with every recorded key that differs from today's default."""
    defaults = (DetectionConfig if task == "detection" else TrainConfig)().to_dict()
    flags = ["--task detection"] if task == "detection" else []
    for key, value in train.items():
        if key in HELP and key in defaults and value != defaults[key] and key not in ("overwrite", "resume", "device"):
            if isinstance(value, list):
                shown = " ".join(shlex.quote(str(v)) for v in value)
            else:
                shown = shlex.quote("none" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
            flags.append(f"--{key.replace('_', '-')} {shown}")
    return " ".join(["python -m gald.train", *flags])


def _check_classes(info: dict[str, Any], model: nn.Module, where: Any = "the card") -> None:
    expected = int(getattr(model, "num_classes", 0) or info.get("kwargs", {}).get("num_classes", 0))
    if info["task"] == "detection":
        expected -= 1  # the background class
    if expected and len(info["classes"]) != expected:
        raise CheckpointError(f"{where}: {len(info['classes'])} class names, but the weights have {expected} classes")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"save_pretrained: model option {value!r} cannot be written as JSON")


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        write(os.fspath(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
