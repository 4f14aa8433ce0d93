"""Pinned component signatures: the same signatures, so the same app config."""

from __future__ import annotations

import inspect

import gradio as gr
import pytest

from masuka.ui.component_signatures import _subclasses, pin_component_signatures


def _small_app() -> gr.Blocks:
    with gr.Blocks() as demo:
        with gr.Tab("One"), gr.Row():
            gr.Textbox(label="Prompt", lines=2)
            gr.Dropdown(["a", "b"], value="a", allow_custom_value=True)
            gr.Slider(1, 8, step=1)
            gr.Image(type="filepath")
            gr.ImageEditor(sources=())
            gr.Gallery(columns=2)
    return demo


@pytest.fixture
def unpinned():
    """Every ``__signature__`` the pinning added is taken away for the test, and put back after it."""
    taken = {}
    for cls in (gr.blocks.Block, *_subclasses(gr.blocks.Block)):
        function = cls.__dict__.get("__init__")
        while function is not None:
            if "__signature__" in vars(function):
                taken[function] = vars(function).pop("__signature__")
            function = getattr(function, "__wrapped__", None)
    yield
    for function, signature in taken.items():
        function.__signature__ = signature


def test_pinned_signatures_are_the_ones_inspect_computes_and_change_no_config(unpinned):
    computed = {cls: inspect.signature(cls.__init__) for cls in (gr.Textbox, gr.ImageEditor, gr.Blocks)}
    demo = _small_app()
    config = demo.get_config_file()
    built_unpinned = gr.Textbox("text", "Label", "info")._constructor_args

    pin_component_signatures()

    assert "__signature__" in vars(gr.Textbox.__init__)
    assert "__signature__" in vars(gr.Textbox.__init__.__wrapped__)  # the function Gradio's wrapper reads
    assert {cls: inspect.signature(cls.__init__) for cls in computed} == computed
    assert demo.get_config_file() == config
    assert gr.Textbox("text", "Label", "info")._constructor_args == built_unpinned  # positional arguments named
