"""Settings → Wildcards: list, open, save and delete the ``__name__`` files prompt batches expand."""

from __future__ import annotations

import gradio as gr

from masuka.image.wildcards import delete_wildcard, list_wildcards, read_wildcard, save_wildcard
from masuka.studio import Studio
from masuka.ui.common import UIContext, bind, friendly, user_of

COLUMNS = ["name", "values"]


def build(ctx: UIContext, tab: gr.Tab) -> tuple[gr.Button, gr.Button]:
    """The body of Settings' Wildcards ``tab`` (listed each time it is opened); returns its Save and Delete
    buttons (only an admin changes wildcards; anyone opens them)."""
    studio = ctx.studio
    gr.Markdown("`__name__` in a prompt takes each line of the wildcard *name* in turn (or random ones). Shared by "
                "every user: when several people share the studio, only an admin changes them.")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, label="Wildcards", show_label=False)
    with gr.Row():
        name = gr.Textbox(label="Name (letters, digits, _ and -; / for a sub-folder)", scale=3)
        load = gr.Button("Open", scale=0)
        save = gr.Button("Save", variant="primary", scale=0)
        delete = gr.Button("Delete", variant="stop", scale=0)
        refresh = gr.Button("↻", scale=0, min_width=40)
    values = gr.Textbox(label="Values, one a line (# starts a comment)", lines=8)
    message = gr.Markdown(label="Message")

    private = {"api_visibility": "private"}
    listed = bind(wildcards, studio)
    refresh.click(listed, None, table, api_name="wildcards")
    load.click(bind(open_wildcard, studio), name, values, api_name="wildcard")
    save.click(bind(write_wildcard, studio), [name, values], message, api_name="save_wildcard").then(
        listed, None, table, **private)
    delete.click(bind(remove_wildcard, studio), name, message, api_name="delete_wildcard").then(
        listed, None, table, **private)
    table.select(bind(pick, studio), None, [name, values], **private)
    tab.select(listed, None, table, **private)
    return save, delete


def wildcards(studio: Studio) -> list[list]:
    """Every wildcard with its number of values."""
    return [[row["name"], row["values"]] for row in list_wildcards(studio)]


@friendly
def open_wildcard(studio: Studio, wildcard: str) -> str:
    """The values of a wildcard, as saved."""
    return read_wildcard(studio, wildcard)


@friendly
def write_wildcard(studio: Studio, wildcard: str, text: str, request: gr.Request = None) -> str:
    """Create or replace a wildcard with these values (one a line)."""
    count = save_wildcard(studio, user_of(request), wildcard, text)
    return f"Saved `__{wildcard.strip().strip('_')}__` with {count} value{'s' * (count != 1)}."


@friendly
def remove_wildcard(studio: Studio, wildcard: str, request: gr.Request = None) -> str:
    """Delete a wildcard."""
    delete_wildcard(studio, user_of(request), wildcard)
    return f"Deleted `__{wildcard.strip().strip('_')}__`."


def pick(studio: Studio, evt: gr.SelectData):
    """A clicked row: the wildcard's name and values."""
    chosen = evt.row_value[0]
    return chosen, read_wildcard(studio, chosen)
