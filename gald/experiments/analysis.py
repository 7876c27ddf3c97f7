"""Does a model see the global cue? Effective receptive fields and counterfactual cue twins.

The embedded benchmark's context classes (road, terrain) are told apart only by the sky colour,
at least ~32 px above the ground. Two measurements check whether a model can reach that cue:

* :func:`effective_receptive_field` — the gradient of one output pixel's logit margin with
  respect to the input (Luo et al., NeurIPS 2016); :func:`erf_sky_share` averages, over ground
  pixels, the share of that gradient's mass that lies on sky pixels.
* :func:`cue_twins` — render each validation scene twice, identical except for the sky (day vs
  dusk, which flips the ground label road ↔ terrain), and measure how often the model's ground
  prediction follows the cue, by distance from the sky. A model that cannot see the sky predicts the
  same class in both twins, so at most half its ground pixels can be right.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gald.data import synthetic
from gald.data.transforms import ToTensorNormalize

__all__ = ["effective_receptive_field", "erf_sky_share", "cue_twins"]

_ROAD, _TERRAIN = synthetic.CONTEXT_CLASSES


def effective_receptive_field(model: torch.nn.Module, image: torch.Tensor, y: int, x: int) -> torch.Tensor:
    """|∂(logit_road − logit_terrain)(y, x) / ∂ image| summed over colour channels.

    Shape:
        image (3, H, W) -> (H, W)
    """
    model.eval()
    inp = image[None].clone().requires_grad_(True)
    out = model(inp)["out"]
    (out[0, _ROAD, y, x] - out[0, _TERRAIN, y, x]).backward()
    return inp.grad[0].abs().sum(0)


def erf_sky_share(
    model: torch.nn.Module,
    *,
    seed: int = 0,
    indices: Sequence[int] = range(8),
    size: tuple[int, int] = (128, 256),
    points_per_image: int = 4,
    split: str = "val",
    version: int = synthetic.GENERATOR_VERSION,
) -> dict:
    """Mean share of the ERF mass on sky pixels, for ground pixels at least 32 px below the sky.

    Points are taken on the ground at evenly spaced depths and columns, so the number is a property
    of the network, not of one lucky pixel.
    """
    normalise = ToTensorNormalize()
    shares, distances = [], []
    for i in indices:
        scene = synthetic.make_scene(seed, i, split=split, size=size, version=version)
        image, _ = normalise(scene.image, scene.label)
        ground = np.isin(scene.label, synthetic.CONTEXT_CLASSES)
        sky = torch.from_numpy(scene.label == synthetic.CLASSES.index("sky"))
        rows = np.where(ground.any(1))[0]
        for k in range(points_per_image):
            y = int(rows[int((k + 0.5) / points_per_image * len(rows))])
            cols = np.where(ground[y])[0]
            if not len(cols):
                continue
            x = int(cols[len(cols) * (2 * k + 1) // (2 * points_per_image)])
            erf = effective_receptive_field(model, image, y, x)
            shares.append(float(erf[sky].sum() / erf.sum().clamp(min=1e-12)))
            distances.append(y - scene.sky_bottom)
    return {
        "points": len(shares),
        "mean_sky_share": float(np.mean(shares)),
        "max_sky_share": float(np.max(shares)),
        "mean_distance_px": float(np.mean(distances)),
    }


@torch.no_grad()
def cue_twins(
    model: torch.nn.Module,
    *,
    seed: int = 0,
    indices: Sequence[int] = range(32),
    size: tuple[int, int] = (128, 256),
    bins: Sequence[int] = (32, 48, 64),
    split: str = "val",
    version: int = synthetic.GENERATOR_VERSION,
) -> dict:
    """Accuracy on ground pixels of day/dusk twins, and how often the prediction follows the cue.

    Returns, overall and per distance-to-sky bin (rows below the sky band): ``accuracy`` (ground
    pixels labelled correctly, both twins), ``follows_cue`` (pixels predicted road in the day twin
    *and* terrain in the dusk twin) and ``same_in_both`` (the prediction ignores the sky).
    """
    model.eval()
    normalise = ToTensorNormalize()
    edges = list(bins)
    names = [f"{a}-{b}px" for a, b in zip(edges[:-1], edges[1:])] + [f">={edges[-1]}px"]
    acc = np.zeros(len(names))
    follows = np.zeros(len(names))
    same = np.zeros(len(names))
    count = np.zeros(len(names))
    for i in indices:
        day = synthetic.make_scene(seed, i, split=split, size=size, cue="day", version=version)
        dusk = synthetic.make_scene(seed, i, split=split, size=size, cue="dusk", version=version)
        images = torch.stack([normalise(s.image, s.label)[0] for s in (day, dusk)])
        pred = model(images)["out"].argmax(1).numpy()
        ground = np.isin(day.label, synthetic.CONTEXT_CLASSES)
        dist = np.arange(size[0])[:, None].repeat(size[1], 1) - day.sky_bottom
        b = np.digitize(dist, edges) - 1
        ok = (pred[0] == _ROAD) & (pred[1] == _TERRAIN)
        right = (pred[0] == _ROAD).astype(float) + (pred[1] == _TERRAIN).astype(float)
        eq = pred[0] == pred[1]
        for k in range(len(names)):
            m = ground & (b == k)
            count[k] += m.sum()
            follows[k] += ok[m].sum()
            acc[k] += right[m].sum() / 2
            same[k] += eq[m].sum()
    total = count.sum()
    per_bin = {
        n: {"pixels": int(c), "accuracy": float(a / c * 100), "follows_cue": float(f / c * 100), "same_in_both": float(s / c * 100)}
        for n, c, a, f, s in zip(names, count, acc, follows, same)
        if c > 0
    }
    return {
        "scenes": len(list(indices)),
        "accuracy": float(acc.sum() / total * 100),
        "follows_cue": float(follows.sum() / total * 100),
        "same_in_both": float(same.sum() / total * 100),
        "by_distance": per_bin,
    }
