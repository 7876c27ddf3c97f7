"""The training input pipeline at Cityscapes scale, side by side: python benchmarks/input_pipeline.py

One worker's work per training sample of the R50 recipe (random scale 0.5–2, crop 769, flip,
normalise; labelIds mapped to train ids), for four pipelines on the same files and the same random
draws, interleaved sample by sample in one process with one thread (a DataLoader worker's setting):

* ``gald 0.2.2`` — the pipeline as configured before this benchmark's changes: PIL decode (the
  decoded image copied once more), per-pixel label check, full-image resize then crop
  (``RandomScale`` + ``RandomCrop``), float32 normalisation in the worker.
* ``gald`` — the pipeline now: :class:`~gald.data.cityscapes.CityscapesSegmentation`'s loader
  (its decoder and label mapping), :class:`~gald.data.transforms.RandomScaleCrop` (only the crop
  window is resampled), flip, :class:`~gald.data.transforms.ToTensor` (uint8 out; the engine
  normalises on the device, timed apart as ``device normalise`` on this CPU).
* ``gald, re-encoded PNGs`` — the same, reading a copy of the files re-encoded by
  ``data_scripts/reencode_png.py`` (``gald.data.png``: lossless, the Up row filter, zlib level 6);
  and ``…, stored`` — re-encoded with ``--level 0`` (no compression). Their size costs are reported.
* ``torchvision v2`` — ``torchvision.io.decode_png`` and ``transforms.v2`` on ``tv_tensors``
  (``resize`` with antialias, ``RandomCrop(pad_if_needed)``, flip, ``ToDtype`` + ``Normalize``),
  labels mapped by tensor indexing.
* ``OpenCV`` — mmsegmentation's way: ``cv2.imread``, ``cv2.resize`` (bilinear image, nearest
  label) of the full image, crop with padding, flip, ``cv2`` normalisation; ``cv2.LUT`` for labels.
  Skipped when OpenCV is not installed (it is not a gald dependency).

Stages (ms per sample): ``decode`` (image and label PNGs to arrays), ``labels`` (labelIds → train
ids, with the validity check: every sample for the peers and gald 0.2.2, the first read of each
file for gald, as its loader does), ``augment`` (scale, crop, flip), ``normalise`` (to the tensors a
worker sends). Files: ``--images`` (default 16) Cityscapes-layout images of 1024×2048 made from the
embedded benchmark's generator (``gald.data.synthetic.make_scene``, the scenes ``gald.data.fixtures``
draws), lightly blurred (Gaussian, radius ``--blur``) so the PNGs are about the size of real
Cityscapes ones; written once under ``--data``.

Writes ``benchmarks/results/input_pipeline.json``; ``--smoke`` runs two small images through every
pipeline once and writes nothing (CI).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # _results, beside this script
from _results import machine, report  # noqa: E402
CROP = 769
SCALES = (0.5, 2.0)
STAGES = ("decode", "labels", "augment", "normalise")


def make_files(root: Path, n: int, size: tuple[int, int], blur: float) -> list[tuple[Path, Path]]:
    """``n`` image/labelIds PNG pairs in the Cityscapes layout (written once; reused if present)."""
    from PIL import Image, ImageFilter

    from gald.data import synthetic

    lut = np.asarray(synthetic.LABEL_IDS, np.uint8)
    pairs = []
    for i in range(n):
        image_path = root / "leftImg8bit" / "train" / "bench" / f"bench_{i:06d}_000019_leftImg8bit.png"
        label_path = root / "gtFine" / "train" / "bench" / f"bench_{i:06d}_000019_gtFine_labelIds.png"
        if not (image_path.is_file() and label_path.is_file()):
            scene = synthetic.make_scene(0, i, split="train", size=size)
            image_path.parent.mkdir(parents=True, exist_ok=True)
            label_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(scene.image).filter(ImageFilter.GaussianBlur(blur)).save(image_path)
            Image.fromarray(lut[scene.label]).save(label_path)
        pairs.append((image_path, label_path))
    return pairs


def draws(seed: int, size: tuple[int, int]) -> tuple[np.random.Generator, dict]:
    """The sample's random draws, exactly as RandomScaleCrop + RandomHorizontalFlip make them, for
    the pipelines that take explicit parameters; and a fresh generator for gald's own transforms."""
    rng = np.random.default_rng(seed)
    scale = float(rng.uniform(*SCALES))
    h, w = size
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    top = int(rng.integers(0, max(nh, CROP) - CROP + 1))
    left = int(rng.integers(0, max(nw, CROP) - CROP + 1))
    flip = bool(rng.random() < 0.5)
    return np.random.default_rng(seed), {"size": (nh, nw), "top": top, "left": left, "flip": flip}


class Timer:
    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.out: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.out[stage] = self.out.get(stage, 0.0) + (now - self.t) * 1000
        self.t = now


def gald_before(pair, seed, ctx):
    """0.2.2: PIL with an extra copy, two-pass label check, full resize then crop, normalise."""
    from PIL import Image

    from gald.data.transforms import RandomCrop, RandomHorizontalFlip, RandomScale, ToTensorNormalize

    t = Timer()
    with Image.open(pair[0]) as im:
        im.load()
        image = np.asarray(im.convert("RGB") if im.mode != "RGB" else im.copy())
    with Image.open(pair[1]) as im:
        im.load()
        raw = np.asarray(im.copy())
    t.lap("decode")
    known, lut = ctx["known"], ctx["lut"]
    if (~known[raw]).any():
        raise ValueError("unknown labelIds")
    label = lut[raw]
    t.lap("labels")
    rng, _ = draws(seed, image.shape[:2])
    image, label = RandomScale(*SCALES)(image, label, rng)
    image, label = RandomCrop(CROP)(image, label, rng)
    image, label = RandomHorizontalFlip()(image, label, rng)
    t.lap("augment")
    x, y = ToTensorNormalize()(image, label)
    t.lap("normalise")
    return t.out, x


def gald_now(pair, seed, ctx, dataset_key="dataset"):
    from gald.data.transforms import RandomHorizontalFlip, RandomScaleCrop, ToTensor

    dataset = ctx[dataset_key]
    t = Timer()
    image, raw = dataset.decode(ctx["index"][pair])
    t.lap("decode")
    path = dataset.files[ctx["index"][pair]][1]
    label = dataset.map_labels(raw, path, check=path not in dataset._checked)  # as load() does: once per file
    dataset._checked.add(path)
    t.lap("labels")
    rng, _ = draws(seed, image.shape[:2])
    image, label = RandomScaleCrop(CROP, SCALES)(image, label, rng)
    image, label = RandomHorizontalFlip()(image, label, rng)
    t.lap("augment")
    x, y = ToTensor()(image, label)
    t.lap("normalise")
    return t.out, x


def gald_reencoded(pair, seed, ctx):
    return gald_now(pair, seed, ctx, dataset_key="reencoded")


def gald_stored(pair, seed, ctx):
    return gald_now(pair, seed, ctx, dataset_key="stored")


def torchvision_v2(pair, seed, ctx):
    import torch
    from torchvision import tv_tensors
    from torchvision.io import decode_png, read_file
    from torchvision.transforms.v2 import functional as F

    t = Timer()
    image = decode_png(read_file(str(pair[0])))
    raw = decode_png(read_file(str(pair[1])))[0]
    t.lap("decode")
    lut = ctx["lut_t"]
    if not bool(ctx["known_t"][raw.long()].all()):
        raise ValueError("unknown labelIds")
    label = lut[raw.long()]
    t.lap("labels")
    _, d = draws(seed, tuple(image.shape[-2:]))
    img, mask = tv_tensors.Image(image), tv_tensors.Mask(label)
    img = F.resize(img, list(d["size"]), antialias=True)
    mask = F.resize(mask, list(d["size"]))  # nearest for masks
    pad_h, pad_w = max(CROP - d["size"][0], 0), max(CROP - d["size"][1], 0)
    if pad_h or pad_w:  # RandomCrop(pad_if_needed=True)'s padding, then the same window
        img = F.pad(img, [0, 0, pad_w, pad_h], fill=0)
        mask = F.pad(mask, [0, 0, pad_w, pad_h], fill=255)
    img, mask = F.crop(img, d["top"], d["left"], CROP, CROP), F.crop(mask, d["top"], d["left"], CROP, CROP)
    if d["flip"]:
        img, mask = F.horizontal_flip(img), F.horizontal_flip(mask)
    t.lap("augment")
    x = F.normalize(F.to_dtype(img, torch.float32, scale=True), mean=ctx["mean"], std=ctx["std"])
    t.lap("normalise")
    return t.out, x


def opencv(pair, seed, ctx):
    import cv2
    import torch

    t = Timer()
    image = cv2.imread(str(pair[0]), cv2.IMREAD_COLOR)  # BGR, as mmcv reads
    raw = cv2.imread(str(pair[1]), cv2.IMREAD_UNCHANGED)
    t.lap("decode")
    if (~ctx["known"][raw]).any():
        raise ValueError("unknown labelIds")
    label = cv2.LUT(raw, ctx["lut"])
    t.lap("labels")
    _, d = draws(seed, image.shape[:2])
    nh, nw = d["size"]
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    label = cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST)
    pad_h, pad_w = max(CROP - nh, 0), max(CROP - nw, 0)
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
        label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=255)
    image = image[d["top"]:d["top"] + CROP, d["left"]:d["left"] + CROP]
    label = label[d["top"]:d["top"] + CROP, d["left"]:d["left"] + CROP]
    if d["flip"]:
        image, label = cv2.flip(image, 1), cv2.flip(label, 1)
    t.lap("augment")
    img = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32)  # mmcv.imnormalize, to_rgb=True
    cv2.subtract(img, ctx["mean255"], img)
    cv2.multiply(img, ctx["stdinv"], img)
    x = torch.from_numpy(img.transpose(2, 0, 1).copy())
    t.lap("normalise")
    return t.out, x


def decoders(pairs, repeats: int) -> dict:
    """PIL against torchvision.io.decode_png for one image and one label PNG (median ms)."""
    from PIL import Image
    from torchvision.io import decode_png, read_file

    def pil(path):
        with Image.open(path) as im:
            return np.asarray(im)

    def tv(path):
        return decode_png(read_file(str(path)))

    out = {}
    for what, k in (("image", 0), ("label", 1)):
        times = {"PIL": [], "torchvision.io.decode_png": []}
        for _ in range(repeats):
            for pair in pairs:
                for name, fn in (("PIL", pil), ("torchvision.io.decode_png", tv)):
                    t0 = time.perf_counter()
                    fn(pair[k])
                    times[name].append((time.perf_counter() - t0) * 1000)
        out[what] = {name: round(statistics.median(v), 2) for name, v in times.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--passes", type=int, default=4, help="passes over the files (each sample a new draw)")
    parser.add_argument("--blur", type=float, default=0.8,
                        help="Gaussian blur radius of the generated images (0.8: ~2.3 MB, real Cityscapes PNGs' size)")
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "gald-input-pipeline"))
    parser.add_argument("--smoke", action="store_true", help="two small images, one pass, nothing written")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "input_pipeline.json"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)  # a DataLoader worker's setting
    # the peer pipeline uses torchvision.io's decoder, deprecated since torchvision 0.29: measured all the same
    warnings.filterwarnings("ignore", message=".*decoding and encoding capabilities of TorchVision.*")
    from gald.data import synthetic
    from gald.data.cityscapes import LABEL_TO_TRAIN, CityscapesSegmentation
    from gald.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Normalize

    size = (160, 320) if args.smoke else (1024, 2048)
    root = Path(args.data) / ("smoke" if args.smoke else f"{size[0]}x{size[1]}-blur{args.blur}")
    pairs = make_files(root, 2 if args.smoke else args.images, size, args.blur)
    from gald.data.png import reencode_tree

    label_map = {**LABEL_TO_TRAIN, **dict(zip(synthetic.LABEL_IDS, range(9)))}
    dataset = CityscapesSegmentation(root, split="train", label_map=label_map)
    up, stored = root.with_name(root.name + "-up"), root.with_name(root.name + "-up-level0")
    for folder, level in ((up, 6), (stored, 0)):
        if not folder.exists():
            reencode_tree(root, folder, level=level, progress=False)
    reencoded = CityscapesSegmentation(up, split="train", label_map=label_map)
    index = {(Path(i), Path(l)): k for k, (i, l) in enumerate(dataset.files)}
    lut, known = dataset._lut, dataset._known
    ctx = {
        "dataset": dataset, "reencoded": reencoded, "index": {p: index[p] for p in pairs},
        "stored": CityscapesSegmentation(stored, split="train", label_map=label_map), "lut": lut, "known": known,
        "lut_t": torch.from_numpy(lut), "known_t": torch.from_numpy(known),
        "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
        "mean255": np.array(IMAGENET_MEAN, np.float64) * 255, "stdinv": 1 / (np.array(IMAGENET_STD, np.float64) * 255),
    }
    pipelines = {"gald 0.2.2": gald_before, "gald": gald_now, "gald, re-encoded PNGs": gald_reencoded,
                 "gald, re-encoded PNGs, stored": gald_stored, "torchvision v2": torchvision_v2}
    try:
        import cv2

        cv2.setNumThreads(1)
        pipelines["OpenCV (mmsegmentation-style)"] = opencv
        ctx["mean255"] = np.array([*ctx["mean255"], 0.0])  # cv2 arithmetic takes a 4-vector scalar
        ctx["stdinv"] = np.array([*ctx["stdinv"], 1.0])
    except ImportError:
        pass
    times = {name: {s: [] for s in (*STAGES, "total")} for name in pipelines}
    device_norm = []
    normalize = Normalize()
    passes = 1 if args.smoke else args.passes
    for p in range(passes):
        for i, pair in enumerate(pairs):
            seed = p * 1000 + i
            for name, run in pipelines.items():  # interleaved: every pipeline sees the same moment
                stages, x = run(pair, seed, ctx)
                assert tuple(x.shape) == (3, CROP, CROP), (name, x.shape)
                for s in STAGES:
                    times[name][s].append(stages.get(s, 0.0))
                times[name]["total"].append(sum(stages.values()))
                if name == "gald":
                    t0 = time.perf_counter()
                    normalize(x[None])
                    device_norm.append((time.perf_counter() - t0) * 1000)
    rows = {}
    for name, t in times.items():
        rows[name] = {s: round(statistics.mean(v), 2) for s, v in t.items()}
        rows[name]["img_per_s_per_worker"] = round(1000 / rows[name]["total"], 1)
    sizes = [os.path.getsize(i) for i, _ in pairs]
    up_sizes = [os.path.getsize(up / Path(i).relative_to(root)) for i, _ in pairs]
    stored_sizes = [os.path.getsize(stored / Path(i).relative_to(root)) for i, _ in pairs]
    record = {
        "command": "python benchmarks/input_pipeline.py" + (" --smoke" if args.smoke else ""),
        "files": {"count": len(pairs), "size": list(size), "blur": args.blur,
                  "mean_image_png_mb": round(statistics.mean(sizes) / 1e6, 2),
                  "mean_reencoded_image_png_mb": round(statistics.mean(up_sizes) / 1e6, 2),
                  "mean_stored_image_png_mb": round(statistics.mean(stored_sizes) / 1e6, 2)},
        "samples_per_pipeline": passes * len(pairs), "threads": 1, "crop": CROP, "scale_range": list(SCALES),
        "torch": torch.__version__, "machine": machine(),
        "ms_per_sample": rows,
        "gald_device_normalise_ms_on_this_cpu": round(statistics.mean(device_norm), 2),
        "decoders_ms": decoders(pairs[:4], 1 if args.smoke else 3),
    }
    tv, now = rows["torchvision v2"], rows["gald"]
    record["targets"] = {
        "non_decode_speedup_vs_torchvision_v2 (>= 1.3)": round(sum(tv[s] for s in STAGES[1:]) / sum(now[s] for s in STAGES[1:]), 2),
        "end_to_end_speedup_vs_torchvision_v2 (>= 1.0)": round(tv["total"] / now["total"], 2),
        "reencoded_img_per_s_per_worker (>= 25)": rows["gald, re-encoded PNGs"]["img_per_s_per_worker"],
        "stored_img_per_s_per_worker (>= 25)": rows["gald, re-encoded PNGs, stored"]["img_per_s_per_worker"],
    }
    if "OpenCV (mmsegmentation-style)" in pipelines:
        import cv2

        record["opencv"] = cv2.__version__
    report(record, args.out, write=not args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
