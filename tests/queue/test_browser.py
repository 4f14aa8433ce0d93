"""In headless Chromium: Add to queue on the Image tab, the job in the Queue tab, its images, Pause all."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.browser


@pytest.mark.skipif(CHROMIUM is None, reason="needs the system chromium package")
def test_add_to_queue_then_watch_it_finish_in_the_queue_tab(live_app, tiny_model):
    from playwright.sync_api import sync_playwright

    app = live_app()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless=new", "--no-sandbox",
                                                                             "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app.url)
        page.get_by_label("Model").first.fill(str(tiny_model("flux")))
        page.get_by_label("Model").first.press("Enter")
        page.get_by_label("Width").fill("64")
        page.get_by_label("Height").fill("64")
        page.get_by_label("Prompt", exact=True).fill("a {red|blue} lighthouse")
        page.get_by_role("button", name="Add to queue").click()
        page.get_by_role("tab", name="Queue").click()
        page.get_by_text("Queued job 1.").wait_for(timeout=30_000)
        page.get_by_text("completed", exact=True).locator("visible=true").first.wait_for(timeout=120_000)
        page.get_by_text("a {red|blue} lighthouse", exact=True).locator("visible=true").first.click()
        page.locator("img[src*='gradio_api/file']").first.wait_for(timeout=30_000)
        assert page.locator("img[src*='gradio_api/file']").count() >= 2  # both expansions, in the results
        page.get_by_role("button", name="Pause all mine").click()
        page.get_by_text("0 jobs paused.").wait_for(timeout=30_000)
        browser.close()
    rows = app.studio.store.find("generations", order_by="id")
    assert [r["prompt"] for r in rows] == ["a red lighthouse", "a blue lighthouse"]
