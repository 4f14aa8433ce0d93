"""Preprocessing of one decoded image: quality filter, square crop (center or face), resize, flip.

``crop`` chooses the shape: ``none`` keeps the aspect ratio and brings the longest side to ``size``;
``center`` and ``face`` cut a square (around the largest face found, else the center) and resize it to
``size`` × ``size``. Images are only ever made smaller, never upscaled.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

from masuka.errors import InvalidInput

CROPS = ("none", "center", "face")
SIZES = (512, 768, 1024, 1536)
MIN_SIZE, MAX_SIZE = 64, 4096
SHARPNESS_SIDE = 512  # sharpness is measured at this longest side, so one threshold fits every resolution
#: faces are looked for at this longest side, then at the next when none is found: the last is a photo's own size
#: up to 4096 (a character photo's cap), where a face the cascade's 24-pixel window missed at 2048 is seen
DETECT_SIDES = (640, 2048, 4096)


@dataclass(frozen=True)
class PrepOptions:
    """How a dataset's images are prepared; stored as the dataset's ``options``."""

    size: int = 1024
    crop: str = "none"
    flip: bool = False
    min_side: int = 256
    blur_threshold: float = 0.0
    dedupe: bool = True
    near_distance: int = 4

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise InvalidInput(f"Crop must be one of {', '.join(CROPS)} (got {self.crop!r}).")
        if not MIN_SIZE <= int(self.size) <= MAX_SIZE:
            raise InvalidInput(f"Target size must be between {MIN_SIZE} and {MAX_SIZE} pixels (got {self.size}).")
        if not 0 <= int(self.min_side) <= MAX_SIZE:
            raise InvalidInput(f"Minimum side must be between 0 and {MAX_SIZE} pixels (got {self.min_side}).")
        if not 0 <= float(self.blur_threshold) < math.inf:  # NaN too: it compares false, turning the filter off
            raise InvalidInput(f"The blur threshold must be a number of 0 or more (0 turns the blur filter off; "
                               f"got {self.blur_threshold}).")
        if not 0 <= int(self.near_distance) <= 32:
            raise InvalidInput("The near-duplicate distance must be between 0 and 32.")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "PrepOptions":
        casts = {"size": int, "min_side": int, "near_distance": int, "blur_threshold": float, "flip": bool,
                 "dedupe": bool, "crop": str}
        try:
            return cls(**{k: casts[k](v) for k, v in (values or {}).items() if k in casts and v is not None})
        except (TypeError, ValueError) as error:
            raise InvalidInput(f"Invalid preprocessing option: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def least_stored_side(self) -> int:
        """The shortest side a kept image may have as stored: the minimum short side, or a quarter of the target
        size where that is smaller (kohya's buckets, 256 to 1024 px, go to 4:1 at most), so a small target size
        keeps ordinary photos and refuses only strips."""
        return min(self.min_side, max(1, self.size // 4))


_CV2_LOCK = threading.Lock()
_local = threading.local()


def _cv2() -> Any:
    """OpenCV, imported once under a lock: its package initialisation is not safe to race from threads."""
    with _CV2_LOCK:
        import cv2

    return cv2


def sharpness(image: Image.Image) -> float:
    """Variance of the Laplacian of the grey image at a fixed scale: low values mean a blurry image."""
    import numpy as np

    cv2 = _cv2()
    grey = image.convert("L")
    grey.thumbnail((SHARPNESS_SIDE, SHARPNESS_SIDE), Image.Resampling.BILINEAR)
    return float(cv2.Laplacian(np.asarray(grey), cv2.CV_64F).var())


def cascade(name: str = "haarcascade_frontalface_default.xml") -> Any:
    """One of OpenCV's bundled Haar cascades (the frontal face by default); one per thread, as a classifier must
    not run in two threads at once."""
    loaded = _local.__dict__.setdefault("cascades", {})
    if name not in loaded:
        cv2 = _cv2()
        loaded[name] = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    return loaded[name]


def find_faces(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Every frontal face as (left, top, width, height) in ``image`` pixels, the largest first.

    The search runs on a copy at most ``DETECT_SIDES[0]`` pixels long (quick, and enough for a face that fills a
    good part of the picture); when it finds none, again at each larger side, up to the photo's own size (a
    second or two more for a 12 MP photo, spent only when the smaller copies showed no face), so a small face in a
    large photo (a 12 MP group photo) is found too."""
    import numpy as np

    grey = image.convert("L")
    for side in DETECT_SIDES:
        scale = min(1.0, side / max(grey.size))
        small = grey if scale == 1 else grey.resize((round(grey.width * scale), round(grey.height * scale)),
                                                    Image.Resampling.BILINEAR)
        found = cascade().detectMultiScale(np.asarray(small), scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        if len(found) or scale == 1:
            break
    boxes = sorted(found, key=lambda box: box[2] * box[3], reverse=True)
    return [tuple(round(v / scale) for v in box) for box in boxes]


def find_face(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The largest frontal face as (left, top, width, height) in ``image`` pixels, or None."""
    faces = find_faces(image)
    return faces[0] if faces else None


def square_box(size: tuple[int, int], center: tuple[float, float]) -> tuple[int, int, int, int]:
    """The largest square inside ``size`` centred as near ``center`` as the edges allow."""
    width, height = size
    side = min(width, height)
    left = min(max(round(center[0] - side / 2), 0), width - side)
    top = min(max(round(center[1] - side / 2), 0), height - side)
    return left, top, left + side, top + side


def prepare(image: Image.Image, options: PrepOptions) -> tuple[Image.Image, list[str]]:
    """Crop and resize an RGB image as ``options`` say; returns it with notes for the person (face not found…)."""
    notes: list[str] = []
    if options.crop != "none":
        center = (image.width / 2, image.height / 2)
        if options.crop == "face":
            face = find_face(image)
            if face is None:
                notes.append("no face found: cropped at the center")
            else:
                center = (face[0] + face[2] / 2, face[1] + face[3] / 2)
        image = image.crop(square_box(image.size, center))
    target = stored_size(image.size, options)
    if target != image.size:
        image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image, notes


def stored_size(size: tuple[int, int], options: PrepOptions) -> tuple[int, int]:
    """The size :func:`prepare` turns an upright image of ``size`` into: a square of its short side when ``options``
    crop, then the longest side brought down to the target size (never up)."""
    width, height = size
    if options.crop != "none":
        width = height = min(width, height)
    scale = min(1.0, options.size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))
