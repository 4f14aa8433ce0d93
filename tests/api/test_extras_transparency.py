"""A1111's ``extra-single-image`` with a built-in resampler keeps a picture's transparency as the upscale job
does: a palette's or a colour key's becomes an alpha band, resized by the resampler asked for."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw


def logo(kind: str) -> bytes:
    """A red disc on black, the black transparent: by a palette entry or by a colour key."""
    picture = Image.new("RGB", (32, 32), (0, 0, 0))
    ImageDraw.Draw(picture).ellipse((4, 4, 27, 27), fill=(220, 30, 30))
    data = io.BytesIO()
    if kind == "palette":
        picture = picture.convert("P")
        picture.save(data, "PNG", transparency=picture.getpixel((0, 0)))
    else:
        picture.save(data, "PNG", transparency=(0, 0, 0))
    return data.getvalue()


@pytest.mark.parametrize("kind", ["palette", "colour key"])
def test_a_resampler_upscale_keeps_palette_and_colour_key_transparency(live_app, kind):
    app = live_app()
    source = logo(kind)
    answer = httpx.post(f"{app.url.rstrip('/')}/sdapi/v1/extra-single-image", timeout=120,
                        json={"image": base64.b64encode(source).decode(), "upscaler_1": "Lanczos",
                              "upscaling_resize": 2})
    assert answer.status_code == 200, answer.text
    made = Image.open(io.BytesIO(base64.b64decode(answer.json()["image"])))
    expected = Image.open(io.BytesIO(source)).convert("RGBA").resize((64, 64), Image.Resampling.LANCZOS)
    assert made.mode == "RGBA" and np.array_equal(np.asarray(made), np.asarray(expected))
    assert len(np.unique(np.asarray(made)[..., 3])) > 2, "Lanczos, not Nearest: the edge fades"
