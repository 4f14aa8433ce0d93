"""In headless Chromium: deleting in the Datasets tab takes only what the page shows and asked about."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.chromium import chromium
from tests.datasets import corpus

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def test_another_dataset_picked_closes_the_confirmation_and_clears_the_selection(live_app, page, tmp_path):
    from masuka.datasets.adding import add_images
    from masuka.datasets.library import create_dataset
    from masuka.store import LOCAL_USER

    app = live_app()
    for name, count in (("dsa", 1), ("dsb", 2)):
        dataset = create_dataset(app.studio, name, LOCAL_USER, "sks")
        add_images(app.studio, dataset["id"], LOCAL_USER,
                   [corpus.photo(tmp_path / f"{name}{i}.jpg", 200 + 10 * count + i, size=(400, 300))
                    for i in range(count)])
    page.goto(app.url)
    page.get_by_role("tab", name="Datasets").first.click(timeout=30_000)
    picker = page.get_by_label("Dataset", exact=True)

    def pick(name: str) -> None:
        picker.click()
        page.get_by_role("option", name=re.compile(rf"^{name} \(")).click()
        expect(page.get_by_text(re.compile(r"page 1 of 1"))).to_be_visible(timeout=15_000)

    pick("dsb")
    page.locator("[role=gridcell]", has_text="dsb0.jpg").last.click()
    selected = page.get_by_label("Selected image id")
    expect(selected).not_to_have_value("", timeout=15_000)
    page.get_by_text("Delete dataset", exact=True).click()  # the accordion
    page.get_by_role("button", name="Delete this dataset…").click()
    really = page.get_by_role("button", name="Yes, delete it and its files")
    expect(page.get_by_text("Delete dsb with its 2 image(s)")).to_be_visible(timeout=15_000)
    pick("dsa")
    expect(really).to_be_hidden(timeout=15_000)
    expect(selected).to_have_value("", timeout=15_000)

    pick("dsb")
    page.locator("[role=gridcell]", has_text="dsb1.jpg").last.click()
    expect(selected).not_to_have_value("", timeout=15_000)  # the pick has come back from the server
    page.get_by_role("button", name="Delete selected image").click()
    expect(page.get_by_text(re.compile(r"Deleted image #\d+"))).to_be_visible(timeout=15_000)
    picker.click()
    expect(page.get_by_role("option", name="dsb (1 images)")).to_be_visible(timeout=15_000)
    assert sorted(row["name"] for row in app.studio.store.find("datasets")) == ["dsa", "dsb"]
