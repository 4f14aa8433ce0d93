"""Models tab: the catalog with download status, downloads with progress, cache deletion, the LoRA library with
imports, and the benchmark results."""

from __future__ import annotations

import gradio as gr

from masuka.errors import InvalidInput
from masuka.loras.imports import import_from_civitai, import_from_hub, import_lora_file
from masuka.loras.library import deletable_lora, delete_lora, list_loras, may_delete
from masuka.models.manage import (
    bench_results,
    delete_model,
    download_jobs,
    download_line,
    model_status,
    start_download,
    stop_download,
)
from masuka.store import UNFINISHED
from masuka.studio import Studio
from masuka.ui.common import UIContext, bind, friendly, hidden_button, is_admin, user_of

CATALOG_COLUMNS = ["section", "id", "name", "repo", "gated", "downloaded", "size GB"]
JOB_COLUMNS = ["job", "repo", "status", "progress %", "GB done", "progress", "error"]
LORA_COLUMNS = ["name", "architecture", "base model", "trigger words", "rank", "source", "MB", "owner"]
BENCH_COLUMNS = ["when", "kind", "machine", "figures"]
POLL_S = 0.5
#: how often the Downloads table is read while the tab is shown
DOWNLOADS_POLL_S = 2.0


def build(ctx: UIContext) -> None:
    with gr.Tabs():
        with gr.Tab("Base models"):
            _base_models(ctx)
        with gr.Tab("LoRAs"):
            _loras(ctx)
        with gr.Tab("Benchmarks"):
            bench_table = gr.Dataframe(headers=BENCH_COLUMNS, interactive=False, wrap=True, label="Benchmarks",
                                       show_label=False)
            gr.Markdown("Run `python -m masuka bench KIND` on this machine to add figures.")
            bench_refresh = gr.Button("Refresh", scale=0)
    bench_refresh.click(bind(bench_view, ctx.studio), None, bench_table, api_name="bench_results")
    ctx.on_page_load(bind(bench_view, ctx.studio), bench_table)


def _base_models(ctx: UIContext) -> None:
    """The catalog with what is downloaded, downloads with their progress, and cache deletion."""
    studio = ctx.studio
    catalog_table = gr.Dataframe(headers=CATALOG_COLUMNS, interactive=False, wrap=True, label="Models",
                                 show_label=False)
    with gr.Row():
        model = gr.Dropdown([], allow_custom_value=True, label="Model (catalog id or owner/name)", scale=3)
        download = gr.Button("Download", variant="primary", scale=1)
        stop_button = gr.Button("Stop download", scale=1)
        remove = gr.Button("Delete from cache", variant="stop", scale=1)
        refresh = gr.Button("Refresh", scale=0)
    outcome = gr.Markdown(label="Message")
    jobs_table = gr.Dataframe(headers=JOB_COLUMNS, interactive=False, label="Downloads")
    catalog_outputs = [outcome, catalog_table, model]
    refused_here = {"show_progress_on": outcome}  # progress, and a refusal, show on the message, not the table
    download.click(bind(download_model, studio), model, catalog_outputs, api_name="download_model", **refused_here)
    remove.click(bind(delete_cached, studio), model, catalog_outputs, api_name="delete_model", **refused_here)
    # queued (nothing limits its concurrency) so that a refusal shows; an event outside the queue shows none
    stop_button.click(bind(stop_model_download, studio), model, outcome, api_name="stop_download")
    refresh.click(catalog_view, None, [catalog_table, model], api_name="models")
    ctx.poll(DOWNLOADS_POLL_S, bind(jobs_view, studio), None, jobs_table)
    ctx.on_page_load(catalog_view, [catalog_table, model])


def _loras(ctx: UIContext) -> None:
    """The LoRA library (an admin's: every owner's), its three imports (an upload, a Hub file, a CivitAI version)
    and deletion."""
    studio = ctx.studio
    loras_table = gr.Dataframe(headers=LORA_COLUMNS, interactive=False, wrap=True, label="LoRAs", show_label=False)
    with gr.Row():
        doomed = gr.Dropdown([], allow_custom_value=True, label="LoRA to delete (id or name)", scale=3)
        delete = gr.Button("Delete LoRA…", variant="stop", scale=1)
        confirm = gr.Button("Yes, delete the LoRA and its file", variant="stop", visible=False, scale=1)
    name = gr.Textbox("", label="Name in the library (optional)")
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Upload a .safetensors LoRA", file_types=[".safetensors"])
            import_upload = gr.Button("Import the upload")
        with gr.Column():
            repo = gr.Textbox(label="Hugging Face repo", placeholder="owner/name")
            filename = gr.Textbox(label="File in the repo", placeholder="lora.safetensors")
            import_hub = gr.Button("Import from the Hub")
        with gr.Column():
            version = gr.Textbox(label="CivitAI model version id", placeholder="123456")
            import_civitai = gr.Button("Import from CivitAI (needs CIVITAI_API_KEY)")
    imported = gr.Markdown(label="Message")
    outputs, private = [imported, loras_table], {"api_visibility": "private"}
    refused_here = {"show_progress_on": imported}  # a refusal marks the message, not the table
    library = bind(library_view, studio)
    for event in (
            import_upload.click(bind(lora_from_upload, studio), [upload, name], outputs, api_name="import_lora",
                                **refused_here),
            import_hub.click(bind(lora_from_hub, studio), [repo, filename, name], outputs, api_name="import_lora_hub",
                             **refused_here),
            import_civitai.click(bind(lora_from_civitai, studio), [version, name], outputs,
                                 api_name="import_lora_civitai", **refused_here)):
        event.success(bind(deletable_view, studio), None, doomed, **private)
    # the confirmation names the LoRA it deletes: it goes when the choice changes or the deletion is refused
    delete.click(bind(confirm_lora_deletion, studio), doomed, confirm, **private, **refused_here)
    doomed.change(hidden_button, None, confirm, queue=False, show_progress="hidden", **private)
    deleting = confirm.click(bind(remove_lora, studio), doomed, [imported, confirm], api_name="delete_lora",
                             **refused_here)
    deleting.success(library, None, [loras_table, doomed], **private)
    deleting.failure(hidden_button, None, confirm, queue=False, show_progress="hidden", **private)
    ctx.picker(library, [loras_table, doomed])  # a LoRA trained meanwhile shows when the tab opens


def catalog_view():
    rows = model_status()
    data = [[r["section"], r["id"], r["name"], r["repo"], "yes" if r["gated"] else "",
             "yes" if r["downloaded"] else "partial" if r["partial"] else "", round(r["size_bytes"] / 2**30, 2)]
            for r in rows]
    return data, gr.Dropdown(choices=[(f"{r['name']} ({r['repo']})", r["repo"]) for r in rows])


def jobs_view(studio: Studio, request: gr.Request):
    rows = download_jobs(studio, user_of(request), is_admin(studio, request))
    return [[r["id"], r["model"], r["status"], round(100 * (r["progress"] or 0), 1),
             round((r["step"] or 0) / 2**30, 2), download_line(r) if r["status"] in UNFINISHED else "",
             r["error"] or ""] for r in rows]


@friendly
def download_model(studio: Studio, model: str, request: gr.Request, progress=gr.Progress()):
    """Download a model into the Hugging Face cache as a job, with its progress."""
    job_id = start_download(studio, user_of(request), model)
    if job_id is None:
        return f"{model} is already downloaded: nothing to fetch.", *catalog_view()
    progress(0, desc="Queued")
    while True:
        row = studio.runner().wait(job_id, timeout=POLL_S)
        if row["status"] not in UNFINISHED:
            break
        progress(row["progress"] or 0, desc=download_line(row))
    if row["status"] != "completed":
        raise InvalidInput(row["error"] or f"The download ended as {row['status']}.")
    data, choices = catalog_view()
    return f"Downloaded {row['model']}.", data, choices


@friendly
def stop_model_download(studio: Studio, model: str, request: gr.Request):
    """Stop the running download of a model; its finished files are kept for the next download."""
    stop_download(studio, user_of(request), is_admin(studio, request), model)
    return f"Stopping the download of {model}; the finished files are kept, and downloading it again fetches the rest."


@friendly
def delete_cached(studio: Studio, model: str, request: gr.Request):
    """Delete a model from the Hugging Face cache (admins only when several people share the studio)."""
    if not is_admin(studio, request):
        raise InvalidInput("Only an admin can delete models: the model cache is shared by every user.")
    freed = delete_model(studio, model)
    data, choices = catalog_view()
    return f"Deleted {model}: {freed / 2**30:.2f} GB freed.", data, choices


def loras_view(studio: Studio, request: gr.Request):
    """The library table: the user's LoRAs and the shared ones; an admin's, every owner's."""
    return _library_table(_library(studio, request))


def library_view(studio: Studio, request: gr.Request):
    """The library table and the LoRAs the user may delete."""
    rows = _library(studio, request)
    return _library_table(rows), _deletable(studio, request, rows)


def deletable_view(studio: Studio, request: gr.Request):
    """The picker of the LoRAs the user may delete (after an import, whose answer holds the table)."""
    return _deletable(studio, request, _library(studio, request))


def _deletable(studio: Studio, request: gr.Request, rows: list[dict]) -> gr.Dropdown:
    """Of the library's ``rows``, those the user may delete."""
    user, admin = user_of(request), is_admin(studio, request)
    mine = [(r["name"] if r["owner"] == user else f"{r['name']} ({r['owner']})", str(r["id"]))
            for r in rows if may_delete(r, user, admin)]
    return gr.Dropdown(choices=mine, value=None)


def _library(studio: Studio, request: gr.Request) -> list[dict]:
    admin = is_admin(studio, request)
    return list_loras(studio, user_of(request), every_owner=admin)


def _library_table(rows: list[dict]) -> list[list]:
    return [[r["name"], r["architecture"], r["base_model"], r["trigger"], r["rank"], r["source"],
             round((r["size_bytes"] or 0) / 2**20, 1), r["owner"]] for r in rows]


@friendly
def confirm_lora_deletion(studio: Studio, lora: str, request: gr.Request):
    """The confirmation button, naming the chosen LoRA, once it is one the user may delete."""
    if not (lora or "").strip():
        raise InvalidInput("Choose the LoRA to delete first.")
    row = deletable_lora(studio, lora.strip(), user_of(request), is_admin(studio, request))
    owner = "" if row["owner"] == user_of(request) else f" ({row['owner']}'s)"
    return gr.Button(f"Yes, delete LoRA {row['name']}{owner} and its file", visible=True)


@friendly
def remove_lora(studio: Studio, lora: str, request: gr.Request):
    """Delete a LoRA (id or name; the user's own, any for an admin) and its file (after the confirmation click)."""
    row = delete_lora(studio, lora, user_of(request), is_admin(studio, request))
    return f"Deleted LoRA **{row['name']}** and its file.", hidden_button()


def imported_message(row: dict) -> str:
    return (f"Imported **{row['name']}** ({row['architecture']}"
            + (f", base {row['base_model']}" if row["base_model"] else "")
            + (f", trigger words: {row['trigger']}" if row["trigger"] else "") + ").")


@friendly
def lora_from_upload(studio: Studio, path: str | None, name: str, request: gr.Request):
    """Check and import an uploaded .safetensors LoRA."""
    if not path:
        raise InvalidInput("Choose a .safetensors file first.")
    row = import_lora_file(studio, user_of(request), path, name or None)
    return imported_message(row), loras_view(studio, request)


@friendly
def lora_from_hub(studio: Studio, repo: str, filename: str, name: str, request: gr.Request):
    """Check and import a LoRA file from a Hugging Face repo."""
    row = import_from_hub(studio, user_of(request), repo, filename, name or None)
    return imported_message(row), loras_view(studio, request)


@friendly
def lora_from_civitai(studio: Studio, version: str, name: str, request: gr.Request):
    """Check and import a CivitAI model version."""
    row = import_from_civitai(studio, user_of(request), version, name or None)
    return imported_message(row), loras_view(studio, request)


def bench_view(studio: Studio):
    rows = bench_results(studio)
    return [[(r["created_at"] or "")[:19].replace("T", " "), r["kind"], r["machine"],
             ", ".join(f"{k}={v}" for k, v in (r["figures"] or {}).items())] for r in rows]
