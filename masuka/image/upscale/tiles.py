"""Cutting a picture into overlapping tiles and putting the processed tiles back without seams.

Tiles are spread evenly, so neighbours overlap by at least the asked-for overlap. Each processed tile is
weighted by a feather that rises linearly from 0 at an inner edge to 1 at ``overlap`` pixels in (image borders
are not feathered); every output pixel is the weighted mean of the tiles covering it, so the weights of a pixel
always sum to 1 and one tile fades into the next with no step.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # left, top, right, bottom


def tile_boxes(width: int, height: int, tile: int, overlap: int, tile_height: int | None = None) -> list[Box]:
    """Boxes ``tile`` x ``tile_height`` (default ``tile``) pixels, or the picture's side where that is smaller,
    covering ``width`` x ``height`` row by row; ``tile`` 0 = one box."""
    if tile <= 0:
        return [(0, 0, width, height)]
    tile_height = tile_height or tile
    return [(left, top, min(left + tile, width), min(top + tile_height, height))
            for top in _starts(height, tile_height, overlap) for left in _starts(width, tile, overlap)]


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(index * (length - tile) / (count - 1)) for index in range(count)]


def feather(box: Box, width: int, height: int, overlap: int) -> np.ndarray:
    """The weight (height x width of the box) of a tile's pixels: ramps on the sides that have a neighbour."""
    left, top, right, bottom = box
    return np.outer(_ramp(bottom - top, top > 0, bottom < height, overlap),
                    _ramp(right - left, left > 0, right < width, overlap))


def _ramp(length: int, start: bool, end: bool, overlap: int) -> np.ndarray:
    weight = np.ones(length, dtype=np.float32)
    if overlap <= 0:
        return weight
    rising = (np.arange(length, dtype=np.float32) + 0.5) / overlap
    if start:
        weight = np.minimum(weight, rising)
    if end:
        weight = np.minimum(weight, rising[::-1])
    return weight


class Blender:
    """Accumulates feathered tiles into a ``width`` x ``height`` RGB picture."""

    def __init__(self, width: int, height: int, overlap: int) -> None:
        self.width, self.height, self.overlap = width, height, overlap
        self.total = np.zeros((height, width, 3), dtype=np.float32)
        self.weights = np.zeros((height, width, 1), dtype=np.float32)

    def add(self, box: Box, pixels: np.ndarray) -> None:
        """Add one tile: ``pixels`` is a (box height, box width, 3) float array in 0..1."""
        left, top, right, bottom = box
        weight = feather(box, self.width, self.height, self.overlap)[:, :, None]
        self.total[top:bottom, left:right] += pixels * weight
        self.weights[top:bottom, left:right] += weight

    def image(self) -> Image.Image:
        """The blended picture (every pixel must have been covered by a tile)."""
        mean = self.total / np.maximum(self.weights, 1e-8)
        return Image.fromarray((np.clip(mean, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")


def scaled(box: Box, factor: int) -> Box:
    """``box`` in the coordinates of a picture ``factor`` times larger."""
    return tuple(side * factor for side in box)  # type: ignore[return-value]


def to_array(image: Image.Image) -> np.ndarray:
    """An RGB picture as a (height, width, 3) float array in 0..1."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255
