"""Face detail, as ADetailer does it: find the faces in a result, repaint each one's crop at the generation size
with the inpaint pipeline at low strength, and blend it back through a feathered mask.

Faces are found with OpenCV's bundled Haar cascade (no download). Only the square crop around a face can change,
and inside it only the dilated, feathered face region: every other pixel comes back exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFilter

from masuka.datasets.preprocess import cascade
from masuka.errors import InvalidInput
from masuka.image.metadata import to_number

DETECTOR = "opencv-haar-frontalface"
#: ADetailer's detection models that find faces (its others find hands, people or named objects), and MASUKA's own
FACE_MODELS = ("face_", "mediapipe_face", DETECTOR)
ADETAILER_STRENGTH = 0.4  # ADetailer's default ad_denoising_strength
#: the least face detail strength a request takes (the minimum and step of the form's slider)
MIN_FACE_STRENGTH = 0.01
MARGIN = 0.6  # the crop reaches this many face sizes beyond the face on each side
DILATE = 0.15  # the repainted region: the face box grown by this many face sizes on each side
FEATHER = 0.08  # blur of the region's edge, in face sizes
MIN_FACE = 24  # pixels

Box = tuple[int, int, int, int]  # left, top, right, bottom
#: (crop at render size, mask at render size: white = repaint) -> the repainted crop
Renderer = Callable[[Image.Image, Image.Image], Image.Image]


def check_strength(strength: float) -> float:
    """The face detail's denoising strength, or :class:`InvalidInput`."""
    value = float(strength)
    if not _in_range(value):
        raise InvalidInput(f"The face detail strength must be at least {MIN_FACE_STRENGTH:g} and at most 1 "
                           f"(got {value:g}).")
    return value


def _in_range(strength: float) -> bool:
    return MIN_FACE_STRENGTH <= strength <= 1


def find_faces(image: Image.Image) -> list[Box]:
    """The faces OpenCV's frontal-face cascade (loaded once a thread) sees at full size, a small face in a group
    too, biggest first."""
    import cv2
    import numpy as np

    gray = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
    found = cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(MIN_FACE, MIN_FACE))
    boxes = [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in found]
    return sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)


def crop_box(face: Box, size: tuple[int, int]) -> Box:
    """The square around ``face`` with :data:`MARGIN`, moved (and if need be shrunk) to lie inside the image."""
    left, top, right, bottom = face
    side = min(round(max(right - left, bottom - top) * (1 + 2 * MARGIN)), *size)
    x = min(max(0, (left + right - side) // 2), size[0] - side)
    y = min(max(0, (top + bottom - side) // 2), size[1] - side)
    return x, y, x + side, y + side


def face_mask(face: Box, crop: Box) -> Image.Image:
    """The crop's mask: the dilated face ellipse in white, its edge feathered."""
    left, top, right, bottom = face
    grow = round(max(right - left, bottom - top) * DILATE)
    mask = Image.new("L", (crop[2] - crop[0], crop[3] - crop[1]), 0)
    ImageDraw.Draw(mask).ellipse((left - grow - crop[0], top - grow - crop[1], right + grow - crop[0],
                                  bottom + grow - crop[1]), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(max(1, round(max(right - left, bottom - top) * FEATHER))))


def detail_faces(image: Image.Image, render: Renderer, render_side: int, multiple: int = 8,
                 restore: Callable[[Image.Image], Image.Image] | None = None) -> tuple[Image.Image, list[Box]]:
    """``image`` with every face repainted by ``render`` (crops scaled to at least ``render_side``, a multiple of
    ``multiple``) and then ``restore``-d when given, and the faces found."""
    faces = find_faces(image)
    result = image.convert("RGB")
    for face in faces:
        box = crop_box(face, result.size)
        crop = result.crop(box)
        mask = face_mask(face, box)
        side = max(multiple, round(max(render_side, crop.width) / multiple) * multiple)
        lanczos = Image.Resampling.LANCZOS
        repainted = render(crop.resize((side, side), lanczos), mask.resize((side, side), lanczos))
        repainted = repainted.convert("RGB").resize(crop.size, Image.Resampling.LANCZOS)
        blended = Image.composite(restore(repainted) if restore else repainted, crop, mask)
        result.paste(blended, box[:2])
    return result, faces


def face_record(strength: float, faces: list[Box], restoration: str = "") -> dict:
    """What the history row keeps about the face detail (and the restoration, when a model is set)."""
    record = {"detector": DETECTOR, "strength": strength, "faces": [list(face) for face in faces]}
    return {"face_detail": {**record, "restoration": restoration} if restoration else record}


def face_infotext(strength: float) -> dict[str, str]:
    """ADetailer's infotext fields."""
    return {"ADetailer model": DETECTOR, "ADetailer denoising strength": f"{strength:g}"}


def read_face_detail(extra: dict[str, str]) -> float | None:
    """The face detail strength an image's ADetailer fields record (ADetailer's default where its strength is
    missing or out of range); None where its first ADetailer unit detected no faces, or it has none."""
    if not extra.get("ADetailer model", "").lower().startswith(FACE_MODELS):
        return None
    strength = to_number(extra.get("ADetailer denoising strength"), float)
    return strength if strength is not None and _in_range(strength) else ADETAILER_STRENGTH
