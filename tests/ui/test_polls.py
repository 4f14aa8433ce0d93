"""Panels that poll (the Queue, Video, Train and Models tabs' tables) tick only while their tab is shown."""

from __future__ import annotations

import gradio as gr

from masuka.ui.app import TABS, build_app


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
        assert any(fn.fn is tick.fn and fn.trigger_after == switch._id for fn in demo.fns.values()), home(timer)
