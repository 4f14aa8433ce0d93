"""The Stop of Compare, Grid, Characters, checkpoint comparison and captioning counts while the work waits in
Gradio's queue: the queue arms it as it accepts the work (:func:`masuka.guards.guard_queue`, for events marked
:func:`masuka.ui.common.stoppable`), the work takes it as it starts; work that refuses its input leaves nothing
armed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
import pytest

from masuka.datasets.library import create_dataset
from masuka.gpu import STOP_TAB
from masuka.store import LOCAL_USER
from masuka.ui import characters, checkpoints, compare, datasets, grid
from masuka.ui.common import NOTHING_TO_STOP, stop_key, stop_work

STOPPED = "Stopped by the user before it started."


def quiet(*_args, **_kwargs) -> None:
    """A ``gr.Progress`` stand-in."""


@dataclass
class Tab:
    """A tab's Stop flag, the step its Stop names, and its work called as its button calls it: with a form it
    takes (``ok``; a Stop that came while it waited ends it before the form is even read) or with one it refuses,
    with the refusal's message (``refused``)."""

    key: str
    step: str
    work: Callable
    refused: str


def compare_pairs(studio, model, request, ok: bool):
    side_b = ["some-style"] if ok else []  # the same sides as A: refused
    return compare.make(studio, "a red fox", model, "", 1, 1.0, 64, 64, 4, 1, [], "auto", False, 0.0, [], side_b,
                        "a red fox", 1, request=request, progress=quiet)


def make_grid(studio, model, request, ok: bool):
    return grid.make_grid(studio, "a red fox", model, steps=1, width=64, height=64, seed=4,
                          x="seed=1" if ok else "clip_skip=1,2", request=request, progress=quiet)


def compare_checkpoints(studio, model, request, ok: bool):
    return checkpoints.compare_checkpoints(studio, 1 if ok else None, "sks, a fox", 4, 1, 64, 64, request=request,
                                           progress=quiet)


def create_character(studio, model, request, ok: bool):
    return characters.create_character(studio, "anna", "ohwx", ["anna.png"] if ok else None, model, 2,
                                       request=request, progress=quiet)


def caption(studio, model, request, ok: bool):
    if ok:
        create_dataset(studio, "cats", LOCAL_USER, "zorp")
    return datasets.caption_dataset(studio, "cats" if ok else "no such set", "florence2", "short",
                                    request=request, progress=quiet)


TABS = {
    "compare": Tab(compare.TAB, "step", compare_pairs, "Sides A and B are the same"),
    "grid": Tab(grid.TAB, "step", make_grid, "Unknown grid axis"),
    "checkpoints": Tab(checkpoints.TAB, "step", compare_checkpoints, "Choose a run first"),
    "characters": Tab(characters.TAB, "view", create_character, "Drop one to five photos"),
    "captions": Tab(datasets.CAPTIONS, "batch", caption, "No dataset 'no such set'"),
}


def admitted(studio, tab: str, request: gr.Request) -> None:
    """What the queue does as it accepts a stoppable event (the push's arming, as in guard_queue)."""
    studio.stops.arm(stop_key(tab, request))


def outcome(run: Callable[[], object]) -> str:
    """What the user sees: the work's status line, or the message of the toast it raised."""
    try:
        shown = run()
    except gr.Error as error:
        return str(error.message)
    return shown if isinstance(shown, str) else repr(shown)


@pytest.mark.parametrize("name", TABS)
def test_a_stop_while_the_work_waits_in_the_queue_ends_it_before_it_runs(studio, tiny_model, name):
    """The click arms the tab's Stop; pressed while the work waits in the queue, it ends the work as it leaves the
    queue: nothing loaded, made or recorded, the tab's "Stopped" message, and no flag left."""
    tab = TABS[name]
    request = gr.Request(session_hash=f"queued-{name}")
    model = str(tiny_model("flux"))
    assert stop_work(studio, tab.key, tab.step, request) == NOTHING_TO_STOP, "nothing asked for yet"
    admitted(studio, tab.key, request)  # the click: the work now waits in the queue
    assert stop_work(studio, tab.key, tab.step, request) == f"Stopping after the current {tab.step}…"
    assert outcome(lambda: tab.work(studio, model, request, ok=True)).startswith(STOPPED.rstrip("."))
    assert studio.models.loads == 0
    for table in ("generations", "comparisons", "characters", "jobs"):
        assert not studio.store.find(table), f"{table}: nothing was made"
    assert stop_work(studio, tab.key, tab.step, request) == NOTHING_TO_STOP and not studio.stops._flags


@pytest.mark.parametrize("name", TABS)
def test_a_refused_click_leaves_no_stop_armed(studio, tiny_model, name):
    """The work takes the flag its click armed before it refuses bad input: nothing stays armed, so a Stop after
    the refusal stops nothing and the next click's work is not taken as already stopped."""
    tab = TABS[name]
    request = gr.Request(session_hash=f"refused-{name}")
    model = str(tiny_model("flux"))
    for _click in range(2):
        admitted(studio, tab.key, request)
        assert tab.refused in outcome(lambda: tab.work(studio, model, request, ok=False)), "refused, not stopped"
        assert not studio.stops._flags
        assert stop_work(studio, tab.key, tab.step, request) == NOTHING_TO_STOP, "nothing waits or runs"


def test_after_a_refused_grid_the_next_grid_runs_in_full(studio, tiny_model):
    """A grid refused at its click, a Stop with nothing to stop, then a good grid: it is made, cell and image."""
    request = gr.Request(session_hash="refused-then-run")
    model = str(tiny_model("flux"))
    admitted(studio, grid.TAB, request)
    with pytest.raises(gr.Error, match="Unknown grid axis"):
        make_grid(studio, model, request, ok=False)
    stop_work(studio, grid.TAB, "step", request)
    admitted(studio, grid.TAB, request)
    image, cells = make_grid(studio, model, request, ok=True)
    assert image.endswith(".png") and len(cells) == 1
    assert studio.store.count("generations", "status = 'completed'") == 1 and not studio.stops._flags


def test_each_stoppable_work_is_marked_with_its_tab_s_stop(studio):
    """The works of the five tabs, and the Image tab's and the Upscale panel's, are marked with the tab whose Stop
    ends them: the queue arms that Stop as it accepts them."""
    from masuka.ui import upscale
    from masuka.ui.app import build_app
    from masuka.ui.common import IMAGE_TAB

    demo = build_app(studio)
    works = {"make": compare.TAB, "make_grid": grid.TAB, "compare_checkpoints": checkpoints.TAB,
             "create_character": characters.TAB, "caption_dataset": datasets.CAPTIONS, "upscale": upscale.PANEL,
             "generate_image": IMAGE_TAB, "edit_image": IMAGE_TAB}
    marked = {(fn.name, getattr(fn.fn, STOP_TAB, None)) for fn in demo.fns.values()}
    assert {(name, tab) for name, tab in marked if tab} == set(works.items())
    assert not {name for name, tab in marked if not tab} & set(works), "every event of those works is marked"


def test_an_image_request_the_api_refuses_takes_its_arm_with_it(studio, tiny_model):
    """The API's /generate_image and /edit_image skip the page's checks: their refusal still takes the arm the queue
    made, so a later Stop does not end the next good request before it starts."""
    from masuka.ui import image
    from masuka.ui.common import IMAGE_TAB

    request = gr.Request(session_hash="api-refused")
    for work in (lambda: list(image.generate_image(studio, "a fox", str(tiny_model("flux")), mask="m.png",
                                                   request=request, progress=quiet)),
                 lambda: list(image.edit_image(studio, "make it red", str(tiny_model("flux")), [], request=request,
                                               progress=quiet))):
        admitted(studio, IMAGE_TAB, request)
        with pytest.raises(gr.Error):
            work()
        assert not studio.stops._flags
        assert stop_work(studio, IMAGE_TAB, "step", request) == NOTHING_TO_STOP


def test_a_request_cancelled_while_it_waits_leaves_no_arm(live_app, tiny_model, monkeypatch):
    """A request cancelled while it still waits in the queue (Gradio's /cancel) is taken out before it starts: its
    arm goes with it, so its session's Stop finds nothing; one that runs keeps its flag."""
    import time

    import httpx

    from masuka.ui.common import IMAGE_TAB

    monkeypatch.setattr("masuka.ui.image.GPU_WAIT_S", 600)  # the first request waits for the GPU we hold
    app = live_app()
    index = next(i for i, fn in app.demo.fns.items() if fn.api_name == "generate_image")
    form = ["a fox", str(tiny_model("flux")), "", 1, 1.0, 64, 64, 1, 1, [], "auto", False, 0.0]

    def join(session: str) -> str:
        answer = httpx.post(app.url + "gradio_api/queue/join", json={
            "data": form, "fn_index": index, "event_data": None, "session_hash": session, "trigger_id": None})
        return answer.json()["event_id"]

    def flags(session: str) -> list:
        return [(len(flag.waiting), flag.running) for flag in app.studio.stops._flags.get(f"image:{session}", [])]

    def wait_for(condition, what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    with app.studio.gpu.hold("another job"):
        join("first")
        wait_for(lambda: flags("first") == [(0, 1)], "the first request never started")
        event = join("second")
        wait_for(lambda: flags("second") == [(1, 0)], "the second request was never armed")
        cancelled = httpx.post(app.url + "gradio_api/cancel", json={
            "session_hash": "second", "fn_index": index, "event_id": event})
        assert cancelled.status_code == 200
        wait_for(lambda: flags("second") == [], "the cancelled request's arm stayed")
        assert flags("first") == [(0, 1)]
        assert stop_work(app.studio, IMAGE_TAB, "step", gr.Request(session_hash="second")) == NOTHING_TO_STOP
