"""Small datasets in each reader's exact on-disk format, and the official download archives.

For tests, notebooks and evaluation/export checks that need a real-looking dataset without the
real one. Every image is a :func:`~gald.data.synthetic.make_scene` scene, so a model can fit it,
and its labels are the scene's labels written in the dataset's own encoding:

* :func:`make_cityscapes_fixture`: ``leftImg8bit`` RGB PNGs; ``gtFine`` ``labelIds`` (mode ``L``,
  real labelIds 0..33 including unevaluated ones: 0 unlabeled on the left column, 1 ego vehicle on
  the bottom rows, 4 static in a small block), ``instanceIds`` (16-bit, ``labelId·1000 + k`` on
  things), ``color`` (RGBA) and ``polygons.json``; test labels are all 0 (unlabeled), as in the
  real test set; with ``coarse``, ``gtCoarse`` for train/val/train_extra (class boundaries blanked
  to 0, like coarse polygons) and ``leftImg8bit/train_extra``.
* :func:`make_mapillary_fixture`: Vistas v1.2: JPEG images of varying width, ``P``-mode label
  PNGs with the 66-class palette, 16-bit ``instances`` PNGs (``class·256 + k``) and ``config.json``.
* :func:`make_folder_fixture`: a :class:`~gald.data.folder.FolderSegmentation` folder.
* :func:`make_cityscapes_archives` / :func:`make_mapillary_archive`: the same trees zipped under the
  official archive names and archive-internal paths, for ``data_scripts/prepare_*.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from gald.config import check_choice

from . import synthetic
from .mapillary import MAPILLARY_CLASSES, MAPILLARY_PALETTE
from .synthetic import make_scene

__all__ = [
    "CITYSCAPES_ARCHIVES",
    "CITYSCAPES_LABEL_COLORS",
    "CITYSCAPES_LABEL_NAMES",
    "MAPILLARY_ARCHIVE",
    "make_cityscapes_archives",
    "make_cityscapes_fixture",
    "make_folder_fixture",
    "make_mapillary_archive",
    "make_mapillary_fixture",
]

#: Fixtures draw v1 scenes, so that their bytes stay fixed whatever the benchmark's default version.
FIXTURE_VERSION = 1

#: Cityscapes labelId (0..33) → name and colour, as in cityscapesScripts' ``labels.py``.
_CITYSCAPES_LABELS = (
    ("unlabeled", (0, 0, 0)), ("ego vehicle", (0, 0, 0)), ("rectification border", (0, 0, 0)),
    ("out of roi", (0, 0, 0)), ("static", (0, 0, 0)), ("dynamic", (111, 74, 0)), ("ground", (81, 0, 81)),
    ("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)), ("parking", (250, 170, 160)),
    ("rail track", (230, 150, 140)), ("building", (70, 70, 70)), ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)), ("guard rail", (180, 165, 180)), ("bridge", (150, 100, 100)),
    ("tunnel", (150, 120, 90)), ("pole", (153, 153, 153)), ("polegroup", (153, 153, 153)),
    ("traffic light", (250, 170, 30)), ("traffic sign", (220, 220, 0)), ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)), ("sky", (70, 130, 180)), ("person", (220, 20, 60)), ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)), ("truck", (0, 0, 70)), ("bus", (0, 60, 100)), ("caravan", (0, 0, 90)),
    ("trailer", (0, 0, 110)), ("train", (0, 80, 100)), ("motorcycle", (0, 0, 230)), ("bicycle", (119, 11, 32)),
)  # fmt: skip
CITYSCAPES_LABEL_NAMES = tuple(n for n, _ in _CITYSCAPES_LABELS)
CITYSCAPES_LABEL_COLORS = tuple(c for _, c in _CITYSCAPES_LABELS)
_HAS_INSTANCES = {24, 25, 26, 27, 28, 29, 30, 31, 32, 33}

#: Split → cities used in the fixture (real Cityscapes city names of that split).
_CITIES = {
    "train": ("aachen", "bochum"), "val": ("frankfurt", "lindau"), "test": ("berlin", "bonn"),
    "train_extra": ("augsburg", "bamberg"),
}  # fmt: skip
#: Archive name → (folder written into it, splits), as Cityscapes distributes them.
CITYSCAPES_ARCHIVES = {
    "leftImg8bit_trainvaltest.zip": ("leftImg8bit", ("train", "val", "test")),
    "gtFine_trainvaltest.zip": ("gtFine", ("train", "val", "test")),
    "gtCoarse.zip": ("gtCoarse", ("train", "train_extra", "val")),
    "leftImg8bit_trainextra.zip": ("leftImg8bit", ("train_extra",)),
}
MAPILLARY_ARCHIVE = "mapillary-vistas-dataset_public_v1.2.zip"

# synthetic class → Vistas v1.2 class index (road, terrain, building, vegetation, sky, pole, sign, person, car)
_SYNTH_TO_VISTAS = tuple(
    MAPILLARY_CLASSES.index(n)
    for n in (
        "construction--flat--road", "nature--terrain", "construction--structure--building", "nature--vegetation",
        "nature--sky", "object--support--pole", "object--traffic-sign--front", "human--person", "object--vehicle--car",
    )
)  # fmt: skip
_SYNTH_SPLIT = {"train": "train", "val": "val", "test": "test", "train_extra": "train"}
_EXTRA_OFFSET = 100_000  # train_extra scenes: other indices of the training generator


def _save(path: Path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def _colour(label_ids: np.ndarray) -> np.ndarray:
    table = np.zeros((256, 4), np.uint8)
    table[:, 3] = 255
    table[: len(CITYSCAPES_LABEL_COLORS), :3] = CITYSCAPES_LABEL_COLORS
    return table[label_ids]


def _polygons(label_ids: np.ndarray) -> dict:
    """One bounding-box polygon per labelId present (the format, not real outlines)."""
    h, w = label_ids.shape
    objects = []
    for label_id in np.unique(label_ids).tolist():
        ys, xs = np.nonzero(label_ids == label_id)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
        objects.append({"label": CITYSCAPES_LABEL_NAMES[label_id], "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]})
    return {"imgHeight": h, "imgWidth": w, "objects": objects}


def _boundaries(label: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of a label change (where coarse polygons leave gaps)."""
    edge = np.zeros(label.shape, bool)
    edge[1:, :] |= label[1:, :] != label[:-1, :]
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    out = edge.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out |= np.roll(np.roll(edge, dy, 0), dx, 1)
    return out


def _cityscapes_encodings(scene: synthetic.Scene, *, test: bool) -> dict[str, np.ndarray]:
    enc = synthetic.cityscapes_encodings(scene)
    ids, inst = enc["gtFine_labelIds"].copy(), enc["gtFine_instanceIds"].copy()
    h, w = ids.shape
    # unevaluated labelIds, as real annotations have them: unlabeled, ego vehicle, static
    ids[:, 0] = 0
    ids[h - 2 :, :] = 1
    ids[h - 6 : h - 3, 2:5] = 4
    stuff = ids != enc["gtFine_labelIds"]
    inst[stuff] = ids[stuff]
    if test:
        ids = np.zeros_like(ids)
        inst = np.zeros_like(inst)
    return {"labelIds": ids, "instanceIds": inst}


def make_cityscapes_fixture(
    root: str | os.PathLike,
    *,
    splits: Sequence[str] = ("train", "val", "test"),
    per_split: int = 2,
    size: tuple[int, int] = (64, 128),
    coarse: bool = True,
    seed: int = 0,
) -> dict[str, int]:
    """Write a tiny Cityscapes in the official layout (module docstring).

    Args:
        root: dataset root to create.
        splits: fine splits among ``train``, ``val``, ``test``.
        per_split: images per split (spread over two cities).
        size: ``(height, width)`` of every image (Cityscapes itself is 1024×2048).
        coarse: also write ``gtCoarse/{train,val,train_extra}`` and ``leftImg8bit/train_extra``.
        seed: scene seed.

    Returns:
        Images written per split, e.g. ``{"train": 2, "val": 2, "test": 2, "train_extra": 2}``.
    """
    root = Path(root)
    counts: dict[str, int] = {}
    jobs = [(split, "gtFine") for split in splits]
    if coarse:
        jobs += [(split, "gtCoarse") for split in ("train", "val", "train_extra") if split in splits or split == "train_extra"]
    for split in list(dict.fromkeys(s for s, _ in jobs)):
        check_choice("Cityscapes split", split, tuple(_CITIES))
    gts_by_split: dict[str, list[str]] = {}
    for split, gt in jobs:
        gts_by_split.setdefault(split, []).append(gt)
    for split, gts in gts_by_split.items():
        for i in range(per_split):
            city = _CITIES[split][i % 2]
            stem = f"{city}_{i:06d}_000019"
            index = i + (_EXTRA_OFFSET if split == "train_extra" else 0)
            scene = make_scene(seed, index, split=_SYNTH_SPLIT[split], size=size, version=FIXTURE_VERSION)
            _save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", scene.image)
            enc = _cityscapes_encodings(scene, test=split == "test")
            for gt in gts:
                ids, inst = enc["labelIds"], enc["instanceIds"]
                if gt == "gtCoarse":
                    gap = _boundaries(ids, radius=2)
                    ids = np.where(gap, 0, ids).astype(np.uint8)
                    inst = np.where(gap, 0, inst).astype(np.uint16)
                folder = root / gt / split / city
                _save(folder / f"{stem}_{gt}_labelIds.png", ids)
                _save(folder / f"{stem}_{gt}_instanceIds.png", inst)
                _save(folder / f"{stem}_{gt}_color.png", _colour(ids))
                (folder / f"{stem}_{gt}_polygons.json").write_text(json.dumps(_polygons(ids), indent=1))
        counts[split] = per_split
    return counts


def _vistas_label(scene: synthetic.Scene) -> tuple[np.ndarray, np.ndarray]:
    label = np.array(_SYNTH_TO_VISTAS, np.uint8)[scene.label]
    h, w = label.shape
    ground = scene.label == 0
    # a few v1.2 classes the synthetic scene lacks: markings (→ road), a curb (→ sidewalk), ego vehicle (→ 255)
    rows = np.zeros_like(ground)
    rows[h - 8 : h - 6, :] = True
    label[ground & rows] = MAPILLARY_CLASSES.index("marking--general")
    label[h - 4 : h - 2, :] = MAPILLARY_CLASSES.index("construction--barrier--curb")
    label[h - 2 :, :] = MAPILLARY_CLASSES.index("void--ego-vehicle")
    inst = label.astype(np.uint16) * 256
    has = scene.instances > 0
    inst[has] += (scene.instances[has] % 256).astype(np.uint16)
    return label, inst


def _p_mode(label: np.ndarray) -> Image.Image:
    img = Image.fromarray(label)  # mode L; putpalette turns it into P with the indices unchanged
    flat = [v for colour in MAPILLARY_PALETTE for v in colour]
    img.putpalette(flat + [0] * (768 - len(flat)))
    return img


def mapillary_config() -> dict:
    """A v1.2 ``config.json`` (labels in official order with colours)."""
    labels = []
    for name, colour in zip(MAPILLARY_CLASSES, MAPILLARY_PALETTE):
        readable = name.split("--")[-1].replace("-", " ").title()
        labels.append({"color": list(colour), "instances": name.startswith(("human", "object")), "readable": readable,
                       "name": name, "evaluate": name != "void--unlabeled"})  # fmt: skip
    return {"labels": labels, "version": "1.2", "mapping": "public"}


def make_mapillary_fixture(
    root: str | os.PathLike,
    *,
    splits: Sequence[str] = ("training", "validation", "testing"),
    per_split: int = 2,
    size: tuple[int, int] = (64, 96),
    seed: int = 0,
) -> dict[str, int]:
    """Write a tiny Mapillary Vistas v1.2 in the official layout (module docstring).

    Args:
        root: dataset root to create.
        splits: among ``training``, ``validation``, ``testing`` (no labels, as in the release).
        per_split: images per split; image ``i`` is ``8·i`` pixels wider than ``size`` (Vistas sizes vary).
        size: ``(height, width)`` of the first image.
        seed: scene seed.

    Returns:
        Images written per split.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(mapillary_config(), indent=1))
    synth = {"training": "train", "validation": "val", "testing": "test"}
    counts = {}
    for split in splits:
        check_choice("Vistas split", split, tuple(synth))
        for i in range(per_split):
            scene = make_scene(seed, i, split=synth[split], size=(size[0], size[1] + 8 * i), version=FIXTURE_VERSION)
            key = f"{split[:2]}{seed:02d}{i:018d}"[:22]  # Vistas keys are 22 characters
            _save(root / split / "images" / f"{key}.jpg", scene.image, quality=95)
            if split != "testing":
                label, inst = _vistas_label(scene)
                (root / split / "labels").mkdir(parents=True, exist_ok=True)
                _p_mode(label).save(root / split / "labels" / f"{key}.png")
                _save(root / split / "instances" / f"{key}.png", inst)
        counts[split] = per_split
    return counts


def make_folder_fixture(
    root: str | os.PathLike,
    *,
    per_split: int = 3,
    size: tuple[int, int] = (48, 80),
    colour_masks: bool = False,
    splits: bool = True,
    seed: int = 0,
) -> dict[str, int]:
    """Write a tiny :class:`~gald.data.folder.FolderSegmentation` dataset of synthetic scenes.

    Images go to ``images/{train,val}/NAME.png`` (``train``) and ``.jpg`` (``val``) with masks at the
    same relative stems; ``classes.json`` lists the 9 synthetic classes with their colours and
    ``ignore_color: [0, 0, 0]``. Index masks hold train ids with a 255 border row; colour masks the
    class colours with a black border row.

    Args:
        root: dataset root to create.
        per_split: images in each of ``train`` and ``val``.
        size: ``(height, width)``.
        colour_masks: write RGB colour masks instead of index masks.
        splits: also write ``splits/train.txt`` and ``splits/val.txt``.
        seed: scene seed.

    Returns:
        Images written per split.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    classes = [{"name": n, "color": list(c)} for n, c in zip(synthetic.CLASSES, synthetic.PALETTE)]
    (root / "classes.json").write_text(
        json.dumps({"classes": classes, "ignore_index": 255, "ignore_color": [0, 0, 0]}, indent=1)
    )
    counts = {}
    for split, suffix in (("train", ".png"), ("val", ".jpg")):
        stems = []
        for i in range(per_split):
            scene = make_scene(seed, i, split=split, size=size, version=FIXTURE_VERSION)
            stem = f"{split}/scene_{i:03d}"
            label = scene.label.copy()
            label[0, :] = 255
            kwargs = {"quality": 95} if suffix == ".jpg" else {}
            _save(root / "images" / f"{stem}{suffix}", scene.image, **kwargs)
            mask = synthetic.colorize(label) if colour_masks else label
            _save(root / "masks" / f"{stem}.png", mask)
            stems.append(stem)
        if splits:
            (root / "splits").mkdir(exist_ok=True)
            (root / "splits" / f"{split}.txt").write_text("\n".join(stems) + "\n")
        counts[split] = per_split
    return counts


_README = "Fixture written by gald.data.fixtures (a stand-in for the official archive).\n"
_LICENSE = "Fixture data: synthetic scenes, no license restrictions.\n"


def _zip_tree(archive: Path, root: Path, folders: Sequence[str], extra: dict[str, str]) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, text in extra.items():
            zf.writestr(name, text)
        for folder in folders:
            for path in sorted((root / folder).rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(root).as_posix())


def make_cityscapes_archives(
    out_dir: str | os.PathLike, *, per_split: int = 2, size: tuple[int, int] = (64, 128), seed: int = 0
) -> list[Path]:
    """Write :data:`CITYSCAPES_ARCHIVES` (fixture content, official names and internal paths) to ``out_dir``.

    Returns:
        The archive paths.
    """
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        make_cityscapes_fixture(tree, per_split=per_split, size=size, coarse=True, seed=seed)
        paths = []
        for name, (folder, splits) in CITYSCAPES_ARCHIVES.items():
            _zip_tree(out_dir / name, tree, [f"{folder}/{s}" for s in splits], {"README": _README, "license.txt": _LICENSE})
            paths.append(out_dir / name)
    return paths


def make_mapillary_archive(
    out_dir: str | os.PathLike, *, per_split: int = 2, size: tuple[int, int] = (64, 96), seed: int = 0
) -> Path:
    """Write :data:`MAPILLARY_ARCHIVE` (config.json, README, ``{split}/images|labels|instances/``) to ``out_dir``."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        make_mapillary_fixture(tree, per_split=per_split, size=size, seed=seed)
        archive = out_dir / MAPILLARY_ARCHIVE
        _zip_tree(archive, tree, ["training", "validation", "testing"],
                  {"config.json": (tree / "config.json").read_text(), "README": _README})  # fmt: skip
    return archive
