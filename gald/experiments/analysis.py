"""Does a model see the global cue? Effective receptive fields and counterfactual cue twins.

The embedded benchmark's context classes (road, terrain) are told apart only by the sky colour,
at least ~32 px above the ground. Two measurements check whether a model can reach that cue:

* :func:`effective_receptive_field` — the gradient of one output pixel's logit margin with
  respect to the input (Luo et al., NeurIPS 2016); :func:`erf_sky_share` averages, over ground
  pixels, the share of that gradient's mass that lies on sky pixels.
* :func:`context_probe` — the same gradient for any pixel of any image, for the margin between its
  predicted class and the runner-up (the app's context probe); :func:`ld_gate` reads LD's mask at
  that pixel per channel group.
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

__all__ = ["effective_receptive_field", "context_probe", "ld_gate", "erf_sky_share", "cue_twins"]

_ROAD, _TERRAIN = synthetic.CONTEXT_CLASSES


def effective_receptive_field(
    model: torch.nn.Module, image: torch.Tensor, y: int, x: int, classes: Sequence[int] = (_ROAD, _TERRAIN)
) -> torch.Tensor:
    """|∂ score(y, x) / ∂ image| summed over colour channels (Luo et al., NeurIPS 2016).

    The score is the logit margin ``classes[0] − classes[1]`` at the pixel (default: road − terrain,
    the benchmark's context decision), or the logit of ``classes[0]`` alone if one class is given.

    Shape:
        image (3, H, W) -> (H, W)
    """
    if not 1 <= len(classes) <= 2:
        raise ValueError(f"classes must name one class or a pair, got {tuple(classes)}")
    return _margin_gradient(model, image, y, x, lambda logits: classes)[0]


def _margin_gradient(
    model: torch.nn.Module, image: torch.Tensor, y: int, x: int, pick
) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """One forward and backward pass: |∂ margin / ∂ image| summed over colours, the classes
    ``pick(logits at the pixel)`` chose, and those logits."""
    model.eval()
    inp = image[None].clone().requires_grad_(True)
    out = model(inp)["out"]
    logits = out[0, :, y, x]
    classes = list(pick(logits.detach()))
    score = logits[classes[0]] - (logits[classes[1]] if len(classes) == 2 else 0)
    (grad,) = torch.autograd.grad(score, inp)  # the input's gradient only: no .grad left on the weights
    return grad[0].abs().sum(0), classes, logits.detach()


def context_probe(
    model: torch.nn.Module, image: torch.Tensor, y: int, x: int, *, versus: int | None = None, far: int = 32
) -> dict:
    """Where the decision at pixel ``(y, x)`` takes its context from: the gradient of the margin
    between the pixel's predicted class and its runner-up (or ``versus``) with respect to the
    input (:func:`effective_receptive_field`), normalised to sum to 1.

    Args:
        model: a segmentor (``model(x)["out"]`` at the input's resolution).
        image: one normalised image.
        y, x: the pixel.
        versus: the class to compare with; default the runner-up at the pixel. If it is the
            predicted class itself, the runner-up is used.
        far: distance in pixels beyond which the gradient counts as long-range context.

    Returns:
        ``field`` (H, W) float tensor summing to 1 (zeros if the gradient is zero everywhere),
        ``target`` and ``versus`` class indices, ``margin`` their logit difference at the pixel,
        and ``far_share``: the share of the field farther than ``far`` pixels from ``(y, x)``.

    Shape:
        image (3, H, W) -> field (H, W)
    """
    h, w = image.shape[-2:]
    if not (0 <= y < h and 0 <= x < w):
        raise ValueError(f"pixel ({y}, {x}) is outside the {h}×{w} image")
    def pick(logits: torch.Tensor) -> list[int]:
        top2 = logits.topk(2).indices.tolist()
        return top2 if versus is None or versus == top2[0] else [top2[0], int(versus)]

    with torch.enable_grad():
        field, top2, logits = _margin_gradient(model, image, y, x, pick)
    total = float(field.sum())
    field = field / total if total > 0 else torch.zeros_like(field)
    rows = torch.arange(h, dtype=torch.float32)[:, None] - y
    cols = torch.arange(w, dtype=torch.float32)[None, :] - x
    distance = torch.sqrt(rows**2 + cols**2)
    return {
        "field": field,
        "target": top2[0],
        "versus": top2[1],
        "margin": float(logits[top2[0]] - logits[top2[1]]),
        "far_share": float(field[distance > far].sum()),
    }


def ld_gate(mask: np.ndarray | torch.Tensor, y: int, x: int, size: tuple[int, int], groups: int = 8) -> dict:
    """LD's gate ``M`` (Eq. 1) at one image pixel, averaged over channel groups, beside its mean
    over the whole image: how strongly GALD distributes each group of global features there
    (Eq. 2, ``F_GALD = M ⊙ F_GA + F_GA``).

    Args:
        mask: one image's masks ``inspect(x)["M"][0]``.
        y, x: the pixel, in image coordinates.
        size: ``(H, W)`` of the image the mask was computed for.
        groups: number of channel groups (consecutive channels; at most the channel count).

    Returns:
        ``at_pixel`` and ``image_mean``: (G,) arrays in [0, 1]; ``channels``: ``(first, last)``
        channel of each group; ``cell``: the mask position ``(i, j)`` the pixel falls in.

    Shape:
        mask (C, h, w) -> (G,), (G,)
    """
    m = mask.detach().float().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask, np.float32)
    if m.ndim != 3:
        raise ValueError(f"ld_gate expects one image's masks (C, h, w), got shape {m.shape}")
    c, mh, mw = m.shape
    H, W = size
    i, j = min(int(y * mh / H), mh - 1), min(int(x * mw / W), mw - 1)  # the cell at the pixel's relative position
    bounds = np.linspace(0, c, min(groups, c) + 1).round().astype(int)
    spans = list(zip(bounds[:-1], bounds[1:]))
    return {
        "at_pixel": np.array([m[a:b, i, j].mean() for a, b in spans]),
        "image_mean": np.array([m[a:b].mean() for a, b in spans]),
        "channels": [(int(a), int(b) - 1) for a, b in spans],
        "cell": (i, j),
    }


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
