"""In headless Chromium: Reuse parameters fills the Image form and keeps the reused steps and size."""

from __future__ import annotations

import pytest

from tests.chromium import chromium

CHROMIUM = chromium()
pytestmark = pytest.mark.browser


def test_reuse_fills_the_image_tab(live_app):
    from playwright.sync_api import sync_playwright

    app = live_app()
    app.studio.store.insert("generations", {"kind": "image", "status": "completed", "prompt": "a castle",
                                            "negative_prompt": "fog", "model": "sd35-medium", "seed": 77, "steps": 12,
                                            "guidance": 6.5, "width": 768, "height": 512, "loras": []})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless=new", "--no-sandbox",
                                                                             "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app.url)
        page.get_by_role("tab", name="History").first.click(timeout=30_000)
        key = page.get_by_label("Entry (click a row or an image)")
        key.fill("g1")
        key.press("Enter")
        page.get_by_text("g1 · image · completed").wait_for(timeout=15_000)
        page.get_by_role("button", name="Reuse parameters").click()
        prompt = page.get_by_label("Prompt").first
        page.wait_for_function("() => [...document.querySelectorAll('textarea')].some(t => t.value === 'a castle')",
                               timeout=15_000)
        assert prompt.is_visible()  # the Image tab is shown
        page.wait_for_timeout(1000)  # let any follow-up events settle: the reused values must stay
        assert page.get_by_label("Steps").first.input_value() == "12"
        assert page.get_by_label("Width").first.input_value() == "768"
        assert page.get_by_label("Seed (-1 = random)").input_value() == "77"
        assert page.get_by_label("Model").first.input_value() == "Stable Diffusion 3.5 Medium"
        browser.close()
