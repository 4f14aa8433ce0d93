"""In headless Chromium: an entry's summary shows its prompt as stored, not read as Markdown, HTML or maths."""

from __future__ import annotations

import pytest

from tests.chromium import chromium

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser

PROMPT = r"# a **bold** <b>fox</b> _in_ [snow](http://x.y) `code` ~~gone~~ & &amp; \ $$x^2$$ 50% a_b <img src=x>"


def test_the_summary_shows_the_prompt_as_stored(live_app, page):
    app = live_app()
    app.studio.store.insert("generations", {"kind": "image", "status": "completed", "prompt": PROMPT,
                                            "model": "fake/tiny_model"})
    page.goto(app.url)
    page.get_by_role("tab", name="History").first.click(timeout=30_000)
    key = page.get_by_label("Entry (click a row or an image)")
    key.fill("g1")
    key.press("Enter")
    shown = page.get_by_text("Prompt:").locator("xpath=..")
    shown.wait_for(timeout=15_000)
    assert shown.inner_text() == f"Prompt: {PROMPT}"
    assert not page.locator(".prose strong", has_text="bold").count() and not page.locator(".prose img").count()
