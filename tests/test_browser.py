"""What a person sees: the page in headless Chromium (the system browser, driven by Playwright)."""

from __future__ import annotations

import pytest

from tests.chromium import chromium

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def generate_in_page(page, model) -> None:
    """Pick ``model``, a 64 px size and a prompt on the Image tab, press Generate and wait for the image."""
    page.get_by_label("Model").fill(str(model))
    page.get_by_label("Model").press("Enter")
    page.get_by_label("Width").fill("64")
    page.get_by_label("Height").fill("64")
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("Done: 1 image(s)").wait_for(timeout=60_000)


def test_tabs_render_a_prompt_becomes_an_image_and_a_refused_size_leaves_the_gallery_as_it_was(live_app, tiny_model,
                                                                                               page):
    """One page load: the tabs, an image generated, then a refused size (a newcomer's first hour) that leaves the
    gallery, the seeds and the page as they were, and the image in History."""
    app = live_app()
    page.goto(app.url)
    tabs = page.get_by_role("tab")
    tabs.first.wait_for(timeout=30_000)
    names = [t.strip() for t in tabs.all_inner_texts()]
    assert "Image" in names and "History" in names
    generate_in_page(page, tiny_model("flux"))
    assert page.locator("img[src*='gradio_api/file']").count() >= 1
    assert app.studio.store.count("generations", "status = 'completed'") == 1

    seeds = page.get_by_label("Seeds used").input_value()
    page.get_by_label("Width").fill("77")
    page.get_by_role("button", name="Generate").click()
    page.get_by_text("The width must be a multiple of 16").first.wait_for(timeout=15_000)
    assert page.get_by_text("Done: 1 image(s)").is_visible()
    assert page.locator("img[src*='gradio_api/file']").count() >= 1
    assert page.get_by_label("Seeds used").input_value() == seeds
    assert page.locator("main").get_by_text("Error", exact=True).count() == 0

    page.get_by_role("tab", name="History").click()
    page.locator("text=a lighthouse at dusk >> visible=true").first.wait_for(timeout=30_000)
