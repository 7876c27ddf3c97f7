"""gald.viz: colours, overlays, LD-mask and heat maps, class areas, legend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gald import viz

PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def test_colorize_maps_ids_and_ignores_everything_else():
    label = np.array([[0, 1, 2], [255, 7, -1]], np.int64)
    out = viz.colorize(label, PALETTE, ignore_color=(9, 8, 7))
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert out[0].tolist() == [list(c) for c in PALETTE]
    assert (out[1] == (9, 8, 7)).all()  # ignore id, id past the palette, negative id


def test_colorize_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        viz.colorize(np.zeros((2, 2, 1), np.int64), PALETTE)
    with pytest.raises(TypeError, match="integers"):
        viz.colorize(np.zeros((2, 2), np.float32), PALETTE)


def test_overlay_blends_and_keeps_ignored_pixels():
    image = np.full((5, 7, 3), 100, np.uint8)
    label = np.zeros((5, 7), np.int64)
    label[0, 0] = 255
    label[1, 1] = 2
    out = viz.overlay(image, label, PALETTE, alpha=0.25)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[0, 0].tolist() == [100, 100, 100]  # ignored: the image unchanged
    assert out[2, 2].tolist() == [round(0.75 * 100 + 0.25 * 255), 75, 75]
    assert out[1, 1].tolist() == [75, 75, round(0.75 * 100 + 0.25 * 255)]
    assert (viz.overlay(image, label, PALETTE, alpha=0.0) == image).all()
    full = viz.overlay(image, label, PALETTE, alpha=1.0)
    assert full[3, 3].tolist() == [255, 0, 0]


def test_overlay_checks_inputs():
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="differ in size"):
        viz.overlay(image, np.zeros((4, 5), np.int64), PALETTE)
    with pytest.raises(ValueError, match="uint8"):
        viz.overlay(image.astype(np.float32), np.zeros((4, 4), np.int64), PALETTE)
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(image, np.zeros((4, 4), np.int64), PALETTE, alpha=1.5)


def test_resize_label_is_nearest_and_exact_on_integer_factors():
    label = np.array([[0, 1], [2, 3]], np.int32)
    up = viz.resize_label(label, (4, 6))
    assert up.shape == (4, 6)
    assert up[:2, :3].tolist() == [[0] * 3] * 2 and up[2:, 3:].tolist() == [[3] * 3] * 2
    assert set(np.unique(viz.resize_label(label, (3, 5)))) <= {0, 1, 2, 3}


def test_ld_mask_image_reductions_use_the_unit_scale():
    mask = np.zeros((3, 4, 6), np.float32)
    mask[0] = 1.0  # channel 0 all ones, the others zero
    mean = viz.ld_mask_image(mask, "mean")
    mx = viz.ld_mask_image(mask, "max")
    ch0 = viz.ld_mask_image(mask, 0)
    ch1 = viz.ld_mask_image(torch.from_numpy(mask), 1)
    for img in (mean, mx, ch0, ch1):
        assert img.shape == (4, 6, 3) and img.dtype == np.uint8
    assert (mx == ch0).all()  # max over channels = the all-ones channel
    assert not (ch0 == ch1).all()
    # fixed [0, 1] scale: mean 1/3 is neither end of the colormap
    assert not (mean == ch0).all() and not (mean == ch1).all()
    low, high = viz.heatmap(np.zeros((1, 1)), vmin=0, vmax=1), viz.heatmap(np.ones((1, 1)), vmin=0, vmax=1)
    assert (ch1 == low[0, 0]).all() and (ch0 == high[0, 0]).all()


def test_ld_mask_image_resizes_and_validates():
    mask = torch.rand(5, 3, 4)
    assert viz.ld_mask_image(mask, "mean", size=(23, 31)).shape == (23, 31, 3)
    assert viz.ld_mask_image(mask, "mean", size=(23, 31), scale="minmax").shape == (23, 31, 3)
    with pytest.raises(IndexError, match="5 channels"):
        viz.ld_mask_image(mask, 5)
    with pytest.raises(ValueError, match="reduce"):
        viz.ld_mask_image(mask, "median")
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        viz.ld_mask_image(mask[0], "mean")
    with pytest.raises(ValueError, match="scale"):
        viz.ld_mask_image(mask, "mean", scale="log")


def test_heatmap_minmax_and_constant_and_nan():
    ramp = np.linspace(0, 5, 12, dtype=np.float32).reshape(3, 4)
    out = viz.heatmap(ramp)
    assert out.shape == (3, 4, 3)
    assert not (out[0, 0] == out[-1, -1]).all()
    const = viz.heatmap(np.full((3, 4), 2.0))
    assert (const == const[0, 0]).all()
    with pytest.raises(ValueError, match="NaN"):
        viz.heatmap(np.array([[np.nan, 1.0]]))


def test_blend_heatmap():
    image = np.zeros((3, 4, 3), np.uint8)
    heat = np.full((3, 4, 3), 200, np.uint8)
    assert (viz.blend_heatmap(image, heat, 0.5) == 100).all()
    with pytest.raises(ValueError, match="differ"):
        viz.blend_heatmap(image, heat[:2], 0.5)


def test_class_fractions_ignore_and_empty():
    label = np.array([[0, 0, 1, 255], [2, 2, 2, 9]], np.int64)
    f = viz.class_fractions(label, 3)
    assert f.shape == (3,)
    np.testing.assert_allclose(f, [2 / 6, 1 / 6, 3 / 6])
    assert viz.class_fractions(np.full((2, 2), 255), 3).tolist() == [0.0, 0.0, 0.0]


def test_legend_html_sorts_filters_and_escapes():
    html = viz.legend_html(["a", "<b>", "c"], PALETTE, [0.2, 0.8, 0.0])
    assert html.index("&lt;b&gt;") < html.index(">a<")  # sorted by area; the name is escaped
    assert ">c<" not in html  # zero area left out
    assert "80.0 %" in html and "rgb(0,255,0)" in html
    assert ">c<" in viz.legend_html(["a", "b", "c"], PALETTE)


def test_default_palette_distinct():
    pal = viz.default_palette(19)
    assert len(pal) == 19 and len(set(pal)) == 19
    assert all(0 <= v <= 255 for c in pal for v in c)


def test_colorbar_html_writes_the_range_and_the_colormap():
    html = viz.colorbar_html(0.25, 0.75, label="M <mean>")
    assert ">0.25<" in html and ">0.5<" in html and ">0.75<" in html
    assert "rgb(68,1,84)" in html and "rgb(253,231,37)" in html  # viridis' ends
    assert "M &lt;mean&gt;" in html
    assert "rgb(0,0,4)" in viz.colorbar_html(0, 1, cmap="inferno")


def test_mark_point_draws_a_cross_and_leaves_the_pixel_and_the_input():
    image = np.zeros((20, 30, 3), np.uint8)
    marked = viz.mark_point(image, 10, 15, size=4)
    assert not image.any()  # a copy
    assert (marked[10, 15] == 0).all()  # the probed pixel stays visible
    assert (marked[10, 19] == (255, 0, 255)).all() and (marked[6, 15] == (255, 0, 255)).all()
    assert (marked[10, 20] == 0).all() and (marked[11, 16] == 0).all()  # arms only, of the given length
    assert viz.mark_point(image, 0, 0).shape == image.shape  # clipped at the border


def test_save_label_png_is_a_palette_png_of_the_indices(tmp_path):
    from PIL import Image

    label = np.array([[0, 1, 2], [2, 1, 0]], np.int64)
    path = viz.save_label_png(label, PALETTE, tmp_path / "sub" / "x_label.png")
    with Image.open(path) as im:
        assert im.mode == "P" and (np.asarray(im) == label).all()
        assert im.getpalette()[:9] == [v for c in PALETTE for v in c]
    assert not list(tmp_path.glob("sub/*.tmp"))
    with pytest.raises(ValueError, match="0..255"):
        viz.save_label_png(np.full((2, 2), 300), PALETTE, tmp_path / "bad.png")
