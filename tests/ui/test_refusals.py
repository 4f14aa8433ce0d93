"""A refused action shows its reason without covering the tab's tables, galleries, pictures or the form it fills
(Read parameters, History's Reuse): these events name their message box as the place of their progress.

Gradio marks the progress targets of a failed event (its outputs unless ``show_progress_on`` names others) with an
"Error" badge; these events name their message box, so the tables and boxes they fill keep what they showed. An
event outside Gradio's queue shows no toast for its refusal, so a refusable event is queued.
"""

from __future__ import annotations

import logging

import gradio as gr
import pytest

#: the events a refusal can end -> the label of the box they mark
REFUSABLE = {**dict.fromkeys(("download_model", "delete_model", "stop_download", "import_lora", "import_lora_hub",
                              "import_lora_civitai", "delete_lora", "save_key", "create_api_token",
                              "revoke_api_token", "reuse"), "Message"),
             **dict.fromkeys(("create_character", "reject_character_view", "regenerate_character_view",
                              "add_character_photos", "delete_character", "create_dataset", "add_images",
                              "delete_dataset", "upscale_image"), "Status"),
             **dict.fromkeys(("history", "load", "grid", "compare_checkpoints", "clean_leftovers", "clean_tmp"),
                             "Message"),
             **dict.fromkeys(("make", "show_1", "forget", "judge", "judge_1", "judge_2"), "Tally"),
             "read_parameters": "Parameters read", "history_entry": "Summary"}


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    from masuka.config import Config
    from masuka.studio import Studio
    from masuka.ui.app import build_app

    studio = Studio.open(Config.from_env(data_dir=tmp_path_factory.mktemp("refusals") / "data", auth=""))
    try:
        yield {fn.api_name or fn.name: fn for fn in build_app(studio).fns.values()
               if (fn.api_name or fn.name) in REFUSABLE}
    finally:
        studio.close()


@pytest.mark.parametrize("name", REFUSABLE)
def test_a_refusal_marks_only_the_message_box(events, name):
    fn = events[name]
    marked = fn.show_progress_on or fn.outputs
    assert [(type(target), target.label) for target in marked] == [(gr.Markdown, REFUSABLE[name])]
    assert fn.queue, "outside the queue a refusal shows no toast"


def test_a_refusal_s_toast_shows_angle_brackets_escaped(studio):
    """A ``gr.Error``'s toast renders HTML, where ``g<number>`` would vanish: the refusals the handlers raise carry
    the domain message escaped (once), as a failure's do; an empty History entry asks for one to be picked."""
    from masuka.ui import datasets, history

    with pytest.raises(gr.Error) as raised:
        history.reuse(studio, {}, [], False, "g9x")
    assert raised.value.message == "'g9x' is not a history entry (expected g&lt;number&gt; or j&lt;number&gt;)."
    with pytest.raises(gr.Error) as raised:
        datasets.create_dataset(studio, "pets", "cat/dog")
    assert "(10_&lt;trigger&gt;)" in raised.value.message and '" &lt; &gt; |' in raised.value.message
    assert "&amp;" not in raised.value.message
    for handler in (lambda key: history.reuse(studio, {}, [], False, key), lambda key: history.remove(studio, key)):
        with pytest.raises(gr.Error) as raised:
            handler(" ")
        assert raised.value.message.startswith("Pick an entry first") and "g&lt;number&gt;" in raised.value.message


def test_an_api_client_reads_a_refusal_as_text(live_app):
    """``gradio_client`` marks its requests (``x-gradio-user: api``) and reads a refusal as text: it gets the message
    unescaped, from a handler and from the app's own check of the inputs; the page's toast gets it escaped (as the
    test above; shown whole in Chromium: tests/history/test_browser_reuse.py), as does a plain HTTP caller."""
    import httpx
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    app = live_app()
    client = Client(app.url, verbose=False)
    with pytest.raises(AppError) as raised:
        client.predict("g9x", api_name="/history_entry")
    assert str(raised.value) == "'g9x' is not a history entry (expected g<number> or j<number>)."
    with pytest.raises(AppError) as raised:
        client.predict(prompt="a fox", model="flux-dev", memory_plan="a<b>&c", api_name="/generate_image")
    assert "(got 'a<b>&c')" in str(raised.value)
    with httpx.Client(base_url=app.url, timeout=30) as http:  # Gradio's HTTP API, as curl calls it
        event = http.post("/gradio_api/call/history_entry", json={"data": ["g9x"]}).json()["event_id"]
        answer = http.get(f"/gradio_api/call/history_entry/{event}").text
    assert "expected g&lt;number&gt; or j&lt;number&gt;" in answer, answer


def test_a_refusal_or_failure_that_repeats_a_100000_character_name_is_short(studio, caplog):
    """A toast and its log line keep what was wrong, with the middle of the long name left out."""
    from masuka.ui import datasets
    from masuka.ui.common import failure

    caplog.set_level(logging.WARNING, logger="masuka.ui.common")
    with pytest.raises(gr.Error) as raised:
        datasets.export_dataset(studio, "x" * 100_000)
    message = raised.value.message
    assert len(message) <= 1000 and message.startswith("No dataset 'xxx") and "characters left out" in message
    assert message.endswith("x': create it first (Datasets tab or `dataset create`).")
    assert caplog.records and all(len(record.getMessage()) < 1100 for record in caplog.records)
    failed = failure("Generation", ValueError(f"bad value {'y' * 100_000!r}"), "Images already made are kept.")
    assert isinstance(failed, gr.Error) and len(failed.message) < 1100
    assert failed.message.startswith("Generation failed: ValueError: bad value 'yyy")
    assert failed.message.endswith("y'. Images already made are kept.")
