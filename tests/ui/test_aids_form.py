"""The Image tab's generation aids form takes what a request takes."""

from __future__ import annotations

import gradio as gr
import pytest

from masuka.ui.aids import AidsForm


def test_face_strength_takes_the_range_a_request_takes():
    """0.02 (which the APIs, the queue and Read parameters accept) is taken as it is; 0 is refused, as a request
    refuses it."""
    with gr.Blocks():
        form = AidsForm()
    assert form.face_strength.preprocess(0.02) == 0.02
    assert form.face_strength.preprocess(1) == 1
    with pytest.raises(gr.Error):
        form.face_strength.preprocess(0)
