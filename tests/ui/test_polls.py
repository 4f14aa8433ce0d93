"""Panels that poll (the Queue, Video, Train and Models tabs' tables) tick only while their tab is shown."""

from __future__ import annotations

import gradio as gr
import pandas as pd
from gradio.helpers import special_args

from masuka.ui.app import TABS, build_app
from masuka.ui.polls import changed_only

SKIP = gr.skip()


def test_a_tabs_timers_tick_while_it_is_shown_and_refresh_as_it_opens(studio):
    demo = build_app(studio)
    timers = [block for block in demo.blocks.values() if isinstance(block, gr.Timer)]
    tabs = {block._id: block.label for block in demo.blocks.values() if isinstance(block, gr.Tab)}

    labels = [label for label, _module in TABS]

    def home(timer: gr.Timer) -> str:
        """The label of the top-level tab ``timer`` sits in."""
        block = timer
        while not (isinstance(block, gr.Tab) and block.label in labels):
            block = block.parent
        return block.label

    assert sorted(home(timer) for timer in timers) == ["Models", "Queue", "Train", "Video"]
    assert not any(timer.active for timer in timers), "the page opens on the Image tab: none ticks"
    switches = {tabs[target]: fn for fn in demo.fns.values() if fn.outputs == timers
                for target, event in fn.targets if event == "select"}
    assert sorted(switches) == sorted(labels), "every top-level tab starts and stops them"
    for label, fn in switches.items():
        assert [timer.active for timer in fn.fn()] == [home(timer) == label for timer in timers], label
    for timer in timers:  # the tab's panel is read again as it opens, as a tick reads it
        (tick,) = [fn for fn in demo.fns.values() if (timer._id, "tick") in fn.targets]
        switch = switches[home(timer)]
        assert isinstance(tick.outputs[-1], gr.State) and tick.inputs[-1] is tick.outputs[-1], "what was sent"
        assert any(getattr(fn.fn, "__wrapped__", None) is tick.fn.__wrapped__ and fn.trigger_after == switch._id
                   and (fn.inputs, fn.outputs) == (tick.inputs, tick.outputs) for fn in demo.fns.values()), home(timer)


def test_a_poll_sends_only_what_changed_since_its_last_tick():
    """A tick answers ``gr.skip()`` for each output the page was last sent unchanged (a gallery or plot sent again
    is drawn again); the refresh as the tab opens sends everything. The ``gr.Request`` reaches the poll's function
    where Gradio puts it, by its place in the signature."""
    seen = []

    def panel(selected: float | None, request: gr.Request):
        seen.append(request)
        rows = table[selected] if selected else []
        return (gr.Dropdown(choices=[1, 2]), pd.DataFrame(rows, columns=["step", "loss"]),
                [f"/tmp/{step}.png" for step, _loss in rows])

    def tick(fn, *values):
        args, *_ = special_args(fn, list(values), request)
        return fn(*args)

    table, request = {1: [(1, 0.9), (2, 0.7)]}, object()
    ticking, shown = changed_only(panel, 3), changed_only(panel, 3, always=True)
    *first, sent = tick(ticking, 1, None)
    assert first[0].constructor_args == {"choices": [1, 2]} and first[1].shape == (2, 2) and first[2]
    assert tick(ticking, 1, sent) == [SKIP, SKIP, SKIP, sent] and seen == [request] * 2
    table[1] = [*table[1], (3, 0.6)]  # a step more: the plot and the gallery change, the picker does not
    *changed, after = tick(ticking, 1, sent)
    assert changed[0] == SKIP and changed[1].shape == (3, 2) and len(changed[2]) == 3
    assert after[0] == sent[0] and after[1:] != sent[1:]
    *everything, again = tick(shown, 1, after)
    assert everything[0].constructor_args == {"choices": [1, 2]} and everything[1].shape == (3, 2), "all sent"
    assert len(everything[2]) == 3 and again == after
    echo = changed_only(lambda value: value, 1)
    sent = echo("a", None)[1]
    assert echo(SKIP, sent) == [SKIP, sent], "the poll's own skip sends nothing and forgets nothing"
    assert echo("a", sent)[0] == SKIP and echo("b", sent)[0] == "b"
