"""History paging: a page past the end (a new search from a far page, a deletion, a typed number) shows the
last page and says which, in the page label and the Page box. A fraction or a page below 1 is refused, never
rounded."""

from __future__ import annotations

import gradio as gr
import pytest
from gradio_client import Client

from masuka.history.browse import Filters, browse
from masuka.store import LOCAL_USER


def fill(studio, castles: int = 30) -> None:
    """100 generations: ``castles`` "neon castle" prompts, the others "red fox" ones."""
    studio.store.insert_many("generations", [
        {"owner": LOCAL_USER, "kind": "image", "status": "completed", "model": "sdxl",
         "prompt": f"{'neon castle' if i < castles else 'red fox'} {i}"} for i in range(100)])


def test_a_page_past_the_end_is_the_last_page(studio):
    fill(studio)
    searched = browse(studio, LOCAL_USER, False, Filters(text="castle neon"), page=15, per_page=24)
    assert (searched.total, searched.page, searched.pages, len(searched.entries)) == (30, 2, 2, 6)
    assert {e["key"] for e in searched.entries} == \
        {e["key"] for e in browse(studio, LOCAL_USER, False, Filters(text="neon castle"), page=2, per_page=24).entries}
    everything = browse(studio, LOCAL_USER, False, page=99, per_page=24)
    assert (everything.page, everything.pages, len(everything.entries)) == (5, 5, 4)
    nothing = browse(studio, LOCAL_USER, False, Filters(text="dragon"), page=3)
    assert (nothing.total, nothing.page, nothing.pages, nothing.entries) == (0, 1, 1, [])


def test_the_history_tab_writes_the_page_shown_back_to_the_page_box(studio):
    from masuka.ui import history

    fill(studio)
    gallery, rows, keys, page = history.load(studio, 15, "castle neon", per_page=24)
    assert gallery.label == "30 entries · page 2 of 2" and page == 2 and len(rows) == 6 and keys == []  # no files


def test_a_page_box_refuses_a_fraction_or_a_page_below_1_naming_the_page(live_app):
    """The History tab's Page box feeds the public "history" event; the Datasets tab's makes the same check."""
    from masuka.datasets.library import create_dataset
    from masuka.ui import datasets

    app = live_app()
    fill(app.studio)
    client = Client(app.url, verbose=False)
    search = ("", [], "", "", "", "", "", 24)
    for page, refusal in ((1.6, "Page must be a whole number (got 1.6)."),
                          (0, "Page must be between 1 and 1000000000 (got 0).")):
        with pytest.raises(Exception) as refused:
            client.predict(page, *search, api_name="/history")
        assert refusal in str(refused.value)
    _gallery, table = client.predict(5.0, *search, api_name="/history")  # a whole number, as a float: page 5
    assert len(table["data"]) == 100 - 4 * 24
    create_dataset(app.studio, "cats", LOCAL_USER, "", None, {})
    with pytest.raises(gr.Error, match=r"Page must be a whole number \(got 1.6\)"):
        datasets.view(app.studio, "cats", 1.6, 24)
    assert datasets.view(app.studio, "cats", 2.0, 24)[4] == "page 1 of 1"
