"""The one event that fills the page as it opens, from what each tab asked for."""

from __future__ import annotations

import gradio as gr
import pytest

from masuka.ui.page_load import PageOpened


def test_each_read_gets_its_inputs_and_the_request_and_one_that_fails_leaves_the_others_to_fill():
    with gr.Blocks():
        name, count, who, greeting, broken, left = (gr.Textbox(), gr.Number(), gr.Textbox(), gr.Markdown(),
                                                     gr.Textbox(), gr.Textbox())

    def user(request: gr.Request):
        return request.username

    def greet(text: str, number: float):
        return {greeting: f"{text} x{number:g}"}  # a dict by component: outputs it leaves out stay as they are

    def fails():
        raise gr.Error("Only an admin can see this")

    opened = PageOpened([(greet, [name, count], [greeting, left]), (fails, None, broken), (user, None, who),
                         (lambda text: text.upper(), name, left), (lambda: gr.Textbox(interactive=False), None, who),
                         (lambda: gr.update(visible=False), None, left)])
    assert opened.inputs == [name, count] and opened.outputs == [greeting, left, broken, who]
    with pytest.warns(UserWarning, match="Only an admin can see this"):
        values = opened(gr.Request(username="bob"), "hi", 3)
    assert values[0] == "hi x3"
    # a component several reads fill ends as their events left it: a later value replaces, properties add up
    assert values[1] == {"__type__": "update", "value": "HI", "visible": False}
    assert values[3] == {"__type__": "update", "value": "bob", "interactive": False}
    assert values[2] == gr.skip(), "the read that failed leaves its output as it is"


def test_a_generator_is_refused_when_the_page_is_built():
    def steps():
        yield 1

    with gr.Blocks():
        box = gr.Textbox()
    with pytest.raises(TypeError, match="steps: what runs as the page opens is a plain function"):
        PageOpened([(steps, None, box)])
