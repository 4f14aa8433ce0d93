"""Masks painted in the browser: the layers an image editor returns, made into a white-on-black mask file."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageChops

from masuka.image.copies import KEPT_PNG
from masuka.image.tasks import open_picture, seen_size


def painted_mask(layers: list[str | Path], size: tuple[int, int]) -> Image.Image | None:
    """White wherever a layer is painted (its alpha above 0) at ``size``; ``None`` when nothing is painted. A layer
    painted over a smaller copy of the picture (the canvas's) is scaled up smoothly, not in blocks."""
    mask = Image.new("L", size, 0)
    for layer in layers:
        alpha = open_picture(layer, "painted mask").convert("RGBA").getchannel("A")
        painted = alpha.point(lambda value: 255 if value else 0)
        if painted.size != size:
            painted = painted.resize(size, Image.Resampling.BILINEAR).point(lambda value: 255 if value >= 128 else 0)
        mask = ImageChops.lighter(mask, painted)
    return mask if mask.getextrema()[1] else None


def save_painted_mask(layers: list[str | Path], picture: str | Path) -> Path | None:
    """:func:`painted_mask` of ``layers`` over ``picture``, written next to the first layer (the same file for
    the same layer, so checking a form and running it write it once); ``None`` when nothing is painted."""
    if not layers:
        return None
    mask = painted_mask(layers, seen_size(picture, "picture"))
    if mask is None:
        return None
    path = Path(layers[0]).with_name(Path(layers[0]).stem + "-mask.png")
    mask.save(path, **KEPT_PNG)
    return path
