"""Pictures the API tests send: a striped photo and a mask whose white square is the part to repaint."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from tests.image.conftest import tiny_lora  # noqa: F401  (LoRA files for the tiny pipelines)


@pytest.fixture
def photo() -> Image.Image:
    picture = Image.new("RGB", (64, 64), "navy")
    draw = ImageDraw.Draw(picture)
    for x in range(0, 64, 8):
        draw.rectangle((x, 0, x + 3, 64), fill=(250, 200, 40))
    return picture


@pytest.fixture
def square_mask() -> Image.Image:
    """White (repaint) 24x24 square in the middle; black elsewhere."""
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((20, 20, 43, 43), fill=255)
    return mask
