"""The face detail strength has one range: the form's slider starts where a request's check does."""

from __future__ import annotations

import pytest

from masuka.errors import InvalidInput
from masuka.image.face_detail import MIN_FACE_STRENGTH, check_strength, read_face_detail


def test_the_slider_minimum_is_the_least_strength_a_request_takes(studio):
    from masuka.ui.app import build_app

    (slider,) = [block for block in build_app(studio).blocks.values()
                 if getattr(block, "label", None) == "Face detail strength"]
    assert slider.minimum == slider.step == MIN_FACE_STRENGTH == check_strength(MIN_FACE_STRENGTH)
    with pytest.raises(InvalidInput, match=r"must be at least 0.01 and at most 1 \(got 0.005\)"):
        check_strength(0.005)
    fields = {"ADetailer model": "face_yolov8n.pt"}
    assert read_face_detail({**fields, "ADetailer denoising strength": "0.005"}) == 0.4  # ADetailer's default
    assert read_face_detail({**fields, "ADetailer denoising strength": "0.01"}) == 0.01
