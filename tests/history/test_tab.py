"""The History tab's own text handling: an entry's summary shows its prompt as stored, and the export selection
takes keys however they are separated."""

from __future__ import annotations

import json
import zipfile

import gradio as gr
import pytest

from masuka.ui import history
from tests.markdown_text import shown_text

PROMPTS = ["# a **bold** <b>fox</b> _in_ [snow](http://x.y) `code` ~~gone~~ & &amp; \\ $$x^2$$ 50% a_b",
           "- a list?\n> a quote\n1) one\n| a | b |\n|---|---|", "line one\n\nline three   spaced",
           # setext headings, rules, lists and numbered lines, a fence, a reference definition
           "a heading?\n===\nanother\n---\n***\n_ _ _\n+ plus\n* star\n1986. a year\n2) two\n~~~\n[x]: http://x.y",
           # indented code, where escapes would show: four spaces, a tab, after a blank line; other line ends
           "a paragraph\n\n    # indented *four*\n\t> tabbed\n  two\r\n    windows\rold mac"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_the_summary_shows_the_prompt_and_title_as_stored(studio, prompt):
    """The summary rendered the prompt as Markdown and HTML, so what it showed differed from what was stored."""
    asking = gr.Request(username="local")
    made = studio.store.insert("generations", {"kind": "image", "status": "failed", "prompt": prompt,
                                               "model": "fake/tiny_model", "error": "**boom** <i>"})
    job = studio.store.insert("jobs", {"kind": "train", "status": "completed", "title": prompt})
    for key in (f"g{made}", f"j{job}"):
        summary = history.show(studio, key, asking)[2]
        stored = prompt.replace("\r\n", "\n").replace("\r", "\n").replace("\n\n", "\n")
        assert stored in shown_text(summary).replace("\n\n", "\n")
    failed = shown_text(history.show(studio, f"g{made}", asking)[2])
    assert "model fake/tiny_model" in failed and "Error: **boom** <i>" in failed


def test_the_summary_box_reads_no_formula(studio):
    from masuka.ui.app import build_app

    entry = next(fn for fn in build_app(studio).fns.values() if fn.api_name == "history_entry")
    assert entry.outputs[2].latex_delimiters == []


def test_the_export_selection_takes_keys_separated_by_commas_semicolons_or_spaces(studio):
    asking = gr.Request(username="local")
    keys = [f"g{studio.store.insert('generations', {'kind': 'image', 'status': 'completed', 'prompt': p})}"
            for p in ("one", "two", "three")]
    assert history.add_key(f"{keys[0]} {keys[1]}", keys[2]) == ", ".join(keys)
    assert history.add_key(f"{keys[0]};{keys[1]}\n", f" {keys[0]} ") == f"{keys[0]}, {keys[1]}"
    assert history.add_keys(f"{keys[0]}\t{keys[1]}", [[keys[1]], [keys[2]]]) == ", ".join(keys)
    with zipfile.ZipFile(history.export_selection(studio, f" {keys[0]}  {keys[2]} ;{keys[1]},", asking)) as zipped:
        exported = [json.loads(line)["id"] for line in zipped.read("metadata.jsonl").splitlines()]
    assert [f"g{number}" for number in exported] == [keys[0], keys[2], keys[1]]


def test_a_delete_offers_the_filters_only_what_is_left(studio):
    """The filters offer only values that occur in the user's history: a delete works their choices out again
    after the page reloads."""
    from masuka.ui.app import build_app

    demo = build_app(studio)
    chain = [next(fn for fn in demo.fns.values() if fn.api_name == "history_delete")]
    while after := [fn for fn in demo.fns.values() if fn.trigger_after == chain[-1]._id]:
        chain.extend(after)
    last = chain[-1]
    assert last.fn.__name__ == "choices" and last.trigger_only_on_success and last.api_visibility == "private"
    assert [block.label for block in last.outputs] == ["Kind", "Model", "LoRA", "Status"]


def test_an_image_is_never_started_before_it_was_created(studio, tiny_model, monkeypatch):
    """An image row carries its own creation time, the time it started: a row stamped by the store as it is
    written (here a second later, as a slow disk or a busy lock can make it) would read started before created."""
    from datetime import UTC, datetime, timedelta

    from masuka import store
    from masuka.image.generate import ImageRequest, generate_images

    monkeypatch.setattr(store, "now", lambda: (datetime.now(UTC) + timedelta(seconds=1)).isoformat(
        timespec="milliseconds"))
    request = ImageRequest(prompt="a fox", model=str(tiny_model("flux")), steps=1, width=64, height=64, seed=1)
    result = generate_images(studio, request, allow_any_path=True)[0]
    row = studio.store.get("generations", result.id)
    assert row["created_at"] == row["started_at"] <= row["finished_at"]
