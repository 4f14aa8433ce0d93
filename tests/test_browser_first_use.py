"""What a newcomer sees in the first hour, in headless Chromium: refusals that leave the page as it was,
reasons shown where the user looks, empty boxes that are empty, a quiet console."""

from __future__ import annotations

from tests.test_browser import page  # noqa: F401  (the fixture; skips this module without chromium)

import pytest

pytestmark = pytest.mark.browser


def test_a_refused_size_leaves_the_gallery_as_it_was(live_app, tiny_model, page):  # noqa: F811
    app = live_app()
    page.goto(app.url)
    page.get_by_label("Model").first.wait_for(timeout=30_000)
    page.get_by_label("Model").fill(str(tiny_model("flux")))
    page.get_by_label("Model").press("Enter")
    page.get_by_label("Width").fill("64")
    page.get_by_label("Height").fill("64")
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Done: 1 image(s)").wait_for(timeout=60_000)
    seeds = page.get_by_label("Seeds used").input_value()
    page.get_by_label("Width").fill("77")
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("The width must be a multiple of 16").first.wait_for(timeout=15_000)
    assert page.get_by_text("Done: 1 image(s)").is_visible()
    assert page.locator("img[src*='gradio_api/file']").count() >= 1
    assert page.get_by_label("Seeds used").input_value() == seeds
    assert page.locator("main").get_by_text("Error", exact=True).count() == 0
