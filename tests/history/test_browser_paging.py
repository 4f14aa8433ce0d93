"""In headless Chromium: a page past the end shows (and says) the last one, and a new search starts at page 1."""

from __future__ import annotations

import pytest

from tests.chromium import chromium
from tests.history.test_paging import fill

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def test_a_new_search_from_a_far_page_starts_at_page_1(live_app, page):
    from playwright.sync_api import expect

    app = live_app()
    fill(app.studio, castles=60)
    page.goto(app.url)
    page.get_by_role("tab", name="History").first.click(timeout=30_000)
    label = page.get_by_text("entries · page")
    expect(label).to_have_text("100 entries · page 1 of 3", timeout=30_000)
    number = page.get_by_label("Page", exact=True)
    number.fill("99")
    number.press("Enter")
    expect(label).to_have_text("100 entries · page 3 of 3", timeout=30_000)
    expect(number).to_have_value("3")
    number.fill("42")
    page.get_by_role("button", name="Search / refresh").click()  # the public "history" event
    expect(number).to_have_value("3", timeout=30_000)
    search = page.get_by_label("Search prompts")
    search.fill("castle neon")
    expect(number).to_have_value("1", timeout=30_000)
    search.press("Enter")
    expect(label).to_have_text("60 entries · page 1 of 2", timeout=30_000)
