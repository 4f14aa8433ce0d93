"""Face embeddings from an ONNX face-recognition model run by OpenCV (``cv2.FaceRecognizerSF``), SFace by default.

Such models are trained on 112x112 faces aligned by their landmarks. MASUKA aligns by the eyes: OpenCV's bundled
Haar cascades find the face and, inside its upper half, one eye on each side; a rotation, scale and shift puts the
eyes where the standard 112x112 template has them. When the eyes are not found the face box is used as it is, and
when no face is found, the whole picture.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from masuka.datasets.preprocess import cascade, find_face

#: the side of the aligned face, and where the standard (ArcFace) template puts the left and right eye
SIDE = 112
TEMPLATE_EYES = ((38.2946, 51.6963), (73.5318, 51.5014))
#: OpenCV's published cosine-similarity threshold for "same person" with SFace (on LFW)
FACE_THRESHOLD = 0.363

Point = tuple[float, float]


@dataclass
class FaceNet:
    """An ONNX face-recognition model loaded by OpenCV; ``embed`` takes pictures holding one face each."""

    source: str
    recognizer: Any  # cv2.FaceRecognizerSF
    threshold: float = FACE_THRESHOLD
    lock: threading.Lock = field(default_factory=threading.Lock)  # one OpenCV net is not safe across threads

    @classmethod
    def load(cls, source: str, path: Path) -> FaceNet:
        import cv2

        return cls(source, cv2.FaceRecognizerSF.create(str(path), ""))

    def embed(self, images: list[Image.Image]) -> Any:
        """One unit-length embedding per image (a ``len(images) x D`` tensor), each of its aligned face."""
        import torch

        faces = [aligned_face(image) for image in images]
        with self.lock:
            vectors = [np.asarray(self.recognizer.feature(face), dtype=np.float32).reshape(-1) for face in faces]
        return torch.nn.functional.normalize(torch.from_numpy(np.stack(vectors)), dim=-1)


def aligned_face(image: Image.Image) -> np.ndarray:
    """The picture's biggest face as a ``SIDE`` x ``SIDE`` BGR array, eyes on the template when they are found."""
    import cv2

    rgb = np.asarray(image.convert("RGB"))
    box = find_face(image)
    eyes = find_eyes(image, box) if box else None
    matrix = eye_transform(*eyes) if eyes else box_transform(box or (0, 0, image.width, image.height))
    return cv2.warpAffine(rgb[:, :, ::-1], matrix, (SIDE, SIDE), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)


def find_eyes(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[Point, Point] | None:
    """The centres of the left and right eye (as seen) inside the upper half of face ``box``, or None unless one
    eye is found on each side at a plausible distance."""
    left, top, width, height = box
    grey = np.asarray(image.convert("L").crop((left, top, left + width, top + round(height * 0.6))))
    found = cascade("haarcascade_eye.xml").detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                             minSize=(max(8, width // 10),) * 2, maxSize=(width // 2,) * 2)
    centres = sorted(((x + w / 2, y + h / 2, w * h) for x, y, w, h in found), key=lambda c: -c[2])
    sides = [[c for c in centres if c[0] < width / 2], [c for c in centres if c[0] >= width / 2]]
    if not all(sides):
        return None
    (lx, ly, _), (rx, ry, _) = sides[0][0], sides[1][0]
    if not 0.25 * width <= math.dist((lx, ly), (rx, ry)) <= 0.7 * width:
        return None
    return (left + lx, top + ly), (left + rx, top + ry)


def eye_transform(left_eye: Point, right_eye: Point) -> np.ndarray:
    """The 2x3 similarity transform (rotation, uniform scale, shift) taking the eyes onto ``TEMPLATE_EYES``."""
    (sx, sy), (tx, ty) = np.subtract(right_eye, left_eye), np.subtract(TEMPLATE_EYES[1], TEMPLATE_EYES[0])
    scale = math.hypot(tx, ty) / math.hypot(sx, sy)
    angle = math.atan2(ty, tx) - math.atan2(sy, sx)
    a, b = scale * math.cos(angle), scale * math.sin(angle)
    rotation = np.array([[a, -b], [b, a]])
    shift = np.asarray(TEMPLATE_EYES[0]) - rotation @ np.asarray(left_eye)
    return np.hstack([rotation, shift[:, None]])


def box_transform(box: tuple[int, int, int, int]) -> np.ndarray:
    """The 2x3 transform taking the square around ``box``'s centre onto the ``SIDE`` x ``SIDE`` face."""
    left, top, width, height = box
    side = max(width, height)
    scale = SIDE / side
    x, y = left + width / 2 - side / 2, top + height / 2 - side / 2
    return np.array([[scale, 0, -x * scale], [0, scale, -y * scale]])
