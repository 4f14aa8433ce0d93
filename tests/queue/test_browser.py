"""In headless Chromium: Add to queue on the Image tab, the job in the Queue tab, its images, Pause all; then a
blind A/B pair judged in the Compare tab. Both on one loaded page (a page load costs seconds of Chromium's CPU);
each part is a function named for what it checks."""

from __future__ import annotations

import pytest

from tests.chromium import chromium

chromium()  # skips this module without it, outside CI
pytestmark = pytest.mark.browser


def add_to_queue_then_watch_it_finish_in_the_queue_tab(page, app, model) -> None:
    """The page as it opened, the studio with no job and no generation."""
    page.get_by_label("Model").first.fill(str(model))
    page.get_by_label("Model").first.press("Enter")
    page.get_by_label("Width").fill("64")
    page.get_by_label("Height").fill("64")
    page.get_by_label("Prompt", exact=True).fill("a {red|blue} lighthouse")
    page.get_by_role("button", name="Add to queue").click()
    page.get_by_test_id("toast-text").get_by_text("Queued job 1.").wait_for(timeout=30_000)  # said on the Image tab
    page.get_by_role("tab", name="Queue").click()
    page.get_by_role("tabpanel").get_by_text("Queued job 1.").wait_for(timeout=30_000)
    page.get_by_text("completed", exact=True).locator("visible=true").first.wait_for(timeout=120_000)
    page.get_by_text("a {red|blue} lighthouse", exact=True).locator("visible=true").first.click()
    page.locator("img[src*='gradio_api/file']").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Pause all mine").click()
    page.get_by_text("0 jobs paused.").wait_for(timeout=30_000)
    rows = app.studio.store.find("generations", order_by="id")
    assert [r["prompt"] for r in rows] == ["a {red|blue} lighthouse"], "queued as Generate would run it"


def judging_a_blind_pair_in_the_compare_tab(page, app) -> None:
    """The pair's images and the test are made here, after the page opened (the tab's ↻ lists them)."""
    from PIL import Image

    store, folder = app.studio.store, app.studio.config.outputs_dir / "local" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for name, colour in (("a.png", "red"), ("b.png", "blue")):
        Image.new("RGB", (64, 64), colour).save(folder / name)
        ids.append(store.insert("generations", {"kind": "image", "status": "completed", "prompt": "a fox", "seed": 1,
                                                "output_path": f"outputs/local/images/{name}"}))
    test = store.insert("comparisons", {"owner": "local", "kind": "ab", "title": "style vs no LoRA",
                                        "params": {"sides": {"a": "style:1", "b": "no LoRA"}},
                                        "state": {"pairs": [{"prompt": "a fox", "seed": 1, "a": ids[0], "b": ids[1],
                                                             "left": "b", "choice": None}]}})
    images = store.count("generations")
    page.get_by_role("tab", name="Compare").click(timeout=30_000)
    page.get_by_role("button", name="↻").locator("visible=true").first.click()
    page.get_by_label("A/B test").click()
    page.get_by_role("option", name=f"{test}: style vs no LoRA").click()
    page.get_by_role("button", name="Load").click()
    page.get_by_text("Pair 1 (1 left)").wait_for(timeout=30_000)
    assert page.get_by_text("1 of 1 pairs left to judge").count() == 1, "no side or count before the end"
    page.get_by_role("button", name="Left is better").click()  # left is side B here
    page.get_by_text("A = style:1, B = no LoRA: A 0, B 1, ties 0, undecided 0").wait_for(timeout=30_000)
    assert page.get_by_text("Every pair is judged.", exact=True).count() == 1
    assert store.get("comparisons", test)["state"]["pairs"][0]["choice"] == "b"
    page.get_by_role("button", name="Delete test").click()
    page.get_by_text(f"A/B test {test} deleted; its images stay in History.").wait_for(timeout=30_000)
    assert store.get("comparisons", test) is None and store.count("generations") == images
    assert all(store.get("generations", row_id) for row_id in ids)
    assert not (app.studio.config.outputs_dir / "local" / "compare" / str(test)).exists()


def test_the_queue_and_compare_tabs_on_one_page(live_app, tiny_model, page):
    app = live_app()
    page.goto(app.url)
    add_to_queue_then_watch_it_finish_in_the_queue_tab(page, app, tiny_model("flux"))
    judging_a_blind_pair_in_the_compare_tab(page, app)
