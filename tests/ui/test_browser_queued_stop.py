"""In headless Chromium: a Stop pressed while a tab's work waits in Gradio's queue ends it before it runs."""

from __future__ import annotations

import re
import time

import pytest

from tests.chromium import chromium

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Wait until ``condition()`` holds (a wait, not a timing check: it fails only when it never holds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.05)


def test_a_grid_stopped_while_it_waits_in_the_queue_never_runs(live_app, tiny_model, page):
    """Another grid holds the GPU's queue slot; Make grid, then Stop: once the slot is free the page's grid ends
    at once with the Stopped message, nothing of it made, and nothing left armed."""
    from gradio_client import Client
    from gradio_client.utils import Status

    app = live_app()
    model = str(tiny_model("flux"))
    page.goto(app.url)
    page.get_by_label("Model").fill(model)
    page.get_by_label("Model").press("Enter")
    page.get_by_label("Width").fill("64")
    page.get_by_label("Height").fill("64")
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
    page.get_by_role("tab", name="Grid").click()
    page.get_by_label("X axis").fill("seed=5,6")
    with app.studio.gpu.hold("another job"):  # the first grid takes the queue slot and waits for the GPU
        first = Client(app.url, verbose=False).submit("a red fox", model, "", 1, 1.0, 64, 64, 1, 1, [], "auto",
                                                      False, 0.0, "seed=1", api_name="/grid")
        wait_for(lambda: first.status().code == Status.PROCESSING, "the first grid runs")
        running = set(app.studio.stops._flags)
        page.get_by_role("button", name="Make grid").click()
        wait_for(lambda: set(app.studio.stops._flags) - running, "the click armed the page's Stop")
        (key,) = set(app.studio.stops._flags) - running
        page.locator("button:visible", has_text=re.compile(r"^\s*Stop\s*$")).click()
        wait_for(lambda: app.studio.stops._flags[key][0].event.is_set(), "the Stop reached the waiting grid")
    first.result()
    page.get_by_text("Stopped by the user before it started.").first.wait_for(timeout=60_000)
    made = app.studio.store.find("generations")
    assert [row["seed"] for row in made] == [1], "only the first grid's cell"
    wait_for(lambda: not app.studio.stops._flags, "no flag left")
