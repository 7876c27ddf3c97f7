"""A procedural street-scene benchmark that tests GALD's hypothesis (the embedded benchmark).

GALD's claim (Sections 1 and 3): global aggregation helps large regions whose identity depends on
far-away context, but over-smooths small patterns whose identity is local; distributing the global
features locally keeps both. Each scene here has one of each:

* **A global cue.** The sky band at the top is either "day" (blue gradient) or "dusk"
  (orange/pink gradient), with probability 0.5. The ground band at the bottom is labelled **road**
  in day scenes and **terrain** in dusk scenes, and its appearance is drawn from the *same*
  distribution in both (same texture generator, same tint range). Nothing else in the image depends
  on the cue, so road vs terrain can only be told from the sky, which is at least ``0.25·H`` rows
  (32 px at 128×256) of buildings and trees away from every ground pixel.
* **Small local patterns.** Thin poles, traffic signs at pole tops and small persons, a few pixels
  across, whose identity needs only a small neighbourhood — and would be blurred away by
  over-smoothed context.
* Medium **cars**, plus building façades with window grids and vegetation blobs.

Every scene is a pure function of ``(seed, split, index)`` and the size, drawn from
``numpy.random.default_rng(SeedSequence([seed, split_code, index]))``; no global RNG is touched.
Label maps are exact, and an instance map gives every pole, sign, person and car its own id, with
occlusion consistent across image, labels and instances (nearer objects — lower feet — are drawn
later). ``export_cityscapes_layout`` writes the benchmark in the Cityscapes on-disk layout, which
``CityscapesSegmentation(root, label_map=synthetic_label_map())`` reads back.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gald.config import check_choice, lookup
from gald.errors import OutputExistsError

from .transforms import ToTensorNormalize

__all__ = [
    "CLASSES",
    "CONTEXT_CLASSES",
    "GENERATOR_VERSION",
    "GENERATOR_VERSIONS",
    "IGNORE_INDEX",
    "LABEL_IDS",
    "LARGE_CLASSES",
    "NUM_CLASSES",
    "PALETTE",
    "SMALL_CLASSES",
    "SPLITS",
    "THING_CLASSES",
    "Scene",
    "SyntheticScenes",
    "check_version",
    "colorize",
    "export_cityscapes_layout",
    "make_scene",
    "swap_sky",
    "synthetic_label_map",
]

log = logging.getLogger(__name__)

CLASSES = ("road", "terrain", "building", "vegetation", "sky", "pole", "traffic sign", "person", "car")
PALETTE = [
    (128, 64, 128),
    (152, 251, 152),
    (70, 70, 70),
    (107, 142, 35),
    (70, 130, 180),
    (153, 153, 153),
    (220, 220, 0),
    (220, 20, 60),
    (0, 0, 142),
]
#: train id → Cityscapes labelId (the ids written to ``*_gtFine_labelIds.png``).
LABEL_IDS = (7, 22, 11, 21, 23, 17, 20, 24, 26)
NUM_CLASSES = 9
IGNORE_INDEX = 255
LARGE_CLASSES = (0, 1, 2, 3, 4)
SMALL_CLASSES = (5, 6, 7)
#: road and terrain: the pair told apart only by the global (sky) cue.
CONTEXT_CLASSES = (0, 1)
#: classes with instances in ``Scene.instances``.
THING_CLASSES = (5, 6, 7, 8)
#: split name → the code mixed into the seed sequence.
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_COUNTS = {"train": 400, "val": 100, "test": 100}


@dataclass(frozen=True)
class _Objects:
    """Small-pattern sizes (px at 128×256), vegetation scale and camouflage rate of one version."""

    pole_w: tuple[int, int]  # integer width range, inclusive
    sign: tuple[float, float]  # side
    person_h: tuple[float, float]  # height, far → near
    person_w: tuple[float, float]  # width, far → near
    camouflage: float  # share of persons painted in their ground's colours, outlined
    vegetation: float = 1.0  # radius factor of trees and bushes


_OBJECTS = {
    # v1: thin poles and tiny persons, most of them below what an output stride of 8 can resolve.
    1: _Objects(pole_w=(2, 3), sign=(5, 10), person_h=(8, 16), person_w=(3, 7), camouflage=0.0),
    # v2: small patterns one to two 16-px LD cells (d = 2) across, so an OS-8 model can represent
    # them; vegetation, a large-pattern class, spans several cells; and half the persons wear the
    # ground's colours: globally aggregated ground features then speak against them, while the
    # outline and silhouette, local evidence, are there for every model alike.
    2: _Objects(pole_w=(16, 20), sign=(22, 28), person_h=(32, 46), person_w=(16, 22), camouflage=0.5,
                vegetation=1.5),
}
#: Benchmark versions :func:`make_scene` can draw (``version=``). A change that alters any pixel
#: for a given (seed, split, index, size) is a new version; v1 stays bit-identical so that results
#: measured on it stay reproducible.
GENERATOR_VERSIONS = tuple(_OBJECTS)
#: The version drawn when none is named: the benchmark of the default config and the shipped
#: segmentation models. Detection and the dataset-format fixtures draw v1 (``version=1``).
GENERATOR_VERSION = 2


def check_version(version: int) -> int:
    """``version`` as an int, or an :class:`~gald.config.UnknownChoiceError` naming the valid versions."""
    check_choice("synthetic benchmark version", version, GENERATOR_VERSIONS)
    return int(version)


ROAD, TERRAIN, BUILDING, VEGETATION, SKY, POLE, SIGN, PERSON, CAR = range(9)

# Layout, as fractions of the image height.
_SKY_FRAC = (0.20, 0.30)  # rows [0, sky_bottom) are the sky band
_GROUND_FRAC = (0.35, 0.45)  # rows [horizon, H) are the ground band
# so at least 1 - 0.45 - 0.30 = 0.25·H rows of buildings/trees separate sky from ground.

# Sky gradients (RGB ranges, top and bottom of the band), one pair per cue.
_SKY = {
    "day": (((25, 60), (75, 120), (160, 210)), ((120, 175), (165, 205), (210, 245))),
    "dusk": (((70, 120), (35, 75), (95, 150)), ((225, 255), (110, 170), (70, 160))),
}


@dataclass
class Scene:
    """One generated scene.

    Attributes:
        image: RGB image, uint8.
        label: train ids 0..8 (see :data:`CLASSES`), uint8; no ignore pixels.
        instances: 0 = stuff; 1..K one id per visible pole, sign, person and car, int32.
        instance_classes: instance id → train id.
        cue: ``"day"`` (ground is road) or ``"dusk"`` (ground is terrain).
        sky_bottom: first row below the sky band; no sky pixel lies at or below it.
        horizon: first row of the ground band.

    Shape:
        image (H, W, 3), label (H, W), instances (H, W)
    """

    image: np.ndarray
    label: np.ndarray
    instances: np.ndarray
    instance_classes: dict[int, int]
    cue: str
    sky_bottom: int = 0
    horizon: int = 0


# ----------------------------------------------------------------------------------------------
# Drawing helpers


@functools.lru_cache(maxsize=128)
def _interp_weights(n: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Knot index and smoothstep weight mapping ``cells + 1`` knots onto ``n`` pixels."""
    pos = (np.arange(n) + 0.5) / n * cells
    i0 = np.minimum(np.floor(pos).astype(np.int64), cells - 1)
    f = pos - i0
    f = (f * f * (3.0 - 2.0 * f)).astype(np.float32)
    i0.setflags(write=False)
    f.setflags(write=False)
    return i0, f


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell_h: float, cell_w: float) -> np.ndarray:
    """Value noise in [0, 1]: a random grid with cells of about ``cell_h × cell_w`` px, interpolated.

    Separable gathers rather than a matrix product, so no BLAS threads contend with a DataLoader's.

    Shape:
        -> (h, w) float32
    """
    gh = max(1, round(h / cell_h))
    gw = max(1, round(w / cell_w))
    grid = rng.random((gh + 1, gw + 1), dtype=np.float32)
    iy, fy = _interp_weights(h, gh)
    ix, fx = _interp_weights(w, gw)
    rows = grid[iy] * (1.0 - fy)[:, None] + grid[iy + 1] * fy[:, None]  # (h, gw + 1)
    return rows[:, ix] * (1.0 - fx) + rows[:, ix + 1] * fx


def _uniform_rgb(rng: np.random.Generator, ranges) -> np.ndarray:
    lo = np.array([r[0] for r in ranges], np.float32)
    hi = np.array([r[1] for r in ranges], np.float32)
    return lo + (hi - lo) * rng.random(3, dtype=np.float32)


class _Canvas:
    """Image, label and instance map painted together so occlusion stays consistent."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.image = np.zeros((h, w, 3), np.float32)
        self.label = np.zeros((h, w), np.uint8)
        self.instances = np.zeros((h, w), np.int32)
        self.instance_classes: dict[int, int] = {}

    def new_instance(self, cls: int) -> int:
        iid = len(self.instance_classes) + 1
        self.instance_classes[iid] = cls
        return iid

    def paint(self, y0: int, x0: int, mask: np.ndarray, colour: np.ndarray, cls: int, iid: int = 0) -> None:
        """Paint ``mask`` (local, top-left at ``(y0, x0)``, may overhang the image) with ``colour``.

        ``colour`` is an RGB triple or an ``(mh, mw, 3)`` block matching ``mask``.
        """
        mh, mw = mask.shape
        ya, yb = max(y0, 0), min(y0 + mh, self.h)
        xa, xb = max(x0, 0), min(x0 + mw, self.w)
        if ya >= yb or xa >= xb:
            return
        m = mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
        if colour.ndim == 3:
            colour = colour[ya - y0 : yb - y0, xa - x0 : xb - x0][m]
        self.image[ya:yb, xa:xb][m] = colour
        self.label[ya:yb, xa:xb][m] = cls
        self.instances[ya:yb, xa:xb][m] = iid


def _disc(size_h: int, size_w: int) -> np.ndarray:
    """Boolean ellipse filling a ``size_h × size_w`` box (pixel centres inside)."""
    yy = (np.arange(size_h) + 0.5) / size_h * 2.0 - 1.0
    xx = (np.arange(size_w) + 0.5) / size_w * 2.0 - 1.0
    return yy[:, None] ** 2 + xx[None, :] ** 2 <= 1.0


# ----------------------------------------------------------------------------------------------
# Scene parts


def _draw_sky(c: _Canvas, rng: np.random.Generator, cue: str, sky_bottom: int, horizon: int, sx: float) -> None:
    top = _uniform_rgb(rng, _SKY[cue][0])
    bottom = _uniform_rgb(rng, _SKY[cue][1])
    gamma = rng.uniform(0.7, 1.4)
    rows = horizon  # paint down to the horizon; buildings cover everything below sky_bottom
    t = np.clip(np.arange(rows, dtype=np.float32) / max(sky_bottom - 1, 1), 0.0, 1.0) ** gamma
    sky = top[None, None, :] * (1.0 - t)[:, None, None] + bottom[None, None, :] * t[:, None, None]
    # Streaky clouds: anisotropic value noise, thresholded.
    clouds = _smooth_noise(rng, rows, c.w, 5.0 * sx, 28.0 * sx)
    cover = np.clip((clouds - rng.uniform(0.45, 0.7)) / 0.25, 0.0, 1.0) * rng.uniform(0.2, 0.6)
    cloud_colour = 0.5 * bottom + 0.5 * 255.0
    sky = sky + cover[:, :, None] * (cloud_colour - sky)
    c.image[:rows] = sky
    c.label[:rows] = SKY


def _draw_buildings(c: _Canvas, rng: np.random.Generator, sky_bottom: int, horizon: int, sx: float, sy: float) -> None:
    top_min = max(0, round(0.3 * sky_bottom))
    x = -int(rng.integers(0, round(20 * sx) + 1))
    while x < c.w:
        bw = int(rng.integers(round(20 * sx), round(60 * sx) + 1))
        top = int(rng.integers(top_min, sky_bottom + 1))
        h = horizon - top
        grey = rng.uniform(60.0, 170.0)
        brown = rng.uniform(0.0, 1.0)
        base = np.array([grey + 25 * brown, grey + 8 * brown, grey - 15 * brown], np.float32)
        shade = np.linspace(rng.uniform(0.9, 1.1), rng.uniform(0.8, 1.0), bw, dtype=np.float32)
        block = base[None, None, :] * shade[None, :, None] * np.ones((h, 1, 1), np.float32)
        # Window grid: periodic rows × columns, each window dark or lit.
        py = max(3, round(rng.integers(6, 12) * sy))
        px = max(3, round(rng.integers(5, 11) * sx))
        wh = max(1, round(py * rng.uniform(0.35, 0.65)))
        ww = max(1, round(px * rng.uniform(0.35, 0.65)))
        ys = np.arange(h) - round(3 * sy)
        xs = np.arange(bw) - round(2 * sx)
        rows_on = (ys >= 0) & (ys % py < wh) & (np.arange(h) < h - round(4 * sy))
        cols_on = (xs >= 0) & (xs % px < ww) & (np.arange(bw) < bw - round(2 * sx))
        windows = rows_on[:, None] & cols_on[None, :]
        lit = rng.random((h // py + 2, bw // px + 2)) < rng.uniform(0.0, 0.4)
        lit = lit[(np.maximum(ys, 0) // py)[:, None], (np.maximum(xs, 0) // px)[None, :]] & windows
        block[windows] = base * rng.uniform(0.35, 0.6)
        block[lit] = _uniform_rgb(rng, ((190, 230), (185, 220), (140, 180)))
        c.paint(top, x, np.ones((h, bw), bool), block, BUILDING)
        x += bw


def _draw_ground(c: _Canvas, rng: np.random.Generator, cue: str, horizon: int, sx: float, sy: float) -> None:
    """Ground appearance is independent of ``cue``; only the label depends on it."""
    h = c.h - horizon
    value = rng.uniform(80.0, 150.0)
    tint = np.array([rng.uniform(-15, 20), rng.uniform(-12, 12), rng.uniform(-20, 10)], np.float32)
    coarse = (_smooth_noise(rng, h, c.w, 6.0 * sy, 12.0 * sx) - 0.5) * rng.uniform(15.0, 35.0)
    fine = (_smooth_noise(rng, h, c.w, 2.0 * sy, 3.0 * sx) - 0.5) * rng.uniform(6.0, 16.0)
    ramp = (np.arange(h, dtype=np.float32) / max(h - 1, 1) - 0.5) * rng.uniform(-20.0, 20.0)
    lum = coarse + fine + ramp[:, None]
    c.image[horizon:] = (value + tint)[None, None, :] + lum[:, :, None]
    c.label[horizon:] = ROAD if cue == "day" else TERRAIN


def _draw_vegetation(
    c: _Canvas, rng: np.random.Generator, sky_bottom: int, horizon: int, sx: float, sy: float, foliage: np.ndarray,
    scale: float = 1.0,
) -> None:
    gap = horizon - sky_bottom
    blobs = []
    for _ in range(int(rng.integers(1, 5))):  # trees in front of the buildings
        blobs.append((rng.uniform(sky_bottom + 0.3 * gap, horizon - 2), rng.uniform(6, 14)))
    for _ in range(int(rng.integers(1, 6))):  # bushes at the ground edge
        blobs.append((horizon + rng.uniform(-4, 3) * sy, rng.uniform(4, 9)))
    for cy, radius in blobs:
        r = radius * sy * scale
        cx = rng.uniform(0, c.w)
        k = int(rng.integers(2, 5))
        offs = rng.uniform(-0.6, 0.6, (k, 2)) * np.array([r * 0.6, r * (sx / sy)])
        radii = r * rng.uniform(0.5, 0.9, k)
        rx = radii * (sx / sy)
        y0 = int(np.floor(cy - r * 1.4))
        x0 = int(np.floor(cx - r * 1.6 * sx / sy))
        y1 = int(np.ceil(cy + r * 1.4)) + 1
        x1 = int(np.ceil(cx + r * 1.6 * sx / sy)) + 1
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
        mask = np.zeros((y1 - y0, x1 - x0), bool)
        for (oy, ox), ry, rxx in zip(offs, radii, rx):
            mask |= ((yy - cy - oy) / ry) ** 2 + ((xx - cx - ox) / rxx) ** 2 <= 1.0
        base = _uniform_rgb(rng, ((30, 90), (85, 150), (20, 60)))
        tex = np.zeros(mask.shape, np.float32)
        ya, yb, xa, xb = max(y0, 0), min(y1, c.h), max(x0, 0), min(x1, c.w)
        if ya < yb and xa < xb:
            tex[ya - y0 : yb - y0, xa - x0 : xb - x0] = foliage[ya:yb, xa:xb]
        block = base[None, None, :] * (0.65 + 0.7 * tex)[:, :, None]
        c.paint(y0, x0, mask, block, VEGETATION)


def _pole_and_sign(c: _Canvas, rng: np.random.Generator, obj: dict, sx: float, sy: float, p: _Objects) -> None:
    pw, x, base, top = obj["w"], obj["x"], obj["base"], obj["top"]
    grey = rng.uniform(55.0, 110.0)
    shade = np.linspace(1.15, 0.8, pw, dtype=np.float32)
    block = (grey * shade)[None, :, None] * np.ones((base - top, 1, 3), np.float32)
    c.paint(top, x, np.ones((base - top, pw), bool), block, POLE, c.new_instance(POLE))
    if not obj["sign"]:
        return
    s = max(2, round(rng.uniform(*p.sign) * min(sx, sy)))
    shape = int(rng.integers(0, 3))
    if shape == 0:  # square
        mask = np.ones((s, s), bool)
    elif shape == 1:  # disc
        mask = _disc(s, s)
    else:  # triangle, point up
        half = (np.arange(s) + 1.0) / s * (s / 2.0)
        mask = np.abs(np.arange(s)[None, :] + 0.5 - s / 2.0) <= half[:, None]
    colour = _uniform_rgb(rng, ((195, 240), (180, 230), (0, 50)))
    sy0 = top - s // 2 + int(rng.integers(0, max(2, s // 2)))
    sx0 = x + pw // 2 - s // 2
    c.paint(sy0, sx0, mask, colour, SIGN, c.new_instance(SIGN))


def _person(c: _Canvas, rng: np.random.Generator, obj: dict, p: _Objects) -> None:
    ph, pw, foot, x = obj["h"], obj["w"], obj["base"], obj["x"]
    mask = _disc(ph, pw)
    colour = _uniform_rgb(rng, ((180, 240), (10, 60), (40, 90)))
    legs = np.where(np.arange(ph) >= round(0.65 * ph), 0.7, 1.0).astype(np.float32)
    head = np.where(np.arange(ph) < max(1, round(0.2 * ph)), 1.12, 1.0).astype(np.float32)
    block = colour[None, None, :] * (legs * head)[:, None, None] * np.ones((1, pw, 1), np.float32)
    if p.camouflage and rng.random() < p.camouflage:
        block = _camouflage(c, foot - ph, x, mask)
    c.paint(foot - ph, x, mask, block, PERSON, c.new_instance(PERSON))


def _camouflage(c: _Canvas, y0: int, x0: int, mask: np.ndarray) -> np.ndarray:
    """A person's pixels in the colours of what lies under it, with a dark 1-px outline.

    The body is the canvas itself shifted by half the person's width — the ground's texture, tint
    and brightness ramp — so only the outline and the silhouette tell it apart locally.
    """
    mh, mw = mask.shape
    ys = np.clip(np.arange(y0, y0 + mh), 0, c.h - 1)
    xs = np.clip(np.arange(x0, x0 + mw) + mw // 2, 0, c.w - 1)
    block = c.image[ys[:, None], xs[None, :]].copy()
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    block[mask & ~inner] *= 0.35
    return block


def _car(c: _Canvas, rng: np.random.Generator, obj: dict) -> None:
    ch, cw, bottom, x = obj["h"], obj["w"], obj["base"], obj["x"]
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0.55, 0.72), rng.uniform(0.45, 0.95), rng.uniform(0.3, 0.75))
    body = np.array([r, g, b], np.float32) * 255.0
    glass = 0.4 * body + 0.6 * np.array([170.0, 190.0, 210.0], np.float32)
    rows = np.arange(ch)[:, None]
    cols = np.arange(cw)[None, :]
    cab_l, cab_r = round(0.2 * cw), round(0.8 * cw)
    cabin = (rows < round(0.42 * ch)) & (cols >= cab_l) & (cols < cab_r)
    hull = (rows >= round(0.38 * ch)) & (rows < round(0.85 * ch))
    wr = max(1.0, 0.2 * ch)
    wy = 0.82 * ch
    wheels = np.zeros((ch, cw), bool)
    for wx in (0.2 * cw, 0.8 * cw):
        wheels |= (rows + 0.5 - wy) ** 2 + (cols + 0.5 - wx) ** 2 <= wr**2
    mask = cabin | hull | wheels
    block = np.empty((ch, cw, 3), np.float32)
    block[:] = body
    windows = cabin & (rows >= max(1, round(0.08 * ch))) & (cols >= cab_l + 1) & (cols < cab_r - 1)
    block[windows] = glass
    block[wheels] = rng.uniform(20.0, 45.0)
    c.paint(bottom - ch, x, mask, block, CAR, c.new_instance(CAR))


def _sample_objects(
    rng: np.random.Generator, h: int, w: int, sky_bottom: int, horizon: int, sx: float, sy: float, p: _Objects
) -> list[dict]:
    """Poles (+ signs), persons and cars with their foot rows; sorted far → near."""
    ground = h - horizon
    objs: list[dict] = []

    def depth_size(foot: float, lo: float, hi: float) -> float:
        t = np.clip((foot - horizon) / max(ground, 1), 0.0, 1.0)
        return lo + (hi - lo) * float(np.clip(0.6 * t + 0.4 * rng.random(), 0.0, 1.0))

    n_poles = int(rng.integers(2, 7))
    n_signs = min(int(rng.integers(1, 5)), n_poles)
    for i in range(n_poles):
        pw = max(1, round(int(rng.integers(p.pole_w[0], p.pole_w[1] + 1)) * sx))
        base = int(rng.integers(horizon + max(1, round(2 * sy)), horizon + max(2, round(0.6 * ground)) + 1))
        top = int(rng.integers(sky_bottom + max(1, round(2 * sy)), horizon - max(2, round(10 * sy)) + 1))
        objs.append(dict(kind="pole", base=base, top=top, w=pw, x=int(rng.integers(0, w - pw + 1)), sign=i < n_signs))
    for _ in range(int(rng.integers(2, 9))):
        foot = int(rng.integers(horizon + max(1, round(3 * sy)), h + 1))
        ph = max(3, round(depth_size(foot, *p.person_h) * sy))
        pw = max(1, min(round(depth_size(foot, *p.person_w) * sx), ph - 1))
        objs.append(dict(kind="person", base=foot, h=ph, w=pw, x=int(rng.integers(0, w - pw + 1))))
    for _ in range(int(rng.integers(1, 5))):
        bottom = int(rng.integers(horizon + round(8 * sy), h + max(1, round(3 * sy)) + 1))
        cw = max(6, round(depth_size(bottom, 20, 45) * sx))
        ch = int(np.clip(round(cw / sx * rng.uniform(0.4, 0.55) * sy), max(3, round(10 * sy)), round(20 * sy)))
        x = int(rng.integers(-round(0.3 * cw), w - round(0.7 * cw) + 1))
        objs.append(dict(kind="car", base=bottom, h=ch, w=cw, x=x))
    objs.sort(key=lambda o: o["base"])  # stable: ties keep sampling order
    return objs


# ----------------------------------------------------------------------------------------------
# Public API


def swap_sky(image: np.ndarray, sky: np.ndarray, cue: str | None = None) -> tuple[np.ndarray, str]:
    """Repaint the ``sky`` pixels of an image in the other cue's colours: the benchmark's
    counterfactual (day ↔ dusk) for any image, given where its sky is (e.g. where a model predicts it).

    The new sky is the cue's vertical gradient (the middle of the generator's colour ranges, top to
    bottom of the sky pixels) without clouds; every other pixel is unchanged. Unlike
    :func:`make_scene`'s exact twins (``cue=``), this needs no scene index, so it works on any image.

    Args:
        image: (H, W, 3) uint8 RGB.
        sky: (H, W) bool, the pixels to repaint.
        cue: the cue to paint, ``"day"`` or ``"dusk"``; default the one whose colours are farther
            from the image's current sky.

    Returns:
        The new image and the cue painted.

    Raises:
        ValueError: no sky pixel, or shapes that do not match.

    Shape:
        (H, W, 3) uint8, (H, W) bool -> (H, W, 3) uint8
    """
    image = np.asarray(image)
    sky = np.asarray(sky, bool)
    if image.ndim != 3 or image.shape[2] != 3 or sky.shape != image.shape[:2]:
        raise ValueError(f"swap_sky needs an (H, W, 3) image and an (H, W) mask, got {image.shape} and {sky.shape}")
    if not sky.any():
        raise ValueError("no sky pixel to repaint")
    mid = {k: [np.array([(lo + hi) / 2 for lo, hi in end], np.float32) for end in ends] for k, ends in _SKY.items()}
    if cue is None:
        current = image[sky].astype(np.float32).mean(0)
        distance = {k: min(np.abs(current - c).sum() for c in ends) for k, ends in mid.items()}
        cue = max(distance, key=distance.get)
    elif cue not in _SKY:
        raise KeyError(f"unknown cue {cue!r}; valid cues: {sorted(_SKY)}")
    rows = np.where(sky.any(1))[0]
    t = np.clip((np.arange(image.shape[0], dtype=np.float32) - rows[0]) / max(rows[-1] - rows[0], 1), 0.0, 1.0)
    top, bottom = mid[cue]
    gradient = top[None, :] * (1.0 - t)[:, None] + bottom[None, :] * t[:, None]  # (H, 3): one colour per row
    out = image.copy()
    ys, _ = np.nonzero(sky)
    out[sky] = np.rint(gradient[ys]).astype(np.uint8)
    return out, cue


def make_scene(
    seed: int,
    index: int,
    *,
    split: str = "train",
    size: tuple[int, int] = (128, 256),
    cue: str | None = None,
    version: int = GENERATOR_VERSION,
) -> Scene:
    """Generate scene ``index`` of ``split`` — a pure function of its arguments.

    Args:
        seed: benchmark seed (non-negative).
        index: image index within the split (non-negative).
        split: ``"train"``, ``"val"`` or ``"test"``; each gives different images.
        size: ``(height, width)``; object sizes scale with ``height/128`` and ``width/256``.
        cue: ``None`` (the benchmark: drawn, day with probability 0.5), or ``"day"``/``"dusk"`` to
            force it — a counterfactual twin of the same scene: every pixel outside the sky is
            identical, only the sky colours and the ground label (road ↔ terrain) change.
        version: benchmark version, one of :data:`GENERATOR_VERSIONS` (``docs/synthetic.md``):
            1 — thin poles and tiny persons; 2 — small patterns about 16 px across and half
            the persons camouflaged in their ground's colours.

    Returns:
        The :class:`Scene`.

    Shape:
        -> image (H, W, 3) uint8, label (H, W) uint8, instances (H, W) int32
    """
    code = lookup("split", split, SPLITS)
    p = _OBJECTS[check_version(version)]
    h, w = (int(size[0]), int(size[1]))
    if h < 32 or w < 32:
        raise ValueError(f"synthetic scenes need at least 32×32 pixels, got {size}")
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), code, int(index)]))
    sy, sx = h / 128.0, w / 256.0

    drawn = "day" if rng.random() < 0.5 else "dusk"
    if cue is None:
        cue = drawn
    elif cue not in _SKY:
        raise KeyError(f"unknown cue {cue!r}; valid cues: {sorted(_SKY)}")
    sky_bottom = round(rng.uniform(*_SKY_FRAC) * h)
    horizon = h - round(rng.uniform(*_GROUND_FRAC) * h)

    c = _Canvas(h, w)
    # The sky draws the same number of random values for both cues, so every later draw is
    # identical for a given (seed, split, index) whichever the cue: only sky colour and ground label differ.
    _draw_sky(c, rng, cue, sky_bottom, horizon, sx)
    _draw_buildings(c, rng, sky_bottom, horizon, sx, sy)
    _draw_ground(c, rng, cue, horizon, sx, sy)
    foliage = _smooth_noise(rng, h, w, 2.5 * sy, 2.5 * sx)
    _draw_vegetation(c, rng, sky_bottom, horizon, sx, sy, foliage, p.vegetation)
    for obj in _sample_objects(rng, h, w, sky_bottom, horizon, sx, sy, p):
        if obj["kind"] == "pole":
            _pole_and_sign(c, rng, obj, sx, sy, p)
        elif obj["kind"] == "person":
            _person(c, rng, obj, p)
        else:
            _car(c, rng, obj)

    c.image += rng.standard_normal((h, w, 3), dtype=np.float32) * 3.0
    image = np.clip(c.image + 0.5, 0, 255).astype(np.uint8)

    # Drop fully occluded instances and renumber 1..K in drawing order.
    n = len(c.instance_classes)
    present = np.bincount(c.instances.ravel(), minlength=n + 1)[1:] > 0
    lut = np.zeros(n + 1, np.int32)
    lut[1:][present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
    instances = lut[c.instances]
    instance_classes = {int(lut[i]): cls for i, cls in c.instance_classes.items() if present[i - 1]}
    return Scene(image, c.label, instances, instance_classes, cue, sky_bottom=sky_bottom, horizon=horizon)


def colorize(label: np.ndarray, palette=PALETTE, *, ignore_color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Colour a train-id label map; ids outside the palette (ignore) get ``ignore_color``.

    Shape:
        (H, W) -> (H, W, 3) uint8
    """
    lut = np.tile(np.array(ignore_color, np.uint8), (256, 1))
    lut[: len(palette)] = np.array(palette, np.uint8)
    return lut[label.astype(np.uint8)]


def synthetic_label_map() -> dict[int, int]:
    """Cityscapes labelId → this benchmark's train id (the inverse of :data:`LABEL_IDS`).

    Every other Cityscapes labelId (0..33) maps to :data:`IGNORE_INDEX`, so a Cityscapes-layout
    reader accepts any valid Cityscapes id and rejects foreign values.
    """
    mapping = {label_id: IGNORE_INDEX for label_id in range(34)}
    mapping.update({label_id: train_id for train_id, label_id in enumerate(LABEL_IDS)})
    return mapping


class SyntheticScenes(torch.utils.data.Dataset):
    """The synthetic benchmark as a dataset, generated on the fly (nothing cached).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        num_images: images in the split; default 400 / 100 / 100.
        seed: benchmark seed.
        size: ``(height, width)`` of every image.
        version: benchmark version (:data:`GENERATOR_VERSIONS`).
        transform: joint transform ``(image, label) -> (image, label)``; default
            :class:`~gald.data.transforms.ToTensorNormalize` (ImageNet statistics).

    Shape:
        ``ds[i]`` -> image (3, H, W) float32, label (H, W) int64 (with the default transform)
    """

    classes = CLASSES
    palette = PALETTE
    num_classes = NUM_CLASSES
    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        *,
        split: str = "train",
        num_images: int | None = None,
        seed: int = 0,
        size: tuple[int, int] = (128, 256),
        version: int = GENERATOR_VERSION,
        transform: Callable | None = None,
    ) -> None:
        check_version(version)
        check_choice("split", split, tuple(SPLITS))
        self.split = split
        self.num_images = DEFAULT_COUNTS[split] if num_images is None else int(num_images)
        if self.num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        self.seed = int(seed)
        self.size = (int(size[0]), int(size[1]))
        self.version = int(version)
        self.transform = ToTensorNormalize() if transform is None else transform

    def __len__(self) -> int:
        return self.num_images

    def _check_index(self, i: int) -> int:
        if not -self.num_images <= i < self.num_images:
            raise IndexError(f"index {i} out of range for {self.num_images} synthetic {self.split} images")
        return i % self.num_images

    def scene(self, i: int) -> Scene:
        """The full :class:`Scene` (image, labels, instances, cue) of image ``i``."""
        return make_scene(self.seed, self._check_index(i), split=self.split, size=self.size, version=self.version)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Untransformed ``(image (H, W, 3) uint8, label (H, W) uint8)``."""
        s = self.scene(i)
        return s.image, s.label

    def __getitem__(self, i: int):
        image, label = self.load(i)
        return self.transform(image, label)

    def __repr__(self) -> str:
        return (
            f"SyntheticScenes(split={self.split!r}, num_images={self.num_images}, seed={self.seed}, size={self.size}, "
            f"version={self.version})"
        )


# ----------------------------------------------------------------------------------------------
# Cityscapes-layout export

_FILE_RE = re.compile(r"^synth_(\d{6})_000019_(leftImg8bit|gtFine_labelIds|gtFine_instanceIds|gtFine_color)\.png$")


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def cityscapes_encodings(scene: Scene) -> dict[str, np.ndarray]:
    """The four Cityscapes files of one scene, as arrays ready for PIL.

    * ``leftImg8bit``: RGB uint8.
    * ``gtFine_labelIds``: Cityscapes labelIds, uint8 (PNG mode ``L``).
    * ``gtFine_instanceIds``: ``labelId·1000 + k`` on instance pixels (``k`` counts instances of
      one class from 0, in instance-id order), ``labelId`` elsewhere; uint16 (16-bit PNG, ``I;16``).
    * ``gtFine_color``: Cityscapes colours, RGBA uint8 with opaque alpha (as Cityscapes ships it).
    """
    label_ids = np.array(LABEL_IDS, np.uint8)[scene.label]
    inst = label_ids.astype(np.int64)
    per_class: dict[int, int] = {}
    lut = np.zeros(max(scene.instance_classes, default=0) + 1, np.int64)
    for iid in sorted(scene.instance_classes):
        cls = scene.instance_classes[iid]
        k = per_class.get(cls, 0)
        per_class[cls] = k + 1
        lut[iid] = LABEL_IDS[cls] * 1000 + k
    has = scene.instances > 0
    inst[has] = lut[scene.instances[has]]
    if inst.max() > np.iinfo(np.uint16).max:
        raise ValueError("instance ids do not fit a 16-bit PNG")
    colour = np.concatenate([colorize(scene.label), np.full(scene.label.shape + (1,), 255, np.uint8)], axis=2)
    return {
        "leftImg8bit": scene.image,
        "gtFine_labelIds": label_ids,
        "gtFine_instanceIds": inst.astype(np.uint16),
        "gtFine_color": colour,
    }


def _write_if_changed(path: Path, data: bytes, *, force: bool) -> str:
    """Write ``data`` atomically; return ``"written"``, ``"skipped"`` (same content) or raise."""
    if path.exists():
        if hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest():
            return "skipped"
        if not force:
            raise OutputExistsError(
                f"{path} exists with different content (another seed, size or generator version?); "
                "pass force=True (--force) to overwrite it, or write to another directory"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return "written"


def export_cityscapes_layout(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    counts: Mapping[str, int] | None = None,
    size: tuple[int, int] = (128, 256),
    version: int = GENERATOR_VERSION,
    force: bool = False,
) -> dict[str, int]:
    """Write the benchmark to disk in the Cityscapes layout (city name ``synth``).

    Files, for each split and index::

        leftImg8bit/{split}/synth/synth_{index:06d}_000019_leftImg8bit.png
        gtFine/{split}/synth/synth_{index:06d}_000019_gtFine_{labelIds,instanceIds,color}.png

    plus ``synthetic.json`` at the root (seed, size, counts, class table, generator version and each
    image's cue). Idempotent: a file whose bytes already match is skipped. A file with different
    bytes raises ``FileExistsError`` unless ``force``; with ``force`` it is overwritten and
    ``synth_*`` files beyond the requested counts are removed.

    Args:
        out_dir: dataset root to create or update.
        seed: benchmark seed.
        counts: images per split; default ``{"train": 400, "val": 100, "test": 100}``.
        size: ``(height, width)``.
        version: benchmark version (:data:`GENERATOR_VERSIONS`).
        force: overwrite files whose content differs.

    Returns:
        ``{"written": n, "skipped": n, "removed": n}`` file counts.
    """
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    for split, n in counts.items():
        check_choice("split", split, tuple(SPLITS))
        if n < 0:
            raise ValueError(f"count for {split!r} must be >= 0, got {n}")
    root = Path(out_dir)
    h, w = int(size[0]), int(size[1])
    settings = {"version": check_version(version), "seed": int(seed), "size": [h, w], "counts": counts}
    meta_path = root / "synthetic.json"
    if meta_path.exists() and not force:
        try:
            old = json.loads(meta_path.read_text())
            old = {k: old.get(k) for k in settings}
        except (OSError, ValueError):
            old = None
        if old != settings:
            raise OutputExistsError(
                f"{root} already holds a synthetic benchmark with other settings ({meta_path}: {old}; "
                f"requested {settings}); pass force=True (--force) to overwrite it, or write to another directory"
            )
    root.mkdir(parents=True, exist_ok=True)
    stats = {"written": 0, "skipped": 0, "removed": 0}
    cues: dict[str, list[str]] = {}
    for split, n in counts.items():
        img_dir = root / "leftImg8bit" / split / "synth"
        gt_dir = root / "gtFine" / split / "synth"
        cues[split] = []
        for index in range(n):
            scene = make_scene(seed, index, split=split, size=(h, w), version=version)
            cues[split].append(scene.cue)
            stem = f"synth_{index:06d}_000019"
            for kind, array in cityscapes_encodings(scene).items():
                folder = img_dir if kind == "leftImg8bit" else gt_dir
                outcome = _write_if_changed(folder / f"{stem}_{kind}.png", _png_bytes(array), force=force)
                stats[outcome] += 1
        if force:
            for folder in (img_dir, gt_dir):
                for path in sorted(folder.glob("synth_*.png")) if folder.is_dir() else []:
                    m = _FILE_RE.match(path.name)
                    if m and int(m.group(1)) >= n:
                        path.unlink()
                        stats["removed"] += 1
        log.info("synthetic %s: %d images in %s", split, n, img_dir)
    meta = {
        "generator": "gald.data.synthetic",
        **settings,
        "ignore_index": IGNORE_INDEX,
        "classes": [
            {"trainId": i, "name": name, "labelId": LABEL_IDS[i], "color": list(PALETTE[i])}
            for i, name in enumerate(CLASSES)
        ],
        "groups": {
            "large": list(LARGE_CLASSES),
            "small": list(SMALL_CLASSES),
            "context": list(CONTEXT_CLASSES),
            "thing": list(THING_CLASSES),
        },
        "cues": cues,
    }
    data = (json.dumps(meta, indent=2) + "\n").encode()
    stats[_write_if_changed(meta_path, data, force=force)] += 1
    log.info(
        "synthetic benchmark at %s: %d files written, %d unchanged, %d removed",
        root, stats["written"], stats["skipped"], stats["removed"],
    )
    return stats
