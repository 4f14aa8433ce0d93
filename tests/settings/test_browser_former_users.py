"""In headless Chromium: an admin forgets a user taken off the sign-in list from Settings → Storage, confirming
first; the list then no longer offers them."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.chromium import chromium
from tests.test_browser_sign_in import sign_in

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def test_an_admin_forgets_a_former_user_on_the_page(live_app, page, tmp_path):
    from masuka.config import Config
    from masuka.datasets.library import create_dataset
    from masuka.studio import Studio

    data = tmp_path / "data"
    before = Studio.open(Config.from_env(data_dir=data, auth="admin:pw-admin,alice:pw-alice"))
    try:
        create_dataset(before, "faces", "alice")
    finally:
        before.close()
    app = live_app(auth="admin:pw-admin", data_dir=data)  # alice taken off the list
    page.goto(app.url)
    sign_in(page, "admin", "pw-admin")
    page.get_by_role("tab", name="Settings").first.click(timeout=30_000)
    page.get_by_role("tab", name="Storage").click()
    page.get_by_text("Former users", exact=True).click()  # the accordion
    page.get_by_label("Former user", exact=True).click()
    page.get_by_role("option", name="alice (1 item(s))").click()
    page.get_by_role("button", name="Forget this user…").click()
    expect(page.get_by_text("Delete everything alice owns (1 item(s))")).to_be_visible(timeout=15_000)
    page.get_by_role("button", name="Yes, delete everything they own").click()
    expect(page.get_by_text("Forgot alice: deleted 1 dataset.")).to_be_visible(timeout=15_000)
    expect(page.get_by_role("button", name="Yes, delete everything they own")).to_be_hidden(timeout=15_000)
    assert app.studio.store.count("datasets") == 0
    page.get_by_label("Former user", exact=True).click()
    expect(page.get_by_role("option", name="alice (1 item(s))")).to_have_count(0)
