"""Pictures: overlays of predictions and LD masks (this package's names, :mod:`gald.viz.overlays`),
the notebooks' figures (:mod:`gald.viz.figures`) and Grad-CAM per stage (:mod:`gald.viz.attribution`,
needs captum)."""

from .overlays import (
    blend_heatmap,
    class_fractions,
    colorize,
    default_palette,
    draw_detections,
    heatmap,
    ld_mask_image,
    legend_html,
    overlay,
    resize_label,
)

__all__ = [
    "blend_heatmap",
    "class_fractions",
    "colorize",
    "default_palette",
    "draw_detections",
    "heatmap",
    "ld_mask_image",
    "legend_html",
    "overlay",
    "resize_label",
]
