"""History tab: everything made and run, filtered and searched, one entry in detail with its actions, and a
dashboard."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import gradio as gr
from gradio.components import Component

from masuka.errors import InvalidInput
from masuka.history.actions import delete_entries, export_zip, gone_files_note, reuse_parameters
from masuka.history.browse import PRIVATE_COLUMNS, Filters, browse, dashboard, entry, filter_choices
from masuka.studio import Studio
from masuka.ui.api_names import name_outputs
from masuka.ui.common import Form, UIContext, bind, friendly, is_admin, user_of, verbatim
from masuka.validation import page_number

COLUMNS = ["key", "created", "kind", "status", "model", "seed", "prompt / title", "seconds", "cost $", "file", "error"]
DETAIL_SKIP = {"file", "table", "metrics", "log", "key", *PRIVATE_COLUMNS}
CONFIRM = "Yes, delete the entry and its file"
RUN_CONFIRM = "Yes, delete the run with its folder and LoRA"  # a training run's folder holds its library LoRA
KEY_SEPARATORS = re.compile(r"[,;\s]+")  # between the keys typed into the export selection


@dataclass
class BrowseTab:
    """The Browse sub-tab's widgets: filters, the page of outputs and entries, one entry and the export."""

    text: gr.Textbox
    kinds: gr.Dropdown
    model: gr.Dropdown
    lora: gr.Dropdown
    status: gr.Dropdown
    since: gr.Textbox
    until: gr.Textbox
    page: gr.Number
    per_page: gr.Dropdown
    search: gr.Button
    gallery: gr.Gallery
    table: gr.Dataframe
    gallery_keys: gr.State
    shown_page: gr.State  # the page number shown, for the Page box after the public "history" event
    key: gr.Textbox
    image: gr.Image
    video: gr.Video
    reuse: gr.Button
    download: gr.DownloadButton
    delete: gr.Button
    confirm: gr.Button
    detail: gr.Markdown
    parameters: gr.JSON
    selection: gr.Textbox
    add: gr.Button
    add_page: gr.Button
    export: gr.Button
    exported: gr.File
    message: gr.Markdown

    def filters(self) -> list[Component]:
        """What ``load`` takes, in order."""
        return [self.page, self.text, self.kinds, self.model, self.lora, self.status, self.since, self.until,
                self.per_page]

    def pickers(self) -> list[gr.Dropdown]:
        """The filters whose choices come from the history itself."""
        return [self.kinds, self.model, self.lora, self.status]

    def outputs(self, page: Component) -> list[Component]:
        """What ``load`` fills, in order, its page number into ``page`` (the Page box, or :attr:`shown_page` for
        an event whose outputs the API shows)."""
        return [self.gallery, self.table, self.gallery_keys, page]


def build(ctx: UIContext) -> None:
    studio = ctx.studio
    with gr.Tabs():
        with gr.Tab("Browse"):
            tab = _browse()
        with gr.Tab("Dashboard"):
            days, refresh_plots, plot_outputs = _dashboard()
    load_page, filters, outputs = bind(load, studio), tab.filters(), tab.outputs(tab.page)
    private = {"api_visibility": "private"}
    on_message = {"show_progress_on": tab.message}  # a refused filter marks the message, not gallery and table
    tab.search.click(load_page, filters, tab.outputs(tab.shown_page), api_name="history", **on_message).then(
        lambda shown: shown, tab.shown_page, tab.page, **private)
    for box in (tab.text, *tab.pickers(), tab.since, tab.until):  # a new search starts at page 1
        box.change(lambda: 1, None, tab.page, queue=False, show_progress="hidden", **private)
    tab.text.submit(load_page, filters, outputs, **private, **on_message)
    tab.page.submit(load_page, filters, outputs, **private, **on_message)
    tab.table.select(pick_row, None, tab.key, **private)
    tab.gallery.select(pick_image, tab.gallery_keys, tab.key, **private)
    tab.key.change(bind(show, studio), tab.key, [tab.image, tab.video, tab.detail, tab.parameters, tab.download,
                                                 tab.confirm], api_name="history_entry",
                  show_progress_on=tab.detail)
    tab.delete.click(lambda: gr.Button(visible=True), None, tab.confirm, **private)
    tab.confirm.click(bind(remove, studio), tab.key, [tab.message, tab.key, tab.confirm],
                      api_name="history_delete").success(load_page, filters, outputs, **private).success(
                          bind(choices, studio), None, tab.pickers(), **private)  # a deleted entry's values go
    tab.add.click(add_key, [tab.selection, tab.key], tab.selection, **private)
    tab.add_page.click(add_keys, [tab.selection, tab.table], tab.selection, **private)
    tab.export.click(bind(export_selection, studio), tab.selection, tab.exported, api_name="history_export")
    refresh_plots.click(bind(plots, studio), days, plot_outputs, api_name="history_dashboard")
    days.change(bind(plots, studio), days, plot_outputs, **private)
    ctx.picker(bind(choices, studio), tab.pickers(), tab.search)
    ctx.on_page_load(load_page, outputs, inputs=filters)
    ctx.on_generation(load_page, filters, outputs)
    ctx.on_generation(bind(choices, studio), None, tab.pickers())  # a new model or LoRA joins the filters
    ctx.once_built(lambda: _wire_reuse(ctx, tab.reuse, tab.key, tab.message))


def _browse() -> BrowseTab:
    """Filters, the page's outputs and entries, the chosen entry with its actions, and the export."""
    with gr.Row():
        text = gr.Textbox("", label="Search prompts", placeholder="fox snow", scale=3)
        kinds = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True, label="Kind", scale=2)
        model = gr.Dropdown([], value="", allow_custom_value=True, label="Model", scale=2)
        lora = gr.Dropdown([], value="", allow_custom_value=True, label="LoRA", scale=2)
        status = gr.Dropdown([], value="", allow_custom_value=True, label="Status", scale=1)
    with gr.Row():
        since = gr.Textbox("", label="From (YYYY-MM-DD)", scale=1)
        until = gr.Textbox("", label="To (YYYY-MM-DD)", scale=1)
        page = gr.Number(value=1, label="Page", scale=1, min_width=90)  # unrounded: load refuses a fraction
        per_page = gr.Dropdown([24, 48, 96, 200], value=48, label="Per page", scale=1)
        search = gr.Button("Search / refresh", variant="primary", scale=1)
    gallery = gr.Gallery(label="Outputs on this page", columns=8, height=300, interactive=False)
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, max_height=360, label="Entries",
                         show_label=False)
    gallery_keys, shown_page = gr.State([]), gr.State(1)
    with gr.Row():
        with gr.Column(scale=2):
            key = gr.Textbox(label="Entry (click a row or an image)", placeholder="g123 or j45")
            image = gr.Image(label="Image", type="filepath", interactive=False, height=360)
            video = gr.Video(label="Video", interactive=False, height=360, visible=False)
            with gr.Row():
                reuse = gr.Button("Reuse parameters")
                download = gr.DownloadButton("Download", value=None)
                delete = gr.Button("Delete…", variant="stop")
            confirm = gr.Button(CONFIRM, variant="stop", visible=False)
        with gr.Column(scale=3):
            detail = gr.Markdown(label="Summary", latex_delimiters=[])  # a prompt's "$$" is no formula
            parameters = gr.JSON(label="Every parameter")
    with gr.Accordion("Export a selection", open=False):
        selection = gr.Textbox(label="Entries to export", placeholder="g12, g13, j4")
        with gr.Row():
            add = gr.Button("Add the shown entry")
            add_page = gr.Button("Add this page")
            export = gr.Button("Export as zip (files + metadata.jsonl)", variant="primary")
        exported = gr.File(label="Export", interactive=False)
    message = gr.Markdown(label="Message")
    return BrowseTab(text, kinds, model, lora, status, since, until, page, per_page, search, gallery, table,
                     gallery_keys, shown_page, key, image, video, reuse, download, delete, confirm, detail, parameters,
                     selection, add, add_page, export, exported, message)


def _dashboard() -> tuple[gr.Dropdown, gr.Button, list[Component]]:
    """The period, its Refresh button and the four plots."""
    with gr.Row():
        days = gr.Dropdown([("Last 7 days", 7), ("Last 30 days", 30), ("Last year", 365), ("All time", 0)],
                           value=30, label="Period", scale=1)
        refresh_plots = gr.Button("Refresh", scale=0)
    with gr.Row():
        per_day = gr.LinePlot(x="day", y="count", color="kind", title="Generations per day", height=260,
                              label="Per day", show_label=False)
        success = gr.LinePlot(x="day", y="success_pct", title="Success rate per day (%)",
                              height=260, label="Success rate", show_label=False)
    with gr.Row():
        per_model = gr.BarPlot(x="model", y="mean_s", title="Mean seconds per output, per model",
                               height=260, label="Per model", show_label=False)
        spend = gr.BarPlot(x="day", y="usd", color="provider", title="Video spend per provider per day ($)",
                           height=260, label="Spend", show_label=False)
    return days, refresh_plots, [per_day, success, per_model, spend]


@friendly
def load(studio: Studio, page: float = 1, text: str = "", kinds: list[str] | None = None, model: str = "",
         lora: str = "", status: str = "", since: str = "", until: str = "", per_page: float = 48,
         request: gr.Request = None):
    """One page of history, newest first: the outputs (with a count as label) and the table of entries (a page
    past the end shows the last one)."""
    user, admin = user_of(request), is_admin(studio, request)
    result = browse(studio, user, admin, Filters(list(kinds or []), model or "", lora or "", status or "",
                                                 since or "", until or "", text or ""),
                    page_number(page), int(per_page or 48))
    shown = [e for e in result.entries if e["file"] is not None and e["kind"] in ("image", "upscale")]
    images = [(str(e["file"]), f"{e['key']} · {e['model'] or ''}") for e in shown]
    rows = [[e["key"], (e["created_at"] or "")[:19].replace("T", " "), e["kind"], e["status"], e["model"],
             e.get("seed"), e["prompt"], e["duration_s"], e["cost_usd"], e["file_status"], e["error"] or ""]
            for e in result.entries]
    text_summary = (f"{result.total} entries · page {result.page} of {result.pages}" if result.total
                    else "Nothing matches yet: make an image in the Image tab, or loosen the filters.")
    return gr.Gallery(value=images, label=text_summary), rows, [e["key"] for e in shown], result.page


def choices(studio: Studio, request: gr.Request):
    """The kinds, models, LoRAs and statuses the user's history holds, for the filters."""
    found = filter_choices(studio, user_of(request), is_admin(studio, request))
    return (gr.Dropdown(choices=found["kind"]), gr.Dropdown(choices=[""] + found["model"]),
            gr.Dropdown(choices=[""] + found["lora"]), gr.Dropdown(choices=[""] + found["status"]))


@friendly
def show(studio: Studio, key: str, request: gr.Request = None):
    """Everything about one entry: output, parameters, timings, cost and error; empty for no entry (the one shown
    was just deleted)."""
    if not (key or "").strip():
        return (gr.Image(value=None, visible=True), gr.Video(value=None, visible=False), "", None,
                gr.DownloadButton(value=None, interactive=False), gr.Button(CONFIRM, visible=False))
    row = entry(studio, user_of(request), is_admin(studio, request), key)
    path = str(row["file"]) if row["file"] else None
    is_video = row.get("kind") == "video"
    params = {k: v for k, v in row.items() if k not in DETAIL_SKIP}
    return (gr.Image(value=None if is_video else path, visible=not is_video),
            gr.Video(value=path if is_video else None, visible=is_video),
            _describe(row), params, gr.DownloadButton(value=path, interactive=path is not None),
            gr.Button(RUN_CONFIRM if row.get("kind") == "train" else CONFIRM, visible=False))


def pick_row(evt: gr.SelectData):
    return evt.row_value[0] if evt.row_value else gr.skip()


def pick_image(keys: list[str], evt: gr.SelectData):
    return keys[evt.index] if isinstance(evt.index, int) and evt.index < len(keys) else gr.skip()


@friendly
def remove(studio: Studio, key: str, request: gr.Request = None):
    """Delete the shown entry with its files (after the confirmation click)."""
    done = delete_entries(studio, user_of(request), is_admin(studio, request), [key])
    return done, "", gr.Button(visible=False)


@friendly
def export_selection(studio: Studio, selected: str, request: gr.Request = None):
    """A zip of the selected entries' files with metadata.jsonl."""
    return str(export_zip(studio, user_of(request), is_admin(studio, request), _keys(selected)))


def add_key(selected: str, key: str):
    """The export selection with the shown entry added (once)."""
    return ", ".join(dict.fromkeys(_keys(selected) + _keys(key)))


def add_keys(selected: str, rows):
    """The export selection with every entry of the page's table added (once)."""
    keys = _keys(selected)
    page_keys = [str(r[0]) for r in (rows.values.tolist() if hasattr(rows, "values") else rows or []) if r]
    return ", ".join(dict.fromkeys(keys + page_keys))


@friendly
def plots(studio: Studio, days: int, request: gr.Request = None):
    import pandas as pd

    figures = dashboard(studio, user_of(request), is_admin(studio, request), int(days) or None)
    frames = []
    for name in ("per_day", "success", "per_model", "spend"):
        frame = pd.DataFrame(figures[name])
        if "day" in frame:
            frame["day"] = pd.to_datetime(frame["day"])
        frames.append(frame)
    return tuple(frames)


def _wire_reuse(ctx: UIContext, button: gr.Button, key: gr.Textbox, message: gr.Markdown) -> None:
    """Reuse fills the form of the tab that made the entry (the forms tabs registered with
    :meth:`UIContext.register_form`, once every tab is built) and opens the accordion it sits in; a missing form is
    reported, not crashed on."""
    targets = [(kind, name) for kind, form in ctx.forms.items() for name in form.fields]
    fields = [form[name] for kind, form in ctx.forms.items() for name in form.fields]
    tabs = [ctx.tabs] if ctx.tabs is not None else []
    accordions = [form.accordion for form in ctx.forms.values() if form.accordion is not None]
    button.click(bind(reuse, ctx.studio, ctx.forms, targets, bool(tabs)), key,
                 fields + [message] + tabs + accordions,
                 api_visibility="private", show_progress_on=message)  # a refusal marks the message, not the forms
    name_outputs(gr.api(bind(history_reuse, ctx.studio), api_name="history_reuse"), "Form fields")


@friendly
def reuse(studio: Studio, forms: dict[str, Form], targets: list[tuple[str, str]], show_tab: bool, key: str,
          request: gr.Request = None):
    """Fill the form that made the entry (Image, Video, Upscale) with its parameters: a value for each (form kind,
    field name) of ``targets`` (skipped for the other forms and the fields the entry lacks), a note, the form's
    tab shown, and each form's accordion (opened for the entry's form, else left as it is)."""
    kind, fields = reuse_parameters(studio, user_of(request), is_admin(studio, request), key)
    if kind not in forms:
        raise InvalidInput(f"Reusing {kind} parameters needs a {kind.capitalize()} form, which this studio does not "
                           "offer.")
    form = forms[kind]
    gone = gone_files_note(fields)  # before the form adapts the fields
    fields = form.reuse(fields)
    wanted = [name if form_kind == kind else None for form_kind, name in targets]
    values = [fields[field] if field in fields else gr.skip() for field in wanted]
    filled = sum(1 for field in wanted if field in fields)
    note = f"Filled {filled} field(s) of the {kind.capitalize()} form from {key}.{gone}"
    opened = [gr.Accordion(open=True) if other is form else gr.skip() for other in forms.values()
              if other.accordion is not None]
    return (*values, note, *([gr.Tabs(selected=form.tab_id)] if show_tab else []), *opened)


@friendly
def history_reuse(studio: Studio, key: str, request: gr.Request = None) -> dict:
    """``{"kind": "image" or "video", "fields": {...}}``: the form fields the entry fills, by name (prompt,
    model, steps, …)."""
    kind, fields = reuse_parameters(studio, user_of(request), is_admin(studio, request), key)
    return {"kind": kind, "fields": fields}


def _keys(text: str | None) -> list[str]:
    """The entry keys typed into the export selection, separated by commas, semicolons or white space."""
    return [key for key in KEY_SEPARATORS.split(text or "") if key]


def _describe(row: dict) -> str:
    """A readable summary: what, when, how long, how much, and what went wrong."""
    lines = [f"### {row['key']} · {row.get('kind')} · {row.get('status')}",
             f"**Owner** {verbatim(row.get('owner'))} · **model** {verbatim(row.get('model') or '—')}"
             + (f" · **provider** {row['provider']}" if row.get("provider") else "")]
    if row.get("prompt") or row.get("title"):
        lines.append(f"**{'Prompt' if row.get('prompt') else 'Title'}:** "
                     f"{verbatim(row.get('prompt') or row.get('title'))}")
    timing = [f"created {row.get('created_at')}"]
    if row.get("started_at"):
        timing.append(f"started {row['started_at']}")
    if row.get("finished_at"):
        timing.append(f"finished {row['finished_at']}")
    if row.get("duration_s") is not None:
        timing.append(f"{row['duration_s']:.2f} s")
    lines.append(" · ".join(timing))
    if row.get("cost_usd") is not None:
        lines.append(f"**Cost:** ${row['cost_usd']:.4f}")
    if row["file_status"] not in ("ok", "none"):
        lines.append(f"**File {row['file_status']}:** {row.get('output_path')}")
    if row.get("error"):
        lines.append(f"**Error:** {verbatim(row['error'])}")
    if row.get("metrics"):
        last = row["metrics"][-1]
        lines.append(f"**Last metrics:** step {last.get('step')}, loss {last.get('loss')}")
    return "\n\n".join(lines) + ("\n\n```json\n" + json.dumps(row.get("loras"), indent=1) + "\n```"
                                 if row.get("loras") else "")
