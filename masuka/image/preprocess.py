"""Control image preprocessors: what a ControlNet of each kind expects, made from an ordinary picture.

``canny`` draws the picture's edges white on black (OpenCV's Canny detector); ``depth`` estimates its depth with a
transformers ``depth-estimation`` model (near = bright), ``MASUKA_DEPTH_MODEL`` or Depth Anything V2 Small;
``image`` hands the picture over as it is (a tile ControlNet follows it; a map made elsewhere goes in unchanged).
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from masuka.config import depth_model

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
#: Canny's hysteresis thresholds, as A1111's and ComfyUI's canny preprocessors default them
CANNY_LOW, CANNY_HIGH = 100, 200
KINDS = ("canny", "depth", "image")


def canny(picture: Image.Image, low: int = CANNY_LOW, high: int = CANNY_HIGH) -> Image.Image:
    """The picture's edges, white on black, as an RGB image of the same size."""
    import cv2
    import numpy as np

    edges = cv2.Canny(np.asarray(picture.convert("L")), low, high)
    return Image.fromarray(edges).convert("RGB")


def depth_model_id() -> str:
    """The depth model: ``MASUKA_DEPTH_MODEL`` (a repo id or a folder) when set, else the default."""
    return depth_model() or DEFAULT_DEPTH_MODEL


def depth_estimator(model_id: str, device: str = "cpu") -> Any:
    """A transformers ``depth-estimation`` pipeline for ``model_id`` (a repo id or a folder)."""
    from transformers import pipeline

    return pipeline("depth-estimation", model=model_id, device=device)


def depth(picture: Image.Image, estimator: Any) -> Image.Image:
    """The picture's estimated depth (near = bright) as an RGB image of the same size."""
    return estimator(picture.convert("RGB"))["depth"].convert("RGB").resize(picture.size)


def preprocess(kind: str, picture: Image.Image, estimator: Any = None) -> Image.Image:
    """The control map of ``kind`` for ``picture`` (``estimator`` for depth, see :func:`depth_estimator`)."""
    if kind == "canny":
        return canny(picture)
    if kind == "depth":
        return depth(picture, estimator)
    return picture.convert("RGB")
