"""Work a request hands to a thread of MASUKA's own runs in that request's context variables: Gradio's request
(``gradio.context.LocalContext.request``) reaches it as it reaches the handler, which is what ``spaces.GPU`` reads on
ZeroGPU to charge a GPU call to the visitor's quota (tests/test_zerogpu.py drives it through the live app)."""

from __future__ import annotations

import threading
from contextvars import ContextVar

from masuka.ui.workers import Workers

VISITOR: ContextVar[str | None] = ContextVar("visitor", default=None)


def test_a_generation_thread_runs_each_call_in_its_submitter_s_context():
    """Each call sees its own submitter's values, also on a reused thread, and a value set after the submit (Gradio
    clears its request once the handler yields) does not reach a call already handed over."""
    workers = Workers("test-context")
    seen, done = [], threading.Event()
    for visitor in ("ana", "ben"):
        token = VISITOR.set(visitor)
        ran = threading.Event()
        workers.submit(lambda ran=ran: (seen.append((VISITOR.get(), threading.current_thread().name)), ran.set()))
        VISITOR.reset(token)
        assert ran.wait(10)
    release, started = threading.Event(), threading.Event()
    token = VISITOR.set("cleo")
    workers.submit(lambda: (started.set(), release.wait(10), seen.append((VISITOR.get(), "late")), done.set()))
    assert started.wait(10)
    VISITOR.set(None)  # the submitting side moves on
    release.set()
    assert done.wait(10)
    VISITOR.reset(token)
    assert [visitor for visitor, _thread in seen] == ["ana", "ben", "cleo"]
    assert VISITOR.get() is None, "the worker's values never leak back"


def test_a_job_started_now_runs_in_its_submitter_s_context_and_a_lane_s_does_not(studio):
    runner = studio.runner()
    seen: dict[str, str | None] = {}
    token = VISITOR.set("ana")
    try:
        now = runner.create("test")
        runner.submit(now, lambda ctx: seen.update(now=VISITOR.get()))
        queued = runner.create("test")
        runner.submit(queued, lambda ctx: seen.update(lane=VISITOR.get()), lane="test-lane")
    finally:
        VISITOR.reset(token)
    assert runner.wait(now, timeout=30).status == "completed"
    assert runner.wait(queued, timeout=30).status == "completed"
    assert seen == {"now": "ana", "lane": None}, "a lane's job runs when its turn comes: no request goes with it"
